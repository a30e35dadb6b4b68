"""deploy/k8s: the Kustomize base and overlays rendered by a small renderer written for this test
(no kustomize binary here; it implements the subset we use: resources, namespace, labels, images
and strategic-merge patches with a target, `$patch: delete` included) and every rendered object
validated: built-in kinds with kubernetes-validate (offline schemas, strict: no unknown field),
DaskCluster against the dask-kubernetes operator's CRD schema, ScaledObject against the schema
subset in deploy/k8s/crds (KEDA publishes its CRDs on no package registry). Also: the objects that
point at the gateway point at its Deployment, the probes use routes the gateway serves, the
Airflow chart values parse, and the renderer and validators reject broken input."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
CRDS = K8S / "crds"
K8S_VERSION = "1.35.0"
OVERLAYS = ["base", "overlays/dev", "overlays/prod"]


class RenderError(Exception):
    pass


def _merge(base, patch):
    """Strategic merge, the subset we use: maps merge, lists of named maps merge by name."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for key, value in patch.items():
            out[key] = _merge(base[key], value) if key in base else copy.deepcopy(value)
        return out
    if (isinstance(base, list) and isinstance(patch, list) and all(isinstance(x, dict) and "name" in x
                                                                   for x in base + patch)):
        out = [dict(x) for x in base]
        for item in patch:
            match = next((i for i, x in enumerate(out) if x["name"] == item["name"]), None)
            if match is None:
                out.append(copy.deepcopy(item))
            else:
                out[match] = _merge(out[match], item)
        return out
    return copy.deepcopy(patch)


def _load(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def render(directory: Path) -> list[dict]:
    spec = yaml.safe_load((directory / "kustomization.yaml").read_text())
    known = {"apiVersion", "kind", "resources", "namespace", "labels", "images", "patches"}
    if set(spec) - known:
        raise RenderError(f"{directory}: fields this renderer does not implement: {set(spec) - known}")
    objects: list[dict] = []
    for entry in spec.get("resources", []):
        path = (directory / entry).resolve()
        if not path.exists():
            raise RenderError(f"{directory}: resource {entry} does not exist")
        objects += render(path) if path.is_dir() else _load(path)
    for patch in spec.get("patches", []):
        target, body = patch["target"], yaml.safe_load(patch["patch"])
        hits = [i for i, o in enumerate(objects)
                if o["kind"] == target["kind"] and o["metadata"]["name"] == target["name"]]
        if len(hits) != 1:
            raise RenderError(f"{directory}: patch target {target} matches {len(hits)} objects")
        if body.pop("$patch", None) == "delete":
            del objects[hits[0]]
        else:
            objects[hits[0]] = _merge(objects[hits[0]], body)
    for pairs in spec.get("labels", []):
        for obj in objects:
            obj["metadata"].setdefault("labels", {}).update(pairs["pairs"])
    for image in spec.get("images", []):
        for obj in objects:
            for container in _containers(obj):
                if container["image"].split(":")[0] == image["name"]:
                    container["image"] = f"{image.get('newName', image['name'])}:{image['newTag']}"
    if "namespace" in spec:
        for obj in objects:
            obj["metadata"]["namespace"] = spec["namespace"]
    return objects


def _containers(obj: dict) -> list[dict]:
    spec = obj.get("spec", {})
    pods = [spec.get("template", {}).get("spec", {})]
    if obj["kind"] == "DaskCluster":
        pods = [spec["worker"]["spec"], spec["scheduler"]["spec"]]
    return [c for pod in pods for c in pod.get("containers", [])]


def _crd_schema(path: Path) -> dict:
    return yaml.safe_load(path.read_text())["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def pruned_fields(obj, schema: dict, where: str = "") -> list[str]:
    """Fields the API server would silently drop: not in a structural schema's properties."""
    if schema.get("x-kubernetes-preserve-unknown-fields") or schema.get("x-kubernetes-int-or-string"):
        return []
    found = []
    if isinstance(obj, dict) and "properties" in schema:
        for key, value in obj.items():
            if key not in schema["properties"]:
                found.append(f"{where}.{key}")
            else:
                found += pruned_fields(value, schema["properties"][key], f"{where}.{key}")
    elif isinstance(obj, list) and "items" in schema:
        for i, item in enumerate(obj):
            found += pruned_fields(item, schema["items"], f"{where}[{i}]")
    return found


DASK = _crd_schema(CRDS / "daskcluster.yaml")
DASK_VALIDATOR = jsonschema.Draft4Validator(DASK)  # OpenAPI v3 schemas are close to draft 4
KEDA = yaml.safe_load((CRDS / "keda-scaledobject.schema.yaml").read_text())


def validate(obj: dict) -> None:
    kind = obj["kind"]
    if kind == "DaskCluster":
        body = {k: v for k, v in obj.items() if k != "metadata"}
        DASK_VALIDATOR.validate(body)
        extra = [f for f in pruned_fields(body, DASK) if not f.startswith((".apiVersion", ".kind"))]
        assert not extra, f"DaskCluster fields the CRD does not know: {extra}"
    elif kind == "ScaledObject":
        jsonschema.validate(obj, KEDA)
    else:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict]]:
    return {name: render(K8S / name) for name in OVERLAYS}


