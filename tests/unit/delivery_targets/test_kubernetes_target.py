"""KubernetesTarget: rendering, validation, the documents each method applies, and the
provider-backed applier with the provider's hook mocked (there is no cluster here)."""

from __future__ import annotations

import copy
import json
from unittest import mock

import pytest
import yaml

from flightdeck.config import Settings
from flightdeck.delivery.targets.base import TrafficState
from flightdeck.delivery.targets.kubernetes import (
    KubernetesTarget,
    KubernetesTargetError,
    ManifestDirectory,
    ManifestValidationError,
    to_yaml,
    validate_manifests,
)
from flightdeck.errors import ConfigError, FlightdeckError
from flightdeck.serving.routes import parse_route_table

STEPS = ["deploy", "set_weight", "promote", "rollback"]


class RecordingApplier:
    """Records every list of documents it is asked to apply."""

    def __init__(self) -> None:
        self.calls: list[list[dict]] = []

    def __call__(self, documents: list[dict]) -> None:
        self.calls.append(copy.deepcopy(documents))

    def read_route(self, namespace: str, name: str) -> dict | None:
        """The last HTTPRoute applied (what a cluster would now hold), None before any."""
        routes = [d for call in self.calls for d in call if d["kind"] == "HTTPRoute"]
        return copy.deepcopy(routes[-1]) if routes else None


def make_target(**overrides) -> KubernetesTarget:
    kwargs = {"namespace": "ml-serving", "app": "credit", "model_name": "flightdeck-classifier",
              "baseline_version": "7", "candidate_version": "8", "gateway": "public",
              "gateway_namespace": "gateways", "hostnames": ["scores.example.com"],
              "image": "registry.example.com/flightdeck-gateway:0.1.0",
              "mlflow_tracking_uri": "http://mlflow.ml-serving:5000", **overrides}
    return KubernetesTarget(**kwargs)


def by_kind(documents: list[dict], kind: str) -> list[dict]:
    return [d for d in documents if d["kind"] == kind]


def route_weights(documents: list[dict]) -> dict[str, int]:
    (route,) = by_kind(documents, "HTTPRoute")
    (rule,) = route["spec"]["rules"]
    return {ref["name"]: ref["weight"] for ref in rule["backendRefs"]}


def replicas(documents: list[dict]) -> dict[str, int]:
    return {d["metadata"]["name"]: d["spec"]["replicas"] for d in by_kind(documents, "Deployment")}


# -- rendering --------------------------------------------------------------------------


@pytest.mark.parametrize("step", STEPS)
def test_every_step_renders_valid_manifests(step):
    documents = make_target().desired(step, 25)
    validate_manifests(documents)  # also done by desired(); explicit here
    assert sorted((d["kind"], d["metadata"]["name"]) for d in documents) == [
        ("ConfigMap", "credit-v7"), ("ConfigMap", "credit-v8"), ("Deployment", "credit-v7"),
        ("Deployment", "credit-v8"), ("HTTPRoute", "credit"), ("Service", "credit-v7"), ("Service", "credit-v8")]
    assert {d["metadata"]["namespace"] for d in documents} == {"ml-serving"}
    assert {d["apiVersion"] for d in by_kind(documents, "HTTPRoute")} == {"gateway.networking.k8s.io/v1"}
    assert list(yaml.safe_load_all(to_yaml(documents))) == documents


@pytest.mark.parametrize(("step", "percent", "weights", "candidate_replicas"), [
    ("deploy", None, (100, 0), 2),
    ("set_weight", 0, (100, 0), 2),
    ("set_weight", 5, (95, 5), 2),
    ("set_weight", 25, (75, 25), 2),
    ("set_weight", 50, (50, 50), 2),
    ("set_weight", 100, (0, 100), 2),
    ("promote", None, (0, 100), 2),
    ("rollback", None, (100, 0), 0),
])
def test_weights_sum_to_100_and_match_the_state(step, percent, weights, candidate_replicas):
    target = make_target()
    documents = target.desired(step, percent or 0)
    assert route_weights(documents) == {"credit-v7": weights[0], "credit-v8": weights[1]}
    assert sum(weights) == 100
    assert replicas(documents) == {"credit-v7": 2, "credit-v8": candidate_replicas}
    assert target.traffic(by_kind(documents, "HTTPRoute")[0]) == TrafficState(
        target.name, "7", "8", float(weights[1]))


