"""Shared helpers of the guide's tests: the decision tree and a way to run `flightdeck advise`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="session")
def decision():
    from flightdeck.guide.decision_tree import load

    return load()


@pytest.fixture
def run_advise(capsys):
    """Run `flightdeck advise ARGS` through flightdeck.cli.main: (exit status, stdout, stderr)."""
    from flightdeck.cli import main

    def run(*args: str, as_json: bool = True):
        argv = ["advise", *args, "--no-input"] + (["--json"] if as_json else [])
        code = main(argv)
        out = capsys.readouterr()
        parsed = json.loads(out.out) if as_json and code == 0 else out.out
        return code, parsed, out.err

    return run
