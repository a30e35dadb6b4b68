"""The generated diagrams, matrix and chart: the committed files are exactly what the generator
writes from the YAML and the committed benchmark output, and the numbers come from that output."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from flightdeck.guide import render

REPO = Path(__file__).resolve().parents[3]


def test_committed_generated_files_equal_the_generator_output():
    stale = render.stale(REPO)
    assert stale == [], (f"{[str(p) for p in stale]} differ from the generator's output: run "
                         "`python -m flightdeck.guide.render` and commit the result")


def test_check_mode_names_a_stale_file(tmp_path, capsys):
    for path in render.render_all(REPO):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(REPO / render.DATA, tmp_path / render.DATA, dirs_exist_ok=True)
    assert render.main(["--root", str(tmp_path)]) == 0
    assert render.main(["--root", str(tmp_path), "--check"]) == 0
    (tmp_path / render.GENERATED / "comparison-matrix.md").write_text("edited by hand\n")
    assert render.main(["--root", str(tmp_path), "--check"]) == 1
    assert "stale: docs/generated/comparison-matrix.md" in capsys.readouterr().err


def test_each_diagram_has_every_question_leaf_and_branch(decision):
    for name in ("serving", "release"):
        text = render.mermaid(decision, name)
        tree = decision.tree(name)
        body = text.split("```mermaid\n", 1)[1].split("```", 1)[0]
        for key in tree.nodes:
            assert re.search(rf"^  n_{key}\{{", body, re.M), key
        for key in tree.leaves:
            assert re.search(rf"^  l_{key}\[", body, re.M), key
        edges = re.findall(r"^  n_(\w+) -->\|", body, re.M)
        assert len(edges) == sum(len(n.branches) + 1 for n in tree.nodes.values())


def _result(name: str, result: dict) -> dict:
    return {"benchmark": name, "command": f".venv/bin/python benchmarks/{name}.py --fast", "date": "2030-01-02T03:04:05+00:00",
            "cores": 64, "result": result}


def test_numeric_cells_come_from_the_benchmark_output_and_name_its_command(decision, tmp_path):
    data = tmp_path / render.DATA
    data.mkdir(parents=True)
    (data / "cold_start.json").write_text(json.dumps(_result("cold_start", {
        "packaged": {"cold_start_s": 0.4321, "peak_mb": 77.0}, "pyfunc": {"cold_start_s": 9.876}})))
    (data / "serving.json").write_text(json.dumps(_result("serving", {
        "results": {"flightdeck": {"wrk": {"rps": 12345.0, "latency": {"50": 0.0042, "99": 0.0173}}}},
        "route_change": {"changes": [{"t": 10.0, "version": 2}, {"t": 20.0, "version": 3}],
                         "progression": [{"version": 1, "first": 0.0, "last": 10.4},
                                         {"version": 2, "first": 10.2, "last": 20.9},
                                         {"version": 3, "first": 20.3, "last": 30.0}]}})))
    matrix = render.comparison_matrix(decision, render.load_results(tmp_path))
    assert "cold start 432.1 ms" in matrix and "peak 77 MB" in matrix
    assert "12,345 requests/s" in matrix and "p50 4.2 ms, p99 17.3 ms" in matrix
    assert "within 900.0 ms" in matrix  # the last answer from version 2 came 0.9 s after version 3's PUT
    for name in ("cold_start", "serving"):
        assert f"`.venv/bin/python benchmarks/{name}.py --fast`, measured 2030-01-02 on 64 cores" in matrix
    assert "Not measured in this snapshot: `benchmarks/batch_scoring.py`" in matrix
    # Every cited source is listed once, and every cell that cites one links to its result file.
    cited = set(re.findall(r"\[(B\d)\]\(\.\./data/benchmarks/(\w+)\.json\)", matrix))
    listed = set(re.findall(r"\*\*(B\d)\*\* `\.venv/bin/python benchmarks/(\w+)\.py", matrix))
    assert cited == listed == {("B1", "serving"), ("B2", "cold_start")}


def test_without_benchmark_output_the_cells_say_so(decision, tmp_path):
    matrix = render.comparison_matrix(decision, render.load_results(tmp_path))
    assert "requests/s" not in matrix and "no benchmark results committed yet" in matrix
    for info in decision.patterns.values():
        assert f"**{info.title}**" in matrix and info.rollback.split(";")[0] in matrix


def test_route_switch_ignores_a_failed_or_empty_run():
    assert render.route_switch_seconds(None) is None
    assert render.route_switch_seconds({"failed": "gateway did not start"}) is None
    assert render.route_switch_seconds({"changes": [], "progression": []}) is None


def test_the_chart_is_deterministic_svg_with_every_pattern(decision):
    first, second = render.risk_chart(decision), render.risk_chart(decision)
    assert first == second
    assert first.lstrip().startswith("<?xml") and "<svg" in first
    for info in decision.patterns.values():
        assert info.title in first