@pytest.mark.parametrize("name", OVERLAYS)
def test_every_rendered_object_is_valid(rendered, name):
    objects = rendered[name]
    kinds = {o["kind"] for o in objects}
    assert {"Deployment", "Service", "PodDisruptionBudget", "DaskCluster", "ConfigMap", "NetworkPolicy"} <= kinds
    for obj in objects:
        validate(obj)
    names = [(o["kind"], o["metadata"]["name"]) for o in objects]
    assert len(names) == len(set(names)), "duplicate objects"


def by(objects, kind, name="flightdeck-gateway"):
    return next(o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name)


def test_overlays_change_what_they_say(rendered):
    dev, prod = rendered["overlays/dev"], rendered["overlays/prod"]
    assert {o["metadata"]["namespace"] for o in dev} == {"flightdeck-dev"}
    assert {o["metadata"]["namespace"] for o in prod} == {"flightdeck"}
    assert by(dev, "Deployment")["spec"]["replicas"] == 1
    assert by(dev, "HorizontalPodAutoscaler")["spec"]["maxReplicas"] == 3
    # Strategic merge kept the container's other fields (probes) while changing its CPU request.
    gateway = by(dev, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert gateway["resources"]["requests"] == {"cpu": "250m", "memory": "512Mi"} and "readinessProbe" in gateway
    # Production: KEDA instead of the base's HPA, never both on one Deployment.
    assert not [o for o in prod if o["kind"] == "HorizontalPodAutoscaler"]
    assert by(prod, "ScaledObject")["spec"]["minReplicaCount"] == by(prod, "Deployment")["spec"]["replicas"]
    assert all(c["image"].startswith("123456789012.dkr.ecr.") for o in prod for c in _containers(o))
    assert by(prod, "DaskCluster", "flightdeck-dask")["spec"]["worker"]["replicas"] == 8


def test_scalers_and_budgets_point_at_the_gateway(rendered):
    for objects in rendered.values():
        deployment = by(objects, "Deployment")
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
        for kind in ("Service", "PodDisruptionBudget"):
            obj = by(objects, kind)
            selector = obj["spec"]["selector"].get("matchLabels", obj["spec"]["selector"])
            assert selector.items() <= pod_labels.items(), kind
        for kind in ("HorizontalPodAutoscaler", "ScaledObject"):
            for obj in (o for o in objects if o["kind"] == kind):
                assert obj["spec"]["scaleTargetRef"]["name"] == "flightdeck-gateway"
    query = by(rendered["overlays/prod"], "ScaledObject")["spec"]["triggers"][0]["metadata"]["query"]
    assert "flightdeck_requests_total" in query


def test_probes_use_routes_the_gateway_serves(rendered):
    app = (ROOT / "include" / "flightdeck" / "serving" / "app.py").read_text()
    served = set(re.findall(r'@app\.get\("([^"]+)"', app))
    container = by(rendered["base"], "Deployment")["spec"]["template"]["spec"]["containers"][0]
    probes = {container[p]["httpGet"]["path"] for p in ("readinessProbe", "livenessProbe", "startupProbe")}
    assert probes <= served and "/v2/health/ready" in probes


def test_airflow_chart_values_parse_and_name_the_stack():
    values = yaml.safe_load((ROOT / "deploy" / "helm" / "airflow-values.yaml").read_text())
    env = {e["name"]: e["value"] for e in values["env"]}
    assert env["FLIGHTDECK_DASK_SCHEDULER_ADDRESS"].startswith("tcp://flightdeck-dask-scheduler.")
    assert values["triggerer"]["enabled"] is True and values["postgresql"]["enabled"] is False


@pytest.mark.parametrize("breakage", [
    lambda o: o["spec"]["template"]["spec"]["containers"][0].update(readinessProbes={}),  # unknown field
    lambda o: o["spec"].update(replicas="two"),
])
def test_validation_rejects_a_broken_deployment(rendered, breakage):
    deployment = copy.deepcopy(by(rendered["base"], "Deployment"))
    breakage(deployment)
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(deployment)


def test_crd_validation_rejects_broken_custom_resources(rendered):
    dask = copy.deepcopy(by(rendered["base"], "DaskCluster", "flightdeck-dask"))
    dask["spec"]["worker"]["replica"] = dask["spec"]["worker"].pop("replicas")  # a typo the server would drop
    with pytest.raises(AssertionError, match="worker.replica"):
        validate(dask)
    del dask["spec"]["scheduler"]
    with pytest.raises(jsonschema.ValidationError):
        validate(dask)
    scaled = copy.deepcopy(by(rendered["overlays/prod"], "ScaledObject"))
    del scaled["spec"]["triggers"][0]["metadata"]["query"]
    with pytest.raises(jsonschema.ValidationError):
        validate(scaled)


def test_the_renderer_refuses_a_patch_without_a_target(tmp_path):
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump({
        "resources": [str(K8S / "base")],
        "patches": [{"target": {"kind": "Deployment", "name": "no-such"}, "patch": "spec: {}"}]}))
    with pytest.raises(RenderError, match="matches 0 objects"):
        render(tmp_path)


