"""`flightdeck advise`: every leaf of both trees reached through the command, use cases with the
answer written by hand, and bad input named with its flag and the allowed values."""

from __future__ import annotations

import io

import pytest

from flightdeck.guide.advise import advise, parse_value

# ------------------------------------------------------------------------------ every leaf


def _candidates(decision, fact: str) -> list:
    """Values worth trying for a fact: each choice, and both sides of every threshold tested on it."""
    spec = decision.facts[fact]
    if spec.kind == "choice":
        return list(spec.choices)
    if spec.kind == "list":
        return [[], *([c] for c in spec.choices), list(spec.choices)]
    bounds = set()
    for tree in (decision.serving, decision.release):
        for node in tree.nodes.values():
            if node.fact == fact:
                bounds |= {b.lt for b in node.branches if b.lt is not None}
                bounds |= {b.ge for b in node.branches if b.ge is not None}
    values = sorted({0.0, 1e9, *bounds, *(b / 2 for b in bounds)})
    return ([None] if spec.nullable else []) + values


def _paths(decision, tree_name: str, facts: dict):
    """Every (leaf, facts) the tree can reach from `facts`, assigning each fact a node asks first."""
    tree = decision.tree(tree_name)

    def go(key: str, assigned: dict):
        if key in tree.leaves:
            yield key, assigned
            return
        node = tree.nodes[key]
        options = [assigned[node.fact]] if node.fact in assigned else _candidates(decision, node.fact)
        for value in options:
            chosen = next((b.then for b in node.branches if b.holds(value)), node.otherwise)
            yield from go(chosen, {**assigned, node.fact: value})

    yield from go(tree.root, dict(facts))


def _witnesses(decision) -> dict[tuple[str, str], dict]:
    """One set of facts per leaf of each tree (the first found), through both trees in turn."""
    found: dict[tuple[str, str], dict] = {}
    for serving_leaf, facts in _paths(decision, "serving", {}):
        pattern = decision.serving.leaves[serving_leaf].pattern
        for release_leaf, both in _paths(decision, "release", {**facts, "pattern": pattern}):
            both = {k: v for k, v in both.items() if k != "pattern"}
            found.setdefault(("serving", serving_leaf), both)  # the command needs both trees' facts
            found.setdefault(("release", release_leaf), both)
    return found


def _flags(facts: dict) -> list[str]:
    out = []
    for name, value in facts.items():
        if value is None:
            text = "none"
        elif isinstance(value, list):
            text = ",".join(value) or "none"
        else:
            text = str(value)
        out += ["--" + name.replace("_", "-"), text]
    return out


def test_every_leaf_of_both_trees_is_reached_through_the_command(decision, run_advise):
    witnesses = _witnesses(decision)
    expected = {("serving", k) for k in decision.serving.leaves} | {("release", k) for k in decision.release.leaves}
    assert set(witnesses) == expected, f"unreachable leaves: {sorted(expected - set(witnesses))}"
    for (tree, leaf_key), facts in sorted(witnesses.items()):
        code, result, err = run_advise(*_flags(facts))
        assert code == 0, (tree, leaf_key, facts, err)
        leaf = decision.tree(tree).leaves[leaf_key]
        assert result[tree]["leaf"] == leaf_key, (tree, leaf_key, facts, result[tree]["path"])
        assert result[tree]["recommendation"] == leaf.recommendation
        assert result[tree]["reasons"] == list(leaf.reasons)
        assert result[tree]["next_step"]["command"] == leaf.next_step.shell()
        # Only the facts on the two paths were given, and --no-input asked for nothing else.
        assert set(result["facts_used"]) <= set(facts)
    print(f"walked {len(witnesses)} leaves")


# ------------------------------------------------------------------------------ use cases, answers by hand

