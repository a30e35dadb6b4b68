"""KubernetesTarget.rollback is compare-and-set: it acts only while the live HTTPRoute is this
rollout's, carries the route's resourceVersion so a concurrent change is refused, and otherwise
applies nothing and says why (`left_alone`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from flightdeck.delivery.targets.kubernetes import (
    KubernetesTargetError,
    ManifestDirectory,
    RouteConflictError,
)
from tests.unit.delivery_targets.test_kubernetes_target import RecordingApplier, make_target


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.yaml"))}


@pytest.fixture
def cluster(tmp_path) -> ManifestDirectory:
    return ManifestDirectory(tmp_path / "manifests")


def _rollout(cluster: ManifestDirectory, baseline: str, candidate: str):
    return make_target(baseline_version=baseline, candidate_version=candidate, applier=cluster.apply,
                       reader=cluster.read_route)


def test_the_rollouts_own_route_is_rolled_back_with_its_resource_version(cluster):
    target = _rollout(cluster, "7", "8")
    target.deploy()
    target.set_weight(25)
    live_version = cluster.read_route("ml-serving", "credit")["metadata"]["resourceVersion"]
    recorder = RecordingApplier()
    checked = make_target(applier=recorder, reader=cluster.read_route)
    assert checked.rollback().candidate_percent == 0.0 and checked.left_alone is None
    (route,) = [d for d in recorder.calls[0] if d["kind"] == "HTTPRoute"]
    assert route["metadata"]["resourceVersion"] == live_version  # the API server's precondition
    state = target.rollback()  # through the directory: the precondition holds, so it writes
    assert state.candidate_percent == 0.0 and target.left_alone is None
    written = (cluster.root / "ml-serving" / "httproute" / "credit.yaml").read_text()
    assert "resourceVersion" not in written and "replicas: 0" in (
        cluster.root / "ml-serving" / "deployment" / "credit-v8.yaml").read_text()


@pytest.mark.parametrize(("later", "why"), [(("8", "9"), "credit-v9"), (("8", "7"), "baseline v8, candidate v7")],
                         ids=["next rollout", "same versions, roles swapped"])
def test_a_rollback_rerun_after_a_later_rollout_moves_nothing(cluster, later, why):
    old = _rollout(cluster, "7", "8")
    old.deploy()
    old.promote()
    newer = _rollout(cluster, *later)
    newer.deploy()
    newer.set_weight(40)
    before = _files(cluster.root)
    state = old.rollback()
    assert _files(cluster.root) == before  # not a byte changed, route or Deployments
    assert old.left_alone is not None and "belongs to another rollout" in old.left_alone and why in old.left_alone
    assert state.baseline == "7"
    assert newer.state().candidate_percent == 40.0


def test_a_hand_made_route_without_the_rollouts_annotations_is_left_alone():
    route = make_target().manifests(0)[-1]
    del route["metadata"]["annotations"]
    recorder = RecordingApplier()
    target = make_target(applier=recorder, reader=lambda namespace, name: route)
    assert target.rollback().candidate_percent == 0.0
    assert recorder.calls == [] and "belongs to another rollout" in target.left_alone


def test_a_route_changed_between_the_read_and_the_write_is_refused(cluster):
    target = _rollout(cluster, "7", "8")
    target.deploy()
    target.set_weight(25)
    rival = _rollout(cluster, "7", "8")

    after_rival: dict[str, bytes] = {}

    def read_then_rival_writes(namespace: str, name: str) -> dict | None:
        route = cluster.read_route(namespace, name)
        rival.set_weight(50)  # another run's step lands after our read
        after_rival.update(_files(cluster.root))
        return route

    racing = make_target(applier=cluster.apply, reader=read_then_rival_writes)
    with pytest.raises(RouteConflictError, match="changed since it was read"):
        racing.rollback()
    assert _files(cluster.root) == after_rival  # the route is first: nothing after it was applied
    assert target.state().candidate_percent == 50.0


def test_a_rollback_without_a_reader_refuses_before_applying():
    recorder = RecordingApplier()
    with pytest.raises(KubernetesTargetError, match="no reader"):
        make_target(applier=recorder).rollback()
    assert recorder.calls == []