def test_the_rollout_target_renders_the_same_gateway_pod_as_the_base():
    """delivery/targets/kubernetes.py renders per-version Deployments itself (it runs in Airflow's
    image, which does not ship deploy/); this keeps the two from drifting: same probes, ports,
    security settings and rollout strategy."""
    from flightdeck.delivery.targets.kubernetes import KubernetesTarget

    target = KubernetesTarget(namespace="ml-serving", app="credit", model_name="credit-model", baseline_version=1,
                              candidate_version=2, gateway="public", image="registry.example/flightdeck-gateway:1")
    rendered = next(d for d in target.manifests(0) if d["kind"] == "Deployment")
    base = by(render(K8S / "base"), "Deployment")
    ours, theirs = (d["spec"]["template"]["spec"]["containers"][0] for d in (base, rendered))
    for key in ("readinessProbe", "livenessProbe", "startupProbe", "ports"):
        assert ours[key] == theirs[key], key
    assert ours["securityContext"].items() >= {k: v for k, v in theirs["securityContext"].items()
                                               if k not in ("runAsUser", "runAsGroup")}.items()
    assert base["spec"]["strategy"] == rendered["spec"]["strategy"]
    pod_keys = ("securityContext", "automountServiceAccountToken", "enableServiceLinks",
                "terminationGracePeriodSeconds")
    assert {k: base["spec"]["template"]["spec"][k] for k in pod_keys} == \
        {k: rendered["spec"]["template"]["spec"][k] for k in pod_keys}