USE_CASES = [
    ("nightly credit scoring of yesterday's applications",
     ["--connectivity", "always", "--latency-ms", "none", "--freshness", "day", "--batch-rows", "300000"],
     "batch", "blue_green_batch"),
    ("a field-inspection app used where there is no signal",
     ["--connectivity", "intermittent"], "edge_offline", "canary_edge"),
    ("a fraud check at checkout on Kubernetes, labels never come back",
     ["--connectivity", "always", "--latency-ms", "80", "--batch-rows", "1", "--request-rate", "500",
      "--risk-tolerance", "medium", "--label-delay", "never", "--infrastructure", "kubernetes,containers"],
     "realtime", "canary_kubernetes"),
    ("an internal tool called a few times an hour, on AWS",
     ["--connectivity", "always", "--latency-ms", "2000", "--batch-rows", "1", "--request-rate", "0.01",
      "--infrastructure", "aws_lambda"], "serverless", "canary_lambda"),
    ("recommendations whose clicks come back within minutes, little traffic",
     ["--connectivity", "always", "--latency-ms", "100", "--batch-rows", "10", "--request-rate", "50",
      "--risk-tolerance", "high", "--label-delay", "minutes", "--experiment-units-per-day", "300"],
     "realtime", "bandit"),
    ("credit decisions online, defaults known after weeks, careful",
     ["--connectivity", "always", "--latency-ms", "100", "--batch-rows", "1", "--request-rate", "40",
      "--risk-tolerance", "low", "--label-delay", "weeks"], "realtime", "shadow"),
    ("sensor events that must raise alarms within seconds",
     ["--connectivity", "always", "--latency-ms", "none", "--freshness", "seconds"], "streaming", "shadow_stream"),
]


@pytest.mark.parametrize(("case", "flags", "serving", "release"), USE_CASES, ids=[c[0] for c in USE_CASES])
def test_use_cases_get_the_answer_written_by_hand(run_advise, case, flags, serving, release):
    code, result, err = run_advise(*flags)
    assert code == 0, err
    assert (result["serving"]["leaf"], result["release"]["leaf"]) == (serving, release)


def test_notes_add_fallback_and_multi_model_advice(run_advise):
    base = ["--connectivity", "always", "--latency-ms", "50", "--batch-rows", "1", "--request-rate", "100",
            "--label-delay", "days", "--experiment-units-per-day", "5000"]
    _, plain, _ = run_advise(*base, "--risk-tolerance", "medium")
    _, careful, _ = run_advise(*base, "--risk-tolerance", "low", "--models", "3")
    assert plain["serving"]["notes"] == []
    assert any("fallback" in n for n in careful["serving"]["notes"])
    assert any("ensemble" in n for n in careful["serving"]["notes"])


def test_text_output_names_both_answers_and_the_next_steps(run_advise):
    code, out, _ = run_advise("--connectivity", "offline", as_json=False)
    assert code == 0
    assert "Serving pattern: Edge" in out and "Release strategy: Canary by device cohort" in out
    assert "next step: airflow dags trigger edge_export --conf" in out


def test_facts_from_a_file_and_flags_override_it(tmp_path, run_advise):
    facts = tmp_path / "use-case.yaml"
    facts.write_text("connectivity: always\nlatency-ms: none\nfreshness: hours\nbatch_rows: 100000000\n")
    code, result, _ = run_advise("--from", str(facts))
    assert code == 0 and result["serving"]["leaf"] == "batch_distributed"
    assert result["facts"]["batch_rows"] == 1e8
    code, result, _ = run_advise("--from", str(facts), "--batch-rows", "5000")
    assert code == 0 and result["serving"]["leaf"] == "batch"


def test_questions_are_asked_for_just_the_facts_the_path_needs(decision):
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    answers = Terminal("always\nsoon\nnone\nhours\n250000\n")  # "soon" is refused and asked again
    asked = io.StringIO()
    facts = {"risk_tolerance": "low"}
    result = advise(decision, facts, ask_in=answers, ask_out=asked)
    assert result["serving"]["leaf"] == "batch" and result["release"]["leaf"] == "blue_green_batch"
    transcript = asked.getvalue()
    assert transcript.count("?") == 5  # connectivity, latency (twice), freshness, batch rows
    assert "'soon' is not a number" in transcript
    assert "label" not in transcript.lower()  # the batch branch never needs the label delay