def test_rollback_moves_traffic_before_it_scales_the_candidate_down():
    target = make_target()
    assert target.desired("rollback")[0]["kind"] == "HTTPRoute"
    for step in ("deploy", "set_weight", "promote"):  # pods exist before traffic reaches them
        assert target.desired(step, 10)[-1]["kind"] == "HTTPRoute"


def test_the_same_state_renders_byte_identical_yaml():
    target = make_target()
    rebuilt = KubernetesTarget.from_dict(json.loads(json.dumps(target.to_dict())))
    for step in STEPS:
        first = to_yaml(target.desired(step, 25))
        assert to_yaml(target.desired(step, 25)) == first
        assert to_yaml(rebuilt.desired(step, 25)) == first
    assert to_yaml(target.manifests(25)) != to_yaml(target.manifests(30))
    assert "&id" not in to_yaml(target.manifests(25))  # no YAML anchors from shared dicts


def test_pods_follow_least_privilege_and_probe_readiness():
    deployment = by_kind(make_target().manifests(0), "Deployment")[0]
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    (container,) = pod["containers"]
    assert container["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert set(container["resources"]) == {"requests", "limits"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    # With a read-only root, everything the gateway writes goes to mounted volumes.
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert {"/opt/flightdeck", "/tmp", "/etc/flightdeck"} <= mounts
    assert deployment["spec"]["selector"]["matchLabels"].items() <= \
        deployment["spec"]["template"]["metadata"]["labels"].items()


def test_each_deployment_serves_its_own_pinned_version():
    documents = make_target().manifests(0)
    settings_fields = set(Settings.model_fields)
    for version in ("7", "8"):
        (config_map,) = [d for d in by_kind(documents, "ConfigMap") if d["metadata"]["name"] == f"credit-v{version}"]
        table = parse_route_table(yaml.safe_load(config_map["data"]["routes.yaml"]))  # the gateway's own parser
        (variant,) = table.endpoints[table.default].variants.values()
        assert (variant.model, variant.version) == ("flightdeck-classifier", version)
        (deployment,) = [d for d in by_kind(documents, "Deployment") if d["metadata"]["name"] == f"credit-v{version}"]
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        env = {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}
        assert env["FLIGHTDECK_MODEL_NAME"] == "flightdeck-classifier"
        assert env["FLIGHTDECK_ROUTES_FILE"] == "/etc/flightdeck/routes.yaml"
        assert env["FLIGHTDECK_MLFLOW_TRACKING_URI"] == "http://mlflow.ml-serving:5000"
        # Each version keeps its own route store: the base's shared database URL is not taken.
        assert "FLIGHTDECK_GATEWAY_DATABASE_URL" not in env
        # Every variable is one the settings object reads.
        assert {name.removeprefix("FLIGHTDECK_").lower() for name in env} <= settings_fields
        (service,) = [d for d in by_kind(documents, "Service") if d["metadata"]["name"] == f"credit-v{version}"]
        assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]


# -- bad input --------------------------------------------------------------------------


@pytest.mark.parametrize("percent", [-1, 100.5, 12.5, float("nan"), True, "25"])
def test_a_share_outside_0_to_100_or_fractional_is_refused(percent):
    target = make_target(applier=RecordingApplier())
    with pytest.raises(ConfigError, match="percent"):
        target.set_weight(percent)
    assert target.applier.calls == []


