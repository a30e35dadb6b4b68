"""`--json PATH` of the benchmarks: one file per run with the figures, the command that reproduces
them, the UTC date and the machine's size (the guide's comparison matrix is generated from them)."""

from __future__ import annotations

import datetime
import json
import os
import platform
import shlex
import sys
from pathlib import Path


def write_json(path: str, name: str, argv: list[str] | None, result: dict) -> None:
    """Write `result` of benchmark `name` (benchmarks/<name>.py run with `argv`, default this
    process's arguments) to `path`."""
    shown = sys.argv[1:] if argv is None else list(argv)
    document = {"benchmark": name,
                "command": shlex.join([".venv/bin/python", f"benchmarks/{name}.py", *shown]),
                "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                "cores": os.cpu_count(), "python": platform.python_version(), "result": result}
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(document, indent=2, default=_plain) + "\n")
    print(f"wrote {target}")


def _plain(value: object) -> object:
    """numpy scalars as their Python value; anything else JSON cannot hold as its text."""
    return value.item() if hasattr(value, "item") else str(value)
