"""`--json PATH` of the benchmarks: the file holds the result the run returned, the command that
reproduces it and the UTC date, which the comparison matrix cites."""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from tests.support.benchmarks import load_benchmark


@pytest.mark.parametrize(("name", "args"), [
    ("gates", ["--runs", "2", "--seed", "3", "--bake-seconds", "30", "--max-seconds", "60", "--flagger-interval", "30"]),
    ("experiments", ["--experiments", "20", "--days", "3", "--units-per-day", "50", "--power-sims", "20"]),
])
def test_json_holds_the_result_the_command_and_the_date(name, args, tmp_path, capsys):
    target = tmp_path / "out" / f"{name}.json"
    with load_benchmark(name) as bench:
        report = bench.main([*args, "--json", str(target)])
    document = json.loads(target.read_text())
    assert document["benchmark"] == name
    assert document["command"] == " ".join([".venv/bin/python", f"benchmarks/{name}.py", *args, "--json", str(target)])
    assert datetime.fromisoformat(document["date"]).utcoffset().total_seconds() == 0
    assert document["result"] == json.loads(json.dumps(report, default=lambda v: v.item()))
    assert f"wrote {target}" in capsys.readouterr().out


def test_without_json_nothing_is_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with load_benchmark("gates") as bench:
        bench.main(["--runs", "2", "--bake-seconds", "30", "--max-seconds", "60", "--flagger-interval", "30"])
    assert list(tmp_path.iterdir()) == []