@pytest.mark.parametrize(("field", "value", "message"), [
    ("app", "Credit", "DNS-1035 label"),
    ("app", "credit_scorer", "DNS-1035 label"),
    ("app", "9credit", "starting with a letter"),
    ("app", "c" * 41, "at most 40 characters"),
    ("namespace", "ML", "DNS-1123 label"),
    ("namespace", "ml-", "DNS-1123 label"),
    ("gateway", "Public Gateway", "DNS-1123 subdomain"),
    ("model_name", "credit model", "label value"),
    ("candidate_version", "v8", "model version number"),
    ("candidate_version", "7", "equals the baseline"),
    ("hostnames", ["Scores.Example.com"], "not a hostname"),
    ("replicas", 0, "positive whole number"),
    ("env", {"BAD-NAME": "x"}, "environment variable"),
])
def test_invalid_names_and_versions_raise_clear_errors(field, value, message):
    with pytest.raises(ConfigError, match=message) as caught:
        make_target(**{field: value})
    assert caught.value.name == field and "Fix:" in str(caught.value)
    assert isinstance(caught.value, FlightdeckError)


# -- validation catches what a bad edit would break ---------------------------------------


def _broken(edit) -> list[dict]:
    documents = make_target().manifests(25)
    edit(documents)
    return documents


