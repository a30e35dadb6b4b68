"""Roll a model out on Kubernetes: one gateway Deployment per model version behind a weighted
Gateway API `HTTPRoute`.

Each model version gets a ConfigMap (a gateway route table pinned to that version), a
Deployment of the `flightdeck-gateway` image and a Service, all named `<app>-v<version>`.
The Deployment and Service are not a second rendering: they are the platform's own gateway
manifests (deploy/k8s/base: gateway-deployment.yaml, gateway-service.yaml, and the settings of
gateway-configmap.yaml inlined as environment variables), loaded and patched per version: name,
namespace, labels and selector, replicas, image, model and route table (plus resources, the
tracking URI and `env` when given). Probes, resources, security contexts, volumes, strategy and
scrape annotations are the base's, so an edit of the base reaches every rollout. Two things of
the base are not taken: its `envFrom` of the settings ConfigMap (inlined instead, so the
namespace needs no ConfigMap of that name) and FLIGHTDECK_GATEWAY_DATABASE_URL (a route store
shared by every version would seed only the first one's table; each pod keeps its own store in
its home). The base's Secret references stay: the namespace needs the `flightdeck-gateway`
Secret (`admin-tokens`) the base's pods read.
One `HTTPRoute` named `<app>` splits traffic between the baseline's and the candidate's
Services with backendRef weights (100 - p, p). Objects are named by model version, so
promotion renames nothing: the candidate's objects simply become the next rollout's baseline.

| method          | route (baseline/candidate) | candidate replicas | baseline replicas |
|-----------------|----------------------------|--------------------|-------------------|
| deploy()        | 100 / 0                    | replicas           | replicas          |
| set_weight(p)   | 100 - p / p                | replicas           | replicas          |
| promote()       | 0 / 100                    | replicas           | replicas (kept warm for a fast rollback) |
| rollback()      | 100 / 0                    | 0                  | replicas          |

`rollback()` is compare-and-set, like the gateway and Lambda targets: it reads the live HTTPRoute
first and acts only while that route is this rollout's (its annotations name this baseline and
candidate, and it sends traffic to no other Service). Otherwise a later rollout owns the route:
nothing is applied and `left_alone` says why. The route it applies carries the live route's
`resourceVersion`, so a change between the read and the write is refused (HTTP 409 from the API
server; `ManifestDirectory` checks its file the same way) instead of being overwritten.

Every method renders the *whole* desired state and hands it to an applier (server-side
apply in production: `flightdeck.airflow.k8s_apply`), so re-running a step is harmless.
Rendering is pure and deterministic: the same state renders byte-identical YAML. Each
rendered set is validated before it is applied: core objects against the `kubernetes`
client's models (no unknown fields), the HTTPRoute against a JSON schema of the fields used.

No Airflow here; the `kubernetes` client is imported only to validate.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
from collections.abc import Callable, Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from flightdeck.delivery.targets.base import TrafficState
from flightdeck.errors import ConfigError, FlightdeckError

log = logging.getLogger(__name__)

Applier = Callable[[list[dict]], None]
"""Applies manifests in order (create or update; server-side apply in production)."""
RouteReader = Callable[[str, str], "dict | None"]
"""(namespace, name) → the live HTTPRoute as a dict, or None when it does not exist."""

GATEWAY_API = "gateway.networking.k8s.io"
GATEWAY_API_VERSION = f"{GATEWAY_API}/v1"
ROUTES_DIR = "/etc/flightdeck"
BASE_DIR = Path(__file__).resolve().parents[4] / "deploy" / "k8s" / "base"
"""The platform's Kustomize base: its gateway Deployment, Service and settings are what each version runs."""
BASE_FILES = {"ConfigMap": "gateway-configmap.yaml", "Deployment": "gateway-deployment.yaml",
              "Service": "gateway-service.yaml"}
BASE_NAME = "flightdeck-gateway"
BASE_CONTAINER = "gateway"
NOT_FROM_BASE = frozenset({"FLIGHTDECK_GATEWAY_DATABASE_URL"})
"""Base variables a version's pods do not take: a route store shared by every version would seed
only the first version's table, so each pod keeps its store (and prediction log) in its home."""
LABEL_PREFIX = "flightdeck.io"

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_HOSTNAME = r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
_VERSION = re.compile(r"^[0-9]+$")
# "-v" + version must fit after the app name in a 63-character Service name.
_MAX_APP_CHARS = 40


class KubernetesTargetError(FlightdeckError):
    """A Kubernetes rollout cannot proceed; the message names the object and the fix."""


class RouteConflictError(KubernetesTargetError):
    """The live HTTPRoute changed between the read and the write of a compare-and-set apply."""


