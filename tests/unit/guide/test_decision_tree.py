"""The decision tree's source: its checks refuse a broken tree, and every leaf's next step is real
in this repository (the DAG exists and takes the conf, the command parses, the files exist), and
the thresholds agree with the code they cite."""

from __future__ import annotations

import copy
import shlex
from pathlib import Path

import pytest
import yaml

from flightdeck.errors import ConfigError
from flightdeck.guide.decision_tree import load, parse

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def document():
    return yaml.safe_load((REPO / "include/flightdeck/guide/decision_tree.yaml").read_text())


def _leaves(decision):
    for name in ("serving", "release"):
        for key, leaf in decision.tree(name).leaves.items():
            yield name, key, leaf


def test_the_packaged_tree_loads_with_both_trees_and_every_pattern(decision):
    assert len(decision.serving.leaves) == 7 and len(decision.release.leaves) == 10
    assert {leaf.pattern for leaf in decision.serving.leaves.values()} == {
        "batch", "streaming", "realtime", "serverless", "edge"}
    assert {leaf.strategy for leaf in decision.release.leaves.values()} == {
        "shadow", "blue_green", "canary", "ab_test", "bandit"}


@pytest.mark.parametrize(("edit", "message"), [
    (lambda d: d["serving"]["nodes"]["rate"].update(otherwise="nowhere"), "neither a node nor a leaf"),
    (lambda d: d["serving"]["nodes"]["rate"].update(fact="mood"), "unknown fact 'mood'"),
    (lambda d: d["serving"]["nodes"]["freshness"]["branches"][0].update({"in": ["weekly"]}),
     "['weekly'] are not choices of freshness"),
    (lambda d: d["serving"]["nodes"]["freshness"]["branches"][0].update(lt=3), "exactly one of"),
    (lambda d: d["serving"]["nodes"]["rate"].update(otherwise="connectivity"), "a cycle through"),
    (lambda d: d["release"]["nodes"]["platform"].update(otherwise="canary_kubernetes"), "['canary'] are never reached"),
    (lambda d: d["serving"]["leaves"]["batch"].update(pattern="nightly"), "pattern 'nightly' is not under patterns"),
    (lambda d: d["serving"]["leaves"]["batch"]["next_step"].pop("conf"), "give its Params as conf"),
    (lambda d: d["serving"]["nodes"]["rate"]["branches"][0].update({"is_none": True, "lt": None}),
     "request_rate cannot be none"),
    (lambda d: d["patterns"]["batch"].update(risk=7), "less than or equal to 5"),
])
def test_a_broken_tree_is_refused_naming_the_problem(document, edit, message):
    broken = copy.deepcopy(document)
    edit(broken)
    with pytest.raises(ConfigError) as caught:
        parse(broken)
    assert message in str(caught.value)
    assert "decision_tree.yaml" in str(caught.value)


def _params_model(dag: str):
    from flightdeck.batch.params import BatchScoreParams
    from flightdeck.edge.params import EdgeExportParams
    from flightdeck.experiments.params import ExperimentAnalysisParams, ShadowEvaluationParams
    from flightdeck.serverless.params import ServerlessPackageParams
    from flightdeck.streaming.params import StreamReplayParams

    return {"batch_score": BatchScoreParams, "edge_export": EdgeExportParams,
            "experiment_analysis": ExperimentAnalysisParams, "shadow_evaluation": ShadowEvaluationParams,
            "serverless_package": ServerlessPackageParams, "stream_replay": StreamReplayParams}[dag]


