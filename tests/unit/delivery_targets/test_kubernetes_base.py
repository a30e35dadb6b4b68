"""The Kubernetes target runs the platform's gateway manifests (deploy/k8s/base), not a second
rendering: each version's Deployment and Service are the base's, patched only where a version
differs (name, labels, selector, replicas, image, settings, the route-table volume). These tests
hold the rendered objects equal to the base on everything else, show that an edit of the base
reaches the target, and that a base the target cannot use is refused with a clear error."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from flightdeck.delivery.targets.kubernetes import (
    BASE_DIR,
    KubernetesTarget,
    KubernetesTargetError,
)

ROOT = Path(__file__).resolve().parents[3]
BASE = ROOT / "deploy" / "k8s" / "base"
PER_VERSION_CONTAINER_FIELDS = {"image", "env", "envFrom", "volumeMounts"}


def base_document(file_name: str, kind: str) -> dict:
    return next(d for d in yaml.safe_load_all((BASE / file_name).read_text())
                if d and d["kind"] == kind and d["metadata"]["name"] == "flightdeck-gateway")


def make_target(**overrides) -> KubernetesTarget:
    kwargs = {"namespace": "ml-serving", "app": "credit", "model_name": "flightdeck-classifier",
              "baseline_version": "7", "candidate_version": "8", "gateway": "public",
              "image": "registry.example.com/flightdeck-gateway:0.1.0", **overrides}
    return KubernetesTarget(**kwargs)


def rendered(target: KubernetesTarget, kind: str, version: str = "8") -> dict:
    return next(d for d in target.manifests(25)
                if d["kind"] == kind and d["metadata"]["name"] == f"credit-v{version}")


def test_the_default_base_is_this_repositorys():
    assert BASE_DIR == BASE


def test_each_version_deployment_is_the_base_deployment_but_for_per_version_fields():
    base = base_document("gateway-deployment.yaml", "Deployment")
    configmap = base_document("gateway-configmap.yaml", "ConfigMap")
    for version in ("7", "8"):
        deployment = rendered(make_target(), "Deployment", version)
        spec, base_spec = deployment["spec"], base["spec"]
        assert {k: v for k, v in spec.items() if k not in ("replicas", "selector", "template")} == \
            {k: v for k, v in base_spec.items() if k not in ("replicas", "selector", "template")}
        pod, base_pod = spec["template"]["spec"], base_spec["template"]["spec"]
        # Pod-level fields: security context, grace period, service links... all the base's.
        assert {k: v for k, v in pod.items() if k not in ("containers", "volumes")} == \
            {k: v for k, v in base_pod.items() if k not in ("containers", "volumes")}
        assert pod["volumes"] == [{"name": "routes", "configMap": {"name": f"credit-v{version}"}},
                                  *base_pod["volumes"]]
        (container,), (base_container,) = pod["containers"], base_pod["containers"]
        # Probes, resources, ports, security context, pull policy: the base's, field for field.
        assert {k: v for k, v in container.items() if k not in PER_VERSION_CONTAINER_FIELDS} == \
            {k: v for k, v in base_container.items() if k not in PER_VERSION_CONTAINER_FIELDS}
        assert container["volumeMounts"] == [*base_container["volumeMounts"],
                                             {"name": "routes", "mountPath": "/etc/flightdeck", "readOnly": True}]
        assert container["image"] == "registry.example.com/flightdeck-gateway:0.1.0"
        # The base's settings ConfigMap is inlined; its Secret references are kept but the shared database.
        env = {e["name"]: e for e in container["env"]}
        for key, value in configmap["data"].items():
            assert env[key] == {"name": key, "value": value}
        for entry in base_container["env"]:
            if entry["name"] == "FLIGHTDECK_GATEWAY_DATABASE_URL":
                assert entry["name"] not in env
            else:
                assert env[entry["name"]] == entry
        assert "envFrom" not in container
        assert env["FLIGHTDECK_MODEL_NAME"]["value"] == "flightdeck-classifier"
        # Template metadata: the base's annotations (Prometheus scraping) and labels, plus ours.
        template = spec["template"]["metadata"]
        assert base_spec["template"]["metadata"]["annotations"].items() <= template["annotations"].items()
        assert base_spec["template"]["metadata"]["labels"].items() <= template["labels"].items()
        assert template["labels"]["flightdeck.io/model-version"] == version


def test_each_version_service_is_the_base_service_with_its_own_selector():
    base = base_document("gateway-service.yaml", "Service")
    target = make_target()
    service = rendered(target, "Service")
    assert service["spec"]["ports"] == base["spec"]["ports"]
    assert {k: v for k, v in service["spec"].items() if k != "selector"} == \
        {k: v for k, v in base["spec"].items() if k != "selector"}
    assert service["spec"]["selector"] == rendered(target, "Deployment")["spec"]["selector"]["matchLabels"]
    http = next(p["port"] for p in base["spec"]["ports"] if p["name"] == "http")
    route = target.manifests(25)[-1]
    assert {ref["port"] for ref in route["spec"]["rules"][0]["backendRefs"]} == {http}


def test_rendered_core_objects_pass_the_strict_kubernetes_schemas():
    validated = []
    for document in make_target().manifests(25):
        if document["kind"] != "HTTPRoute":
            kubernetes_validate.validate(document, "1.35.0", strict=True)  # raises on any schema error
            validated.append(document["kind"])
    assert {"Deployment", "Service"} <= set(validated), validated  # not passing by validating nothing


@pytest.fixture
def base_copy(tmp_path) -> Path:
    copied = tmp_path / "base"
    shutil.copytree(BASE, copied)
    return copied


def _edit(path: Path, kind: str, edit) -> None:
    documents = [d for d in yaml.safe_load_all(path.read_text()) if d]
    for document in documents:
        if document["kind"] == kind:
            edit(document)
    path.write_text(yaml.safe_dump_all(documents, sort_keys=False))


def test_an_edit_of_the_base_reaches_every_version_and_survives_to_dict(base_copy):
    def tighten(deployment: dict) -> None:
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        container["readinessProbe"]["periodSeconds"] = 2
        container["resources"]["limits"]["memory"] = "3Gi"
        deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = 45

    _edit(base_copy / "gateway-deployment.yaml", "Deployment", tighten)
    _edit(base_copy / "gateway-configmap.yaml", "ConfigMap",
          lambda c: c["data"].update(FLIGHTDECK_CACHE_BACKEND="memory"))
    target = make_target(base_dir=base_copy)
    rebuilt = KubernetesTarget.from_dict(json.loads(json.dumps(target.to_dict())))
    for built in (target, rebuilt):
        for version in ("7", "8"):
            pod = rendered(built, "Deployment", version)["spec"]["template"]["spec"]
            (container,) = pod["containers"]
            assert container["readinessProbe"]["periodSeconds"] == 2
            assert container["resources"]["limits"]["memory"] == "3Gi"
            assert pod["terminationGracePeriodSeconds"] == 45
            assert {"name": "FLIGHTDECK_CACHE_BACKEND", "value": "memory"} in container["env"]
    unchanged = rendered(make_target(), "Deployment")["spec"]["template"]["spec"]
    assert unchanged["terminationGracePeriodSeconds"] == 30


def test_arguments_override_the_base_where_a_rollout_needs_it():
    target = make_target(resources={"requests": {"cpu": "500m"}, "limits": {"cpu": "1"}},
                         mlflow_tracking_uri="http://mlflow.ml-serving:5000", env={"FLIGHTDECK_CACHE_BACKEND": "redis"},
                         replicas=3)
    deployment = rendered(target, "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert container["resources"] == {"requests": {"cpu": "500m"}, "limits": {"cpu": "1"}}
    assert env["FLIGHTDECK_MLFLOW_TRACKING_URI"] == "http://mlflow.ml-serving:5000"
    assert env["FLIGHTDECK_CACHE_BACKEND"] == "redis"
    assert deployment["spec"]["replicas"] == 3
    assert [e["name"] for e in container["env"]] == sorted(e["name"] for e in container["env"])


@pytest.mark.parametrize(("edit", "message"), [
    (lambda b: shutil.rmtree(b), "cannot read the Kustomize base"),
    (lambda b: _edit(b / "kustomization.yaml", "Kustomization",
                     lambda k: k["resources"].remove("gateway-service.yaml")), "does not list gateway-service.yaml"),
    (lambda b: _edit(b / "gateway-deployment.yaml", "Deployment",
                     lambda d: d["spec"]["template"]["spec"]["containers"][0].update(name="server")),
     r"no container named 'gateway' .*\['server'\]"),
    (lambda b: _edit(b / "gateway-service.yaml", "Service",
                     lambda s: s["spec"]["ports"][0].update(name="web")), "no port named 'http'"),
    (lambda b: _edit(b / "gateway-configmap.yaml", "ConfigMap",
                     lambda c: c["metadata"].update(name="settings")), "0 ConfigMap named 'flightdeck-gateway'"),
])
def test_a_base_the_target_cannot_use_is_refused_naming_the_file_and_the_fix(base_copy, edit, message):
    edit(base_copy)
    with pytest.raises(KubernetesTargetError, match=message) as caught:
        make_target(base_dir=base_copy)
    assert "Fix: pass base_dir=" in str(caught.value)


def test_rendering_never_changes_the_loaded_base():
    target = make_target()
    before = copy.deepcopy(target._base)
    target.manifests(25)
    target.desired("rollback")
    assert target._base == before