class ManifestValidationError(KubernetesTargetError):
    """A rendered manifest is not a valid Kubernetes object (names each problem by path)."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("rendered manifests are invalid: " + "; ".join(problems)
                         + ". Fix: correct the KubernetesTarget arguments named above (a bug if none is).")


def _default_image() -> str:
    try:
        return f"flightdeck-gateway:{metadata.version('flightdeck')}"
    except metadata.PackageNotFoundError:  # running from a source tree that is not installed
        return "flightdeck-gateway:local"


def load_base(base_dir: Path) -> dict[str, dict]:
    """The gateway's ConfigMap, Deployment and Service of a Kustomize base, by kind.

    Each is the document named `flightdeck-gateway` in its file (BASE_FILES), which the base's
    kustomization.yaml must list; the Deployment must have a container named `gateway`.
    """
    where = Path(base_dir)
    fix = ("Fix: pass base_dir= naming a copy of deploy/k8s/base, or ship that folder "
           "beside the package (the Airflow image copies it)")
    try:
        listed = (yaml.safe_load((where / "kustomization.yaml").read_text()) or {}).get("resources") or []
    except (OSError, yaml.YAMLError) as exc:
        raise KubernetesTargetError(f"cannot read the Kustomize base at {where}: {exc}. {fix}.") from exc
    found: dict[str, dict] = {}
    for kind, file_name in BASE_FILES.items():
        if file_name not in listed:
            raise KubernetesTargetError(f"{where / 'kustomization.yaml'} does not list {file_name}, so the gateway "
                                        f"{kind} the rollout copies is not the platform's. {fix}.")
        try:
            documents = [d for d in yaml.safe_load_all((where / file_name).read_text()) if d]
        except (OSError, yaml.YAMLError) as exc:
            raise KubernetesTargetError(f"cannot read {where / file_name}: {exc}. {fix}.") from exc
        matches = [d for d in documents if d.get("kind") == kind
                   and (d.get("metadata") or {}).get("name") == BASE_NAME]
        if len(matches) != 1:
            raise KubernetesTargetError(f"{where / file_name} holds {len(matches)} {kind} named {BASE_NAME!r}, "
                                        f"not 1. {fix}.")
        found[kind] = matches[0]
    containers = (((found["Deployment"].get("spec") or {}).get("template") or {}).get("spec") or {}).get(
        "containers") or []
    if not any(c.get("name") == BASE_CONTAINER for c in containers):
        raise KubernetesTargetError(f"{where / BASE_FILES['Deployment']}: no container named {BASE_CONTAINER!r} "
                                    f"to run the model in (found {[c.get('name') for c in containers]}). {fix}.")
    if not any(p.get("name") == "http" for p in (found["Service"].get("spec") or {}).get("ports") or []):
        raise KubernetesTargetError(f"{where / BASE_FILES['Service']}: no port named 'http' for the HTTPRoute "
                                    f"to send traffic to. {fix}.")
    return found


def _patched_metadata(base: dict, name: str, namespace: str, labels: dict[str, str]) -> dict:
    """The base's metadata renamed into `namespace`, its labels joined by `labels`."""
    out = {key: value for key, value in base.items() if key not in ("name", "namespace", "labels")}
    return {"name": name, "namespace": namespace, "labels": {**(base.get("labels") or {}), **labels}, **out}


def _check_name(field: str, value: str, pattern: re.Pattern, max_len: int, kind: str) -> str:
    if not isinstance(value, str) or len(value) > max_len or not pattern.match(value):
        raise ConfigError(field, f"{value!r} is not a valid {kind} (at most {max_len} characters)",
                          "use lower-case letters, digits and '-', starting and ending with an alphanumeric"
                          + (" and starting with a letter" if pattern is _DNS1035_LABEL else ""))
    return value


def _check_version(field: str, value: str | int) -> str:
    text = str(value)
    if not _VERSION.match(text) or len(text) > 12:
        raise ConfigError(field, f"{text!r} is not a registered model version number",
                          "pass the MLflow model version, e.g. '7'")
    return text


def _check_percent(percent: float) -> int:
    """Gateway API weights are integers: the candidate's share is a whole percent."""
    if isinstance(percent, bool) or not isinstance(percent, int | float) or not math.isfinite(percent) \
            or not 0 <= percent <= 100:
        raise ConfigError("percent", f"{percent!r} is not a share between 0 and 100",
                          "pass the candidate's share of traffic in percent, e.g. 25")
    if percent != int(percent):
        raise ConfigError("percent", f"{percent!r} is not a whole number",
                          "HTTPRoute backend weights are integers: use whole percents on Kubernetes")
    return int(percent)


