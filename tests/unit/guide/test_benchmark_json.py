"""`--json PATH` of the benchmarks: the file holds the result the run returned, the command that
reproduces it and the UTC date, which the comparison matrix cites."""

from __future__ import annotations

import importlib.util
import json
import sys
from datetime import datetime
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[3] / "benchmarks"


def _load(name: str, monkeypatch):
    spec = importlib.util.spec_from_file_location(f"{name}_benchmark_json", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(("name", "args"), [
    ("gates", ["--runs", "2", "--seed", "3", "--bake-seconds", "30", "--max-seconds", "60", "--flagger-interval", "30"]),
    ("experiments", ["--experiments", "20", "--days", "3", "--units-per-day", "50", "--power-sims", "20"]),
])
def test_json_holds_the_result_the_command_and_the_date(name, args, tmp_path, monkeypatch, capsys):
    target = tmp_path / "out" / f"{name}.json"
    report = _load(name, monkeypatch).main([*args, "--json", str(target)])
    document = json.loads(target.read_text())
    assert document["benchmark"] == name
    assert document["command"] == " ".join([".venv/bin/python", f"benchmarks/{name}.py", *args, "--json", str(target)])
    assert datetime.fromisoformat(document["date"]).utcoffset().total_seconds() == 0
    assert document["result"] == json.loads(json.dumps(report, default=lambda v: v.item()))
    assert f"wrote {target}" in capsys.readouterr().out


def test_without_json_nothing_is_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _load("gates", monkeypatch).main(["--runs", "2", "--bake-seconds", "30", "--max-seconds", "60", "--flagger-interval", "30"])
    assert list(tmp_path.iterdir()) == []