@pytest.mark.parametrize(("edit", "message"), [
    (lambda d: d[1]["spec"]["template"]["spec"]["containers"][0].update(securityContxt={}),
     r"containers\[0\]\.securityContxt: unknown field of V1Container"),
    (lambda d: d[1]["spec"].update(replicas="2"), r"spec\.replicas: expected int, got str"),
    (lambda d: d[1]["spec"]["template"]["spec"]["containers"][0].pop("name"),
     "Deployment credit-v7: as V1Deployment: Invalid value for `name`, must not be `None`"),
    (lambda d: d[2]["spec"]["ports"][0].update(prot="TCP"), r"ports\[0\]\.prot: unknown field of V1ServicePort"),
    (lambda d: d[0].update(date={}), "date: unknown field of V1ConfigMap"),
    (lambda d: d[1]["spec"]["selector"]["matchLabels"].update(extra="x"), "does not match the pod labels"),
    (lambda d: d[-1]["spec"]["rules"][0]["backendRefs"][0].update(weight=-1), "weight"),
    (lambda d: d[-1]["spec"]["rules"][0]["backendRefs"][0].update(weight=76), "weights sum to 101"),
    (lambda d: d[-1]["spec"]["rules"][0]["backendRefs"][0].update(name="credit-v6"), "not a rendered Service"),
    (lambda d: d[-1]["spec"].update(filters=[]), "Additional properties are not allowed"),
    (lambda d: d[-1].update(apiVersion="gateway.networking.k8s.io/v1beta1"), "apiVersion"),
    (lambda d: d.append({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x"}}), "not a kind"),
])
def test_validation_names_unknown_fields_wrong_types_and_broken_links(edit, message):
    with pytest.raises(ManifestValidationError, match=message):
        validate_manifests(_broken(edit))


# -- the applier gets the whole desired state; state() reads the route back ----------------


def test_each_method_hands_the_applier_the_documents_of_its_state():
    applier = RecordingApplier()
    target = make_target(applier=applier, reader=applier.read_route)
    results = [target.deploy(), target.set_weight(25), target.set_weight(25), target.promote(), target.rollback()]
    assert [r.candidate_percent for r in results] == [0.0, 25.0, 25.0, 100.0, 0.0]
    assert applier.calls == [target.desired("deploy"), target.desired("set_weight", 25),
                             target.desired("set_weight", 25), target.desired("promote"), target.desired("rollback")]
    assert [route_weights(call)["credit-v8"] for call in applier.calls] == [0, 25, 25, 100, 0]
    assert [replicas(call)["credit-v8"] for call in applier.calls] == [2, 2, 2, 2, 0]
    assert target.set_weight(100) == target.promote()


def test_state_survives_a_new_process_through_a_manifest_directory(tmp_path):
    cluster = ManifestDirectory(tmp_path / "manifests")
    target = make_target(applier=cluster.apply, reader=cluster.read_route)
    assert target.state() == TrafficState(target.name, "7", None, 0.0)  # nothing applied yet
    target.deploy()
    target.set_weight(25)
    rebuilt = KubernetesTarget.from_dict(json.loads(json.dumps(target.to_dict())),
                                         applier=cluster.apply, reader=cluster.read_route)
    assert rebuilt.state() == TrafficState(target.name, "7", "8", 25.0)
    assert rebuilt.rollback() == rebuilt.state() == TrafficState(target.name, "7", "8", 0.0)
    written = (tmp_path / "manifests" / "ml-serving" / "deployment" / "credit-v8.yaml").read_text()
    assert yaml.safe_load(written)["spec"]["replicas"] == 0
    assert written == to_yaml([target.desired("rollback")[-2]])  # same bytes as the rendering


def test_a_route_owned_by_another_rollout_or_no_reader_is_reported():
    foreign = make_target(baseline_version="5", candidate_version="6").manifests(50)[-1]
    target = make_target(reader=lambda namespace, name: foreign)
    with pytest.raises(KubernetesTargetError, match=r"sends traffic to \['credit-v5', 'credit-v6'\]"):
        target.state()
    with pytest.raises(KubernetesTargetError, match="no reader"):
        make_target().state()
    with pytest.raises(KubernetesTargetError, match="no applier"):
        make_target().deploy()


# -- the provider applier, with the provider's hook mocked --------------------------------


def test_provider_applier_server_side_applies_each_document_in_order():
    from flightdeck.airflow import k8s_apply

    documents = make_target().desired("rollback")
    hook = mock.MagicMock(name="KubernetesHook")
    with mock.patch.object(k8s_apply, "KubernetesHook", return_value=hook) as hook_class, \
            mock.patch("kubernetes.dynamic.DynamicClient") as dynamic_class:
        applier = k8s_apply.KubernetesHookApplier("k8s_prod")
        applier(documents)
    hook_class.assert_called_once_with(conn_id="k8s_prod")
    dynamic_class.assert_called_once_with(hook.api_client)
    dynamic = dynamic_class.return_value
    assert dynamic.resources.get.call_args_list == [
        mock.call(api_version=d["apiVersion"], kind=d["kind"]) for d in documents]
    assert dynamic.server_side_apply.call_args_list == [
        mock.call(dynamic.resources.get.return_value, body=d, name=d["metadata"]["name"],
                  namespace="ml-serving", field_manager="flightdeck", force_conflicts=True)
        for d in documents]
    assert documents[0]["kind"] == "HTTPRoute"  # rollback: traffic moves first


def test_provider_reader_gets_the_httproute_and_maps_404_to_none():
    from kubernetes.client.exceptions import ApiException

    from flightdeck.airflow.k8s_apply import KubernetesHookApplier

    route = make_target().manifests(25)[-1]
    hook = mock.MagicMock(name="KubernetesHook")
    hook.get_custom_object.return_value = route
    reader = KubernetesHookApplier(hook=hook)
    target = make_target(reader=reader.read_route)
    assert target.state().candidate_percent == 25.0
    hook.get_custom_object.assert_called_once_with(group="gateway.networking.k8s.io", version="v1",
                                                   plural="httproutes", name="credit", namespace="ml-serving")
    hook.get_custom_object.side_effect = ApiException(status=404, reason="Not Found")
    assert target.state() == TrafficState(target.name, "7", None, 0.0)
    hook.get_custom_object.side_effect = ApiException(status=403, reason="Forbidden")
    with pytest.raises(ApiException):
        target.state()