class KubernetesTarget:
    """A baseline and a candidate gateway Deployment behind a weighted HTTPRoute.

    Args:
        namespace: where every object lives (DNS-1123 label).
        app: base name of the objects: `<app>` (HTTPRoute), `<app>-v<version>` (ConfigMap,
            Deployment, Service); a DNS-1035 label of at most 40 characters.
        model_name: the registered model both Deployments serve (FLIGHTDECK_MODEL_NAME).
        baseline_version, candidate_version: the model versions; each Deployment's route
            table is pinned to its version.
        gateway: the Gateway the HTTPRoute attaches to (`gateway_namespace` if elsewhere).
        hostnames: the HTTPRoute's hostnames; none means every hostname of the Gateway.
        image: the gateway image (default `flightdeck-gateway:<package version>`).
        replicas: pods per Deployment while it takes traffic.
        mlflow_tracking_uri: where the gateway loads models from (FLIGHTDECK_MLFLOW_TRACKING_URI).
        env: further environment variables for the gateway container.
        resources: the container's requests and limits (default: the base Deployment's).
        base_dir: the Kustomize base whose gateway manifests each version runs (default
            deploy/k8s/base of this repository).
        applier: applies a list of manifests; `reader`: reads the live HTTPRoute for
            `state()`. `ManifestDirectory` provides both for a directory of YAML (GitOps);
            `flightdeck.airflow.k8s_apply` for a cluster through the Airflow connection.
    """

    def __init__(self, *, namespace: str, app: str, model_name: str, baseline_version: str | int,
                 candidate_version: str | int, gateway: str, gateway_namespace: str | None = None,
                 hostnames: Iterable[str] = (), image: str | None = None, replicas: int = 2,
                 mlflow_tracking_uri: str | None = None, env: dict[str, str] | None = None,
                 resources: dict | None = None, applier: Applier | None = None,
                 reader: RouteReader | None = None, name: str | None = None,
                 base_dir: str | Path | None = None) -> None:
        self.namespace = _check_name("namespace", namespace, _DNS1123_LABEL, 63, "DNS-1123 label")
        self.app = _check_name("app", app, _DNS1035_LABEL, _MAX_APP_CHARS, "DNS-1035 label")
        if not isinstance(model_name, str) or len(model_name) > 63 or not _LABEL_VALUE.match(model_name) \
                or not model_name:
            raise ConfigError("model_name", f"{model_name!r} cannot be a Kubernetes label value",
                              "use at most 63 letters, digits, '-', '_' or '.', starting and ending alphanumeric")
        self.model_name = model_name
        self.baseline_version = _check_version("baseline_version", baseline_version)
        self.candidate_version = _check_version("candidate_version", candidate_version)
        if self.baseline_version == self.candidate_version:
            raise ConfigError("candidate_version", f"equals the baseline ({self.baseline_version})",
                              "roll out a different model version than the one serving")
        self.gateway = _check_name("gateway", gateway, _DNS1123_SUBDOMAIN, 253, "DNS-1123 subdomain")
        self.gateway_namespace = (None if gateway_namespace is None else _check_name(
            "gateway_namespace", gateway_namespace, _DNS1123_LABEL, 63, "DNS-1123 label"))
        self.hostnames = [str(h) for h in hostnames]
        for host in self.hostnames:
            if len(host) > 253 or not re.match(_HOSTNAME, host):
                raise ConfigError("hostnames", f"{host!r} is not a hostname", "use e.g. 'scores.example.com'")
        self.image = image or _default_image()
        if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 1:
            raise ConfigError("replicas", f"{replicas!r} is not a positive whole number",
                              "run at least one pod per Deployment")
        self.replicas = replicas
        self.mlflow_tracking_uri = mlflow_tracking_uri
        self.env = dict(env or {})
        for key in self.env:
            if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", key):
                raise ConfigError("env", f"{key!r} is not an environment variable name", "use [A-Za-z_][A-Za-z0-9_]*")
        self.resources = resources  # None: the base's
        self.base_dir = None if base_dir is None else str(base_dir)
        self._base = load_base(BASE_DIR if base_dir is None else Path(base_dir))
        self.applier = applier
        self.reader = reader
        self.name = name or f"kubernetes:{namespace}/{app}"
        self.left_alone: str | None = None  # why the last rollback changed nothing, if it chose not to

    # -- construction across processes ---------------------------------------------------

    def to_dict(self) -> dict:
        """A JSON-safe description from which `from_dict` rebuilds this target."""
        return {"kind": "kubernetes", "name": self.name, "namespace": self.namespace, "app": self.app,
                "model_name": self.model_name, "baseline_version": self.baseline_version,
                "candidate_version": self.candidate_version, "gateway": self.gateway,
                "gateway_namespace": self.gateway_namespace, "hostnames": list(self.hostnames),
                "image": self.image, "replicas": self.replicas, "mlflow_tracking_uri": self.mlflow_tracking_uri,
                "env": dict(self.env), "resources": self.resources, "base_dir": self.base_dir}

    @classmethod
    def from_dict(cls, data: dict, applier: Applier | None = None,
                  reader: RouteReader | None = None) -> KubernetesTarget:
        fields = dict(data)
        kind = fields.pop("kind", "kubernetes")
        if kind != "kubernetes":
            raise ConfigError("kind", f"{kind!r} is not a kubernetes target", "pass KubernetesTarget.to_dict()")
        return cls(**fields, applier=applier, reader=reader)

    # -- names -----------------------------------------------------------------------------

    def variant_names(self) -> tuple[str, str]:
        """(baseline, candidate) as the metrics name them: each Deployment serves one variant,
        named after its version."""
        return f"v{self.baseline_version}", f"v{self.candidate_version}"

    def object_name(self, version: str) -> str:
        """ConfigMap/Deployment/Service name of one model version's gateway."""
        return f"{self.app}-v{version}"

    @property
    def route_name(self) -> str:
        return self.app

    # -- rendering (pure) ------------------------------------------------------------------

    def manifests(self, percent: float, *, candidate_replicas: int | None = None,
                  validate: bool = True) -> list[dict]:
        """Every object of the rollout with the candidate at `percent`, in the order to apply.

        Workloads come before the route, so traffic only moves to pods that exist; when the
        candidate is scaled to zero the route comes first, so traffic leaves it beforehand.
        """
        share = _check_percent(percent)
        replicas = self.replicas if candidate_replicas is None else candidate_replicas
        workloads = [*self._version_objects(self.baseline_version, self.replicas),
                     *self._version_objects(self.candidate_version, replicas)]
        route = self._route(share)
        # The JSON round trip unshares dicts used in several places (YAML would emit &anchors).
        documents = json.loads(json.dumps([route, *workloads] if replicas == 0 else [*workloads, route]))
        if validate:
            validate_manifests(documents)
        return documents

    def desired(self, step: str, percent: float = 0) -> list[dict]:
        """The manifests of a target method: `deploy`, `set_weight` (with `percent`), `promote`, `rollback`."""
        if step == "deploy":
            return self.manifests(0)
        if step == "set_weight":
            return self.manifests(percent)
        if step == "promote":
            return self.manifests(100)
        if step == "rollback":
            return self.manifests(0, candidate_replicas=0)
        raise ConfigError("step", f"{step!r} is not a target method", "use deploy, set_weight, promote or rollback")

    def _labels(self, version: str | None = None) -> dict[str, str]:
        labels = {"app.kubernetes.io/name": "flightdeck-gateway", "app.kubernetes.io/instance": self.app,
                  "app.kubernetes.io/part-of": "flightdeck", "app.kubernetes.io/managed-by": "flightdeck",
                  f"{LABEL_PREFIX}/model": self.model_name}
        if version is not None:
            labels[f"{LABEL_PREFIX}/model-version"] = version
        return labels

    def _selector(self, version: str) -> dict[str, str]:
        # Selectors are immutable on a Deployment: only labels that never change for it.
        return {"app.kubernetes.io/name": "flightdeck-gateway", "app.kubernetes.io/instance": self.app,
                f"{LABEL_PREFIX}/model-version": version}

    def route_table(self, version: str) -> dict:
        """The gateway's route table (flightdeck.serving.routes) pinned to one model version."""
        return {"default_endpoint": "default",
                "endpoints": {"default": {"policy": "single", "allow_override": False,
                                          "variants": {f"v{version}": {"model": self.model_name,
                                                                       "version": version}}}}}

    def _version_objects(self, version: str, replicas: int) -> list[dict]:
        """One version's ConfigMap (its pinned route table), and the base's gateway Deployment and
        Service patched for it: name, namespace, labels and selector, replicas, image, settings,
        the route-table volume (and resources when given). Everything else is the base's."""
        name = self.object_name(version)
        labels = self._labels(version)
        routes_yaml = yaml.safe_dump(self.route_table(version), sort_keys=True)
        config_map = {"apiVersion": "v1", "kind": "ConfigMap",
                      "metadata": {"name": name, "namespace": self.namespace, "labels": labels},
                      "data": {"routes.yaml": routes_yaml}}
        base = json.loads(json.dumps(self._base))  # a private copy to patch

        deployment = base["Deployment"]
        deployment["metadata"] = _patched_metadata(deployment["metadata"], name, self.namespace, labels)
        spec = deployment["spec"]
        spec["replicas"] = replicas
        spec["selector"] = {"matchLabels": self._selector(version)}
        template = spec["template"]
        template.setdefault("metadata", {})
        template["metadata"]["labels"] = {**(template["metadata"].get("labels") or {}), **labels}
        checksum = hashlib.sha256(routes_yaml.encode()).hexdigest()[:16]  # new route table → new pods
        template["metadata"]["annotations"] = {**(template["metadata"].get("annotations") or {}),
                                               f"{LABEL_PREFIX}/routes-checksum": checksum}
        pod = template["spec"]
        container = next(c for c in pod["containers"] if c["name"] == BASE_CONTAINER)
        container["image"] = self.image
        settings_name = base["ConfigMap"]["metadata"]["name"]
        values = dict(base["ConfigMap"].get("data") or {})  # the base's settings, inlined
        values.update({"FLIGHTDECK_MODEL_NAME": self.model_name,
                       "FLIGHTDECK_ROUTES_FILE": f"{ROUTES_DIR}/routes.yaml"})
        if self.mlflow_tracking_uri:
            values["FLIGHTDECK_MLFLOW_TRACKING_URI"] = self.mlflow_tracking_uri
        values.update(self.env)
        kept = [e for e in container.get("env") or [] if e["name"] not in values and e["name"] not in NOT_FROM_BASE]
        container["env"] = sorted([*kept, *({"name": k, "value": str(v)} for k, v in values.items())],
                                  key=lambda e: e["name"])
        env_from = [e for e in container.get("envFrom") or []
                    if (e.get("configMapRef") or {}).get("name") != settings_name]
        if env_from:
            container["envFrom"] = env_from
        else:
            container.pop("envFrom", None)
        if self.resources is not None:
            container["resources"] = self.resources
        container["volumeMounts"] = [*(m for m in container.get("volumeMounts") or [] if m["name"] != "routes"),
                                     {"name": "routes", "mountPath": ROUTES_DIR, "readOnly": True}]
        pod["volumes"] = [{"name": "routes", "configMap": {"name": name}},
                          *(v for v in pod.get("volumes") or [] if v["name"] != "routes")]

        service = base["Service"]
        service["metadata"] = _patched_metadata(service["metadata"], name, self.namespace, labels)
        service["spec"]["selector"] = self._selector(version)
        return [config_map, deployment, service]

    @property
    def http_port(self) -> int:
        """The base Service's `http` port: the one the HTTPRoute sends traffic to."""
        return next(p["port"] for p in self._base["Service"]["spec"]["ports"] if p.get("name") == "http")

    def _route(self, percent: int) -> dict:
        parent = {"group": GATEWAY_API, "kind": "Gateway", "name": self.gateway}
        if self.gateway_namespace:
            parent["namespace"] = self.gateway_namespace
        backends = [{"group": "", "kind": "Service", "name": self.object_name(version), "port": self.http_port,
                     "weight": weight}
                    for version, weight in ((self.baseline_version, 100 - percent),
                                            (self.candidate_version, percent))]
        spec: dict[str, Any] = {"parentRefs": [parent]}
        if self.hostnames:
            spec["hostnames"] = list(self.hostnames)
        spec["rules"] = [{"matches": [{"path": {"type": "PathPrefix", "value": "/"}}], "backendRefs": backends}]
        return {"apiVersion": GATEWAY_API_VERSION, "kind": "HTTPRoute",
                "metadata": {"name": self.route_name, "namespace": self.namespace, "labels": self._labels(),
                             "annotations": {f"{LABEL_PREFIX}/baseline-version": self.baseline_version,
                                             f"{LABEL_PREFIX}/candidate-version": self.candidate_version}},
                "spec": spec}

    # -- the DeliveryTarget protocol -----------------------------------------------------

    def state(self) -> TrafficState:
        """What the live HTTPRoute sends where (needs a `reader`)."""
        if self.reader is None:
            raise KubernetesTargetError(
                f"{self.name}: no reader to look at the live HTTPRoute. Fix: pass reader= "
                "(ManifestDirectory(...).read_route, or flightdeck.airflow.k8s_apply.KubernetesHookApplier().read_route).")
        return self.traffic(self.reader(self.namespace, self.route_name))

    def deploy(self) -> TrafficState:
        """Candidate Deployment and Service beside the baseline's; route 100 / 0."""
        return self._apply(self.desired("deploy"))

    def set_weight(self, percent: float) -> TrafficState:
        """Route 100 - percent / percent."""
        return self._apply(self.desired("set_weight", percent))

    def promote(self) -> TrafficState:
        """Route 0 / 100; the baseline Deployment stays up for a fast rollback during the bake."""
        return self._apply(self.desired("promote"))

    def rollback(self) -> TrafficState:
        """Route 100 / 0 (applied first), then the candidate Deployment scaled to 0 replicas, but
        only while the live HTTPRoute is this rollout's: after a later rollout took the route, a
        re-run rollback applies nothing and says why in `left_alone`. Needs a `reader`."""
        self.left_alone = None
        if self.reader is None:
            raise KubernetesTargetError(
                f"{self.name}: a rollback first checks that the live HTTPRoute is still this rollout's, and "
                "there is no reader to look at it. Fix: pass reader= (ManifestDirectory(...).read_route, or "
                "flightdeck.airflow.k8s_apply.KubernetesHookApplier().read_route).")
        live = self.reader(self.namespace, self.route_name)
        documents = self.desired("rollback")
        if live is not None:
            owner = self._other_owner(live)
            if owner is not None:
                self.left_alone = owner
                log.warning("%s: %s", self.name, owner)
                return self._share(live)
            expected = (live.get("metadata") or {}).get("resourceVersion")
            if expected is not None:  # the write is refused if the route changes after this read
                route = next(d for d in documents if d["kind"] == "HTTPRoute")
                route["metadata"]["resourceVersion"] = str(expected)
        return self._apply(documents)

    def _other_owner(self, route: dict) -> str | None:
        """Why the live `route` is not this rollout's to roll back, or None when it is."""
        where = f"HTTPRoute {self.namespace}/{self.route_name}"
        annotations = (route.get("metadata") or {}).get("annotations") or {}
        named = (annotations.get(f"{LABEL_PREFIX}/baseline-version"),
                 annotations.get(f"{LABEL_PREFIX}/candidate-version"))
        backends = sorted({ref.get("name") for rule in (route.get("spec") or {}).get("rules") or []
                           for ref in rule.get("backendRefs") or []})
        ours = {self.object_name(self.baseline_version), self.object_name(self.candidate_version)}
        if named != (self.baseline_version, self.candidate_version) or not set(backends) <= ours:
            return (f"{where} now belongs to another rollout (baseline v{named[0]}, candidate v{named[1]}, "
                    f"backends {backends}), not this one's v{self.baseline_version} → v{self.candidate_version}: "
                    "the rollback leaves it and the Deployments as they are. Fix: nothing, if a later release "
                    "took over; roll that release back with its own run if it must go")
        return None

    def _share(self, route: dict) -> TrafficState:
        """This rollout's view of a route that may send traffic elsewhere too (no error on strangers)."""
        weights: dict[str, int] = {}
        for rule in (route.get("spec") or {}).get("rules") or []:
            for ref in rule.get("backendRefs") or []:
                weights[ref["name"]] = weights.get(ref["name"], 0) + int(ref.get("weight", 1))
        candidate, total = self.object_name(self.candidate_version), sum(weights.values())
        share = 100.0 * weights.get(candidate, 0) / total if total else 0.0
        return TrafficState(self.name, self.baseline_version,
                            self.candidate_version if candidate in weights else None, round(share, 4))

    def traffic(self, route: dict | None) -> TrafficState:
        """Translate an HTTPRoute (live or rendered) into this rollout's TrafficState."""
        if route is None:
            return TrafficState(self.name, self.baseline_version, None, 0.0)
        weights: dict[str, int] = {}
        for rule in (route.get("spec") or {}).get("rules") or []:
            for ref in rule.get("backendRefs") or []:
                # Gateway API: an omitted weight is 1.
                weights[ref["name"]] = weights.get(ref["name"], 0) + int(ref.get("weight", 1))
        baseline, candidate = self.object_name(self.baseline_version), self.object_name(self.candidate_version)
        strangers = sorted(set(weights) - {baseline, candidate})
        if strangers:
            raise KubernetesTargetError(
                f"HTTPRoute {self.namespace}/{self.route_name} sends traffic to {strangers}, which are not "
                f"this rollout's ({baseline}, {candidate}). Fix: finish or roll back the rollout that owns "
                "the route, or build this target with its baseline and candidate versions.")
        total = sum(weights.values())
        share = 100.0 * weights.get(candidate, 0) / total if total else 0.0
        return TrafficState(self.name, self.baseline_version,
                            self.candidate_version if candidate in weights else None, round(share, 4))

    def _apply(self, documents: list[dict]) -> TrafficState:
        if self.applier is None:
            raise KubernetesTargetError(
                f"{self.name}: no applier. Fix: pass applier= (ManifestDirectory(...).apply, or "
                "flightdeck.airflow.k8s_apply.KubernetesHookApplier()).")
        self.applier(documents)
        return self.traffic(next(d for d in documents if d["kind"] == "HTTPRoute"))