def test_a_serving_note_sees_facts_asked_for_the_release_tree(decision):
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    # The gateway's fallback note depends on the risk tolerance, which only the release tree asks.
    answers = Terminal("always\n40\n1\n200\nlow\ndays\n")
    result = advise(decision, {}, ask_in=answers, ask_out=io.StringIO())
    assert (result["serving"]["leaf"], result["release"]["leaf"]) == ("realtime", "blue_green")
    assert any("fallback" in note for note in result["serving"]["notes"])


# ------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize(("flags", "names"), [
    (["--freshness", "weekly"], ["--freshness", "request, seconds, minutes, hours, day"]),
    (["--connectivity", "sometimes"], ["--connectivity", "always, intermittent, offline"]),
    (["--risk-tolerance", "none"], ["--risk-tolerance", "low, medium, high"]),
    (["--latency-ms", "fast"], ["--latency-ms", "a number ≥ 0 or none"]),
    (["--request-rate", "-3"], ["--request-rate", "out of range"]),
    (["--request-rate", "nan"], ["--request-rate", "out of range"]),
    (["--request-rate", "none"], ["--request-rate", "a value is needed"]),
    (["--infrastructure", "kubernetes,k8s"], ["--infrastructure", "k8s", "containers, kubernetes, aws_lambda"]),
])
def test_a_bad_value_names_the_flag_and_the_allowed_values(run_advise, flags, names):
    code, _, err = run_advise(*flags)
    assert code == 2
    for name in names:
        assert name in err
    assert err.startswith("error: ")


def test_a_missing_fact_without_a_terminal_names_the_flag_to_pass(run_advise):
    code, _, err = run_advise("--connectivity", "always", "--latency-ms", "30")
    assert code == 2
    assert "--batch-rows" in err and "needed to decide which serving pattern" in err


@pytest.mark.parametrize(("content", "message"), [
    ("latency: 50\n", "unknown fact 'latency'"),
    ("- always\n", "not a mapping of facts"),
    ("connectivity: [always\n", "cannot read"),
    ("freshness: weekly\n", "freshness: 'weekly' is not allowed"),
])
def test_a_bad_facts_file_is_named(tmp_path, run_advise, content, message):
    path = tmp_path / "facts.yaml"
    path.write_text(content)
    code, _, err = run_advise("--from", str(path))
    assert code == 2
    assert "--from" in err and message in err


def test_a_missing_facts_file_is_named(tmp_path, run_advise):
    code, _, err = run_advise("--from", str(tmp_path / "nope.yaml"))
    assert code == 2 and "--from" in err and "nope.yaml" in err


def test_every_fact_has_a_flag_and_every_flag_a_fact(decision):
    from flightdeck.cli import build_parser

    parsed = vars(build_parser().parse_args(["advise"]))
    flags = set(parsed) - {"command", "func", "from_file", "json", "no_input"}
    assert flags == set(decision.facts)


def test_values_are_normalised(decision):
    facts = decision.facts
    assert parse_value("infrastructure", facts["infrastructure"], "Kubernetes, aws_lambda,kubernetes") == [
        "kubernetes", "aws_lambda"]
    assert parse_value("infrastructure", facts["infrastructure"], "none") == []
    assert parse_value("latency_ms", facts["latency_ms"], " None ") is None
    assert parse_value("freshness", facts["freshness"], "DAY") == "day"
    assert parse_value("models", facts["models"], 2) == 2.0


def test_each_flag_help_lists_the_choices_of_its_fact(decision):
    from flightdeck.cli import build_parser

    commands = next(a for a in build_parser()._actions if getattr(a, "choices", None) and "advise" in a.choices)
    helps = {a.dest: a.help for a in commands.choices["advise"]._actions}
    for name, spec in decision.facts.items():
        for choice in spec.choices:
            assert choice in helps[name], (name, choice)
