"""The Cloud Run traffic-split target against a fake of the Cloud Run Admin API v2 on loopback:
services.get / revisions.list / services.patch (traffic, etag) and the long-running operation."""

from __future__ import annotations

import pytest

from flightdeck.delivery.targets.cloud_run import (
    CloudRunConflictError,
    CloudRunNotFoundError,
    CloudRunTarget,
    CloudRunTargetError,
)
from flightdeck.errors import ConfigError
from tests.support.cloud_fakes import FakeCloudRun

pytestmark = pytest.mark.integration

SERVICE = "projects/demo/locations/europe-west1/services/scorer"
LATEST = {"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST", "percent": 100}


@pytest.fixture(scope="module")
def fake():
    server = FakeCloudRun()
    yield server
    server.close()


@pytest.fixture
def cloud_run(fake):
    labels = [{"flightdeck-model": "credit", "flightdeck-version": v} for v in ("1", "2", "3")]
    fake.reset(SERVICE, [{"name": "scorer-00001-aaa", "labels": labels[0]},
                         {"name": "scorer-00002-bbb", "labels": labels[1]},
                         {"name": "scorer-00003-ccc", "labels": labels[2], "ready": "CONDITION_FAILED"}],
               [{"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION", "revision": "scorer-00001-aaa", "percent": 100}])
    return fake


def target(fake, version="2", **options) -> CloudRunTarget:
    return CloudRunTarget(project="demo", location="europe-west1", service="scorer", model_name="credit",
                          model_version=version, token="test-token", api_base=fake.url, poll_seconds=0.01, **options)


def split(fake) -> dict:
    return {t["revision"]: (t["percent"], t.get("tag")) for t in fake.service["traffic"]}


def test_a_canary_moves_traffic_between_the_labelled_revisions(cloud_run):
    run = target(cloud_run)
    state = run.deploy()
    assert (state.baseline, state.candidate, state.candidate_percent) == ("scorer-00001-aaa", "scorer-00002-bbb", 0)
    assert split(cloud_run) == {"scorer-00001-aaa": (100, None), "scorer-00002-bbb": (0, "candidate")}
    method, path, query, body = cloud_run.writes()[0]
    assert (method, path, query) == ("PATCH", f"/v2/{SERVICE}", {"updateMask": "traffic"})
    assert body["etag"] == '"e1"'
    assert [r[1] for r in cloud_run.requests if r[1].endswith("/operations/op-1")] == ["/v2/projects/demo/locations/"
                                                                                      "europe-west1/operations/op-1"] * 2
    assert run.set_weight(25).candidate_percent == 25
    writes = len(cloud_run.writes())
    assert run.set_weight(25).candidate_percent == 25
    assert len(cloud_run.writes()) == writes, "the same split twice is one write"
    assert split(cloud_run) == {"scorer-00001-aaa": (75, None), "scorer-00002-bbb": (25, "candidate")}
    assert run.variant_names() == ("scorer-00001-aaa", "scorer-00002-bbb")

    later = CloudRunTarget.from_dict(run.to_dict(), token="test-token")
    later.poll_seconds = 0.01
    assert later.promote().candidate_percent == 100
    assert split(cloud_run) == {"scorer-00002-bbb": (100, None)}
    state = later.rollback()  # the pinned baseline survives the promotion
    assert (state.baseline, state.candidate_percent) == ("scorer-00001-aaa", 0)
    assert split(cloud_run) == {"scorer-00001-aaa": (100, None)}


def test_latest_traffic_resolves_to_the_ready_revision(cloud_run):
    cloud_run.service["traffic"] = [LATEST]
    cloud_run.service["latestReadyRevision"] = f"{SERVICE}/revisions/scorer-00001-aaa"
    assert target(cloud_run).baseline == "scorer-00001-aaa"


def test_a_candidate_without_a_ready_labelled_revision_is_refused(cloud_run):
    with pytest.raises(CloudRunTargetError, match="no ready revision labelled flightdeck-model=credit, "
                                                  "flightdeck-version=3"):
        target(cloud_run, version="3").deploy()
    assert cloud_run.writes() == []


def test_whole_percents_only(cloud_run):
    with pytest.raises(ConfigError, match="whole percent"):
        target(cloud_run).set_weight(12.5)


def test_a_missing_service_names_the_fix(cloud_run):
    run = CloudRunTarget(project="demo", location="europe-west1", service="nope", model_name="credit",
                         model_version="2", token="t", api_base=cloud_run.url)
    with pytest.raises(CloudRunNotFoundError, match="terraform module cloud_function"):
        run.state()


def test_a_stale_etag_is_a_conflict_not_an_overwrite(cloud_run):
    run = target(cloud_run)
    run.deploy()
    original = run._get_service

    def stale():
        service = original()
        cloud_run.service["etag"] = '"changed-meanwhile"'
        return service

    run._get_service = stale
    with pytest.raises(CloudRunConflictError, match="one rollout at a time"):
        run.set_weight(10)
    assert split(cloud_run)["scorer-00002-bbb"] == (0, "candidate")


def test_a_failed_operation_is_reported(cloud_run):
    cloud_run.fail_next_operation = "revision scorer-00002-bbb is not ready"
    with pytest.raises(CloudRunTargetError, match="not ready"):
        target(cloud_run).deploy()


def test_rollback_leaves_a_service_another_change_owns(cloud_run):
    run = target(cloud_run)
    run.set_weight(50)
    cloud_run.service["traffic"] = [{"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION",
                                     "revision": "scorer-00003-ccc", "percent": 100}]
    writes = len(cloud_run.writes())
    run.rollback()
    assert "later change owns it" in run.left_alone
    assert len(cloud_run.writes()) == writes


def test_no_token_is_a_401_the_target_reports(cloud_run):
    run = target(cloud_run)
    run.token = ""  # an empty bearer: the API refuses it
    with pytest.raises(CloudRunTargetError, match="roles/run.developer"):
        run.state()


def test_the_factory_builds_and_pins_the_target_of_a_plan(cloud_run):
    from flightdeck.delivery.plan import ResolvedRollout, RolloutPlan
    from flightdeck.delivery.targets.factory import make_target, pin_target

    plan = RolloutPlan(strategy="canary", model_name="credit", target="cloud_run", steps=[10, 50],
                       metrics_source="prometheus", prometheus_url="http://127.0.0.1:9",
                       target_options={"project": "demo", "location": "europe-west1", "service": "scorer",
                                       "api_base": cloud_run.url})
    rollout = ResolvedRollout(plan=plan, baseline_version="1", candidate_version="2")
    pinned = pin_target(rollout, make_target(rollout, gcp_token="test-token"))
    assert (pinned.target_state["baseline_revision"], pinned.target_state["candidate_revision"]) == (
        "scorer-00001-aaa", "scorer-00002-bbb")
    again = make_target(ResolvedRollout.from_dict(pinned.to_dict()), gcp_token="test-token")
    again.poll_seconds = 0.01
    assert again.set_weight(10).candidate_percent == 10