class _ManifestDumper(yaml.SafeDumper):
    """SafeDumper writing multi-line strings (the route table in a ConfigMap) as literal blocks."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_ManifestDumper.add_representer(str, _represent_str)


def to_yaml(documents: list[dict]) -> str:
    """A multi-document YAML stream; deterministic (sorted keys) so equal states are byte-identical."""
    return yaml.dump_all(documents, Dumper=_ManifestDumper, sort_keys=True, default_flow_style=False,
                         explicit_start=True)


class ManifestDirectory:
    """Applies manifests by writing them to files, one per object (GitOps; or a dry run).

    `apply` writes `<root>/<namespace>/<kind>/<name>.yaml` (the directory a GitOps tool such
    as Argo CD or Flux syncs to a cluster); `read_route` reads the HTTPRoute back, so `state()`
    works across processes without a cluster.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path(self, kind: str, namespace: str, name: str) -> Path:
        return self.root / namespace / kind.lower() / f"{name}.yaml"

    def apply(self, documents: list[dict]) -> None:
        for document in documents:
            meta = document["metadata"]
            path = self.path(document["kind"], meta["namespace"], meta["name"])
            expected = meta.get("resourceVersion")
            if expected is not None:  # compare-and-set, as the API server does with resourceVersion
                current = _content_version(path.read_text()) if path.exists() else None
                if current != expected:
                    raise RouteConflictError(
                        f"{document['kind']} {meta['namespace']}/{meta['name']} changed since it was read "
                        f"({path}: version {current}, expected {expected}); nothing from this apply was written "
                        "after it. Fix: run the step again, so it reads the current object and decides anew.")
                document = {**document, "metadata": {k: v for k, v in meta.items() if k != "resourceVersion"}}
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_suffix(".yaml.tmp")
            partial.write_text(to_yaml([document]))
            partial.replace(path)  # readers never see half a file

    def read_route(self, namespace: str, name: str) -> dict | None:
        """The HTTPRoute's file, with a `resourceVersion` (a digest of the file) for compare-and-set."""
        path = self.path("HTTPRoute", namespace, name)
        if not path.exists():
            return None
        text = path.read_text()
        route = yaml.safe_load(text)
        route.setdefault("metadata", {})["resourceVersion"] = _content_version(text)
        return route

    __call__ = apply