def _production_policy(additions: dict | None):
    """The repository's own release policy file (not the tests' permissive one) plus a leaf's additions."""
    from flightdeck.delivery.policy import DEFAULT_POLICY_FILE, ReleasePolicy, load_policy

    data = load_policy(DEFAULT_POLICY_FILE).model_dump()
    for key, value in (additions or {}).items():
        if isinstance(value, dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return ReleasePolicy.model_validate({**data, "source": DEFAULT_POLICY_FILE})


@pytest.mark.parametrize("where", [f"{n}.{k}" for n, k, leaf in _leaves(load()) if leaf.next_step.dag])
def test_each_dag_next_step_is_accepted_by_that_dag(decision, where):
    tree, key = where.split(".")
    step = decision.tree(tree).leaves[key].next_step
    assert (REPO / "dags" / f"{step.dag}.py").exists()
    assert step.shell().startswith(f"airflow dags trigger {step.dag} --conf '")
    if step.dag in ("promote_canary", "promote_blue_green"):
        from flightdeck.config import get_settings
        from flightdeck.delivery.plan import RolloutPlan

        strategy = "canary" if step.dag == "promote_canary" else "blue_green"
        values = {"strategy": strategy, "model_name": get_settings().model_name, **step.conf}
        plan = RolloutPlan.parse(values, policy=_production_policy(step.policy))
        assert plan.require_approval  # nothing here turns the human gate off
    else:
        _params_model(step.dag).parse(step.conf)
    if step.dag == "experiment_analysis":
        assert (REPO / "include/config/experiments" / step.conf["definition"]).exists()
    if step.dag == "shadow_evaluation":
        from flightdeck.experiments.shadow import ShadowCriteria

        ShadowCriteria(**step.conf["criteria"])
    if step.env:
        from flightdeck.config import Settings

        for name in step.env:
            assert name.startswith("FLIGHTDECK_") and name[len("FLIGHTDECK_"):].lower() in Settings.model_fields


def test_the_kubernetes_canary_needs_the_policy_entries_it_names(decision):
    from flightdeck.delivery.plan import RolloutPlan
    from flightdeck.delivery.policy import PolicyFloorError

    step = decision.release.leaves["canary_kubernetes"].next_step
    with pytest.raises(PolicyFloorError):
        RolloutPlan.parse({"strategy": "canary", "model_name": "m", **step.conf}, policy=_production_policy(None))


def test_each_command_next_step_parses_and_names_files_that_exist(decision):
    from flightdeck.cli import build_parser

    commands = [leaf.next_step.command for _, _, leaf in _leaves(decision) if leaf.next_step.command]
    assert commands
    for command in commands:
        for part in command.split("&&"):
            tokens = shlex.split(part)
            assert tokens[0] == "flightdeck", command
            build_parser().parse_args(tokens[1:])  # SystemExit on an unknown command or flag
            for token in tokens:
                if "/" in token and not token.startswith("-"):
                    assert (REPO / token).exists(), f"{command}: {token} is not in the repository"


def test_thresholds_agree_with_the_code_they_cite(decision):
    from flightdeck.config import Settings
    from flightdeck.delivery.plan import GateSettings, RolloutPlan
    from flightdeck.experiments import design

    nodes = {**{f"serving.{k}": n for k, n in decision.serving.nodes.items()},
             **{f"release.{k}": n for k, n in decision.release.nodes.items()}}
    # More rows than the gateway takes in one request goes to batch.
    assert nodes["serving.request_size"].branches[0].ge == Settings.model_fields["max_batch_rows"].default + 1
    # A/B: two arms of the sequential sample size (10 % → 11 %) fit in 28 days of the threshold.
    per_arm = design.sample_size_proportions(0.10, 0.01, sequential=True)
    assert f"{per_arm:,}" in decision.release.leaves["ab_test"].reasons[0]
    for key in ("release.fast_labels_traffic", "release.slow_labels_traffic"):
        units = nodes[key].branches[0].ge
        assert 2 * per_arm <= units * 28 < 2 * per_arm * 1.1, (key, units)
    # Canary: at the threshold the first step's share of traffic reaches the gate's minimum in one bake.
    rate = nodes["release.traffic"].branches[0].lt
    first_step, bake = RolloutPlan.model_fields["steps"].default_factory()[0] / 100, \
        RolloutPlan.model_fields["bake_seconds"].default
    assert rate * first_step * bake >= GateSettings().min_requests > (rate / 2) * first_step * bake