def _content_version(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# -- validation ---------------------------------------------------------------------------

_CORE_MODELS = {("v1", "ConfigMap"): "V1ConfigMap", ("apps/v1", "Deployment"): "V1Deployment",
                ("v1", "Service"): "V1Service"}

_NAME = {"type": "string", "minLength": 1, "maxLength": 253, "pattern": _DNS1123_SUBDOMAIN.pattern}
_LABEL_NAME = {"type": "string", "minLength": 1, "maxLength": 63, "pattern": _DNS1123_LABEL.pattern}
_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}

HTTPROUTE_SCHEMA: dict = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "HTTPRoute (gateway.networking.k8s.io/v1), the fields flightdeck renders",
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": GATEWAY_API_VERSION},
        "kind": {"const": "HTTPRoute"},
        "metadata": {"type": "object", "required": ["name", "namespace"], "additionalProperties": False,
                     "properties": {"name": _NAME, "namespace": _LABEL_NAME, "labels": _STRING_MAP,
                                    "annotations": _STRING_MAP,
                                    "resourceVersion": {"type": "string", "minLength": 1}}},
        "spec": {
            "type": "object", "required": ["parentRefs", "rules"], "additionalProperties": False,
            "properties": {
                "parentRefs": {"type": "array", "minItems": 1, "maxItems": 32, "items": {
                    "type": "object", "required": ["name"], "additionalProperties": False,
                    "properties": {"group": {"const": GATEWAY_API}, "kind": {"const": "Gateway"},
                                   "name": _NAME, "namespace": _LABEL_NAME,
                                   "sectionName": _NAME}}},
                "hostnames": {"type": "array", "maxItems": 16, "items": {
                    "type": "string", "minLength": 1, "maxLength": 253, "pattern": _HOSTNAME}},
                "rules": {"type": "array", "minItems": 1, "maxItems": 16, "items": {
                    "type": "object", "additionalProperties": False, "required": ["backendRefs"],
                    "properties": {
                        "matches": {"type": "array", "maxItems": 64, "items": {
                            "type": "object", "additionalProperties": False, "properties": {
                                "path": {"type": "object", "required": ["type", "value"],
                                         "additionalProperties": False, "properties": {
                                             "type": {"enum": ["Exact", "PathPrefix", "RegularExpression"]},
                                             "value": {"type": "string", "pattern": "^/", "maxLength": 1024}}}}}},
                        "backendRefs": {"type": "array", "minItems": 1, "maxItems": 16, "items": {
                            "type": "object", "required": ["name", "port"], "additionalProperties": False,
                            "properties": {"group": {"const": ""}, "kind": {"const": "Service"},
                                           "name": _NAME, "namespace": _LABEL_NAME,
                                           "port": {"type": "integer", "minimum": 1, "maximum": 65535},
                                           "weight": {"type": "integer", "minimum": 0, "maximum": 1000000}}}},
                    }}},
            }},
    },
}

_PRIMITIVES: dict[str, tuple[type, ...]] = {"str": (str,), "int": (int,), "bool": (bool,), "float": (int, float),
                                            "datetime": (str,), "date": (str,)}


def _strict_check(value: Any, type_name: str, path: str, problems: list[str]) -> None:
    """Check `value` against a kubernetes client model type: no unknown fields, right JSON types."""
    from kubernetes import client

    if type_name == "object":  # IntOrString, quantities, free-form
        return
    container = re.match(r"^(list|dict)[\[(](.*)[\])]$", type_name)
    if container:
        kind, inner = container.groups()
        if kind == "list":
            if not isinstance(value, list):
                problems.append(f"{path}: expected a list")
                return
            for i, item in enumerate(value):
                _strict_check(item, inner, f"{path}[{i}]", problems)
        else:
            if not isinstance(value, dict):
                problems.append(f"{path}: expected a mapping")
                return
            inner_value = inner.split(",", 1)[1].strip()
            for key, item in value.items():
                _strict_check(item, inner_value, f"{path}.{key}", problems)
        return
    if type_name in _PRIMITIVES:
        wanted = _PRIMITIVES[type_name]
        if not isinstance(value, wanted) or (bool not in wanted and isinstance(value, bool)):
            problems.append(f"{path}: expected {type_name}, got {type(value).__name__}")
        return
    model = getattr(client, type_name)
    if not isinstance(value, dict):
        problems.append(f"{path}: expected an object ({type_name})")
        return
    by_json_key = {json_key: attr for attr, json_key in model.attribute_map.items()}
    for key, item in value.items():
        if key not in by_json_key:
            problems.append(f"{path}.{key}: unknown field of {type_name}")
        else:
            _strict_check(item, model.openapi_types[by_json_key[key]], f"{path}.{key}", problems)


class _Response:
    """What ApiClient.deserialize reads: a body in `.data`."""

    def __init__(self, document: dict) -> None:
        self.data = json.dumps(document)


def validate_manifests(documents: list[dict]) -> None:
    """Raise ManifestValidationError naming every problem of a rendered rollout.

    Core objects: no field unknown to the `kubernetes` client's models (recursively), JSON
    types as the models declare, and deserialisation into the model (required fields).
    HTTPRoute: HTTPROUTE_SCHEMA. Across objects: selectors match pod labels, the route's
    backends are rendered Services on a port they expose, and its weights sum to 100.
    """
    import jsonschema
    from kubernetes import client

    problems: list[str] = []
    api = client.ApiClient()
    services: dict[str, set[int]] = {}
    for index, document in enumerate(documents):
        kind = document.get("kind")
        where = f"{kind} {(document.get('metadata') or {}).get('name')}"
        if kind == "HTTPRoute":
            validator = jsonschema.Draft202012Validator(HTTPROUTE_SCHEMA)
            for error in sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path)):
                field = ".".join(str(p) for p in error.absolute_path) or "(document)"
                problems.append(f"{where}: {field}: {error.message}")
            continue
        model = _CORE_MODELS.get((document.get("apiVersion"), kind))
        if model is None:
            problems.append(f"document {index}: {document.get('apiVersion')}/{kind} is not a kind flightdeck renders")
            continue
        before = len(problems)
        _strict_check(document, model, where, problems)
        if len(problems) == before:
            try:
                api.deserialize(_Response(document), model)
            except (ValueError, TypeError) as exc:
                problems.append(f"{where}: as {model}: {exc}")
        spec = document.get("spec") or {}
        if kind == "Deployment":
            selector = (spec.get("selector") or {}).get("matchLabels") or {}
            labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
            if not selector or any(labels.get(k) != v for k, v in selector.items()):
                problems.append(f"{where}: selector {selector} does not match the pod labels {labels}")
        if kind == "Service":
            services[document["metadata"]["name"]] = {p.get("port") for p in spec.get("ports") or []}
            selector = spec.get("selector") or {}
            pods = [d for d in documents if d.get("kind") == "Deployment"
                    and all(((d["spec"]["template"]["metadata"].get("labels")) or {}).get(k) == v
                            for k, v in selector.items())]
            if not selector or len(pods) != 1:
                problems.append(f"{where}: selector {selector} matches {len(pods)} rendered Deployments, not 1")
    for route in (d for d in documents if d.get("kind") == "HTTPRoute"):
        for rule in (route.get("spec") or {}).get("rules") or []:
            refs = rule.get("backendRefs") or []
            for ref in refs:
                if ref.get("port") not in services.get(ref.get("name"), set()):
                    problems.append(f"HTTPRoute {route['metadata'].get('name')}: backend {ref.get('name')}:"
                                    f"{ref.get('port')} is not a rendered Service port")
            total = sum(ref.get("weight", 1) for ref in refs)
            if total != 100:
                problems.append(f"HTTPRoute {route['metadata'].get('name')}: weights sum to {total}, not 100")
    if problems:
        raise ManifestValidationError(problems)
