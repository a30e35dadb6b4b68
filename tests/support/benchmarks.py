"""A benchmark script (benchmarks/<name>.py) loaded as a module, for the tests of its pure parts.

The scripts are not a package: each is loaded from its path. While loaded it is registered in
`sys.modules` (as `<name>_benchmark`), because dataclasses look their module up there; the entry
that was there before is put back afterwards.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@contextmanager
def load_benchmark(name: str) -> Iterator[ModuleType]:
    """benchmarks/<name>.py, executed, for the duration of the `with` block."""
    path = BENCHMARKS / f"{name}.py"
    if not path.is_file():
        raise FileNotFoundError(f"no benchmark {path}. Fix: name a script of benchmarks/ without its .py")
    spec = importlib.util.spec_from_file_location(f"{name}_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    missing = object()
    before = sys.modules.get(spec.name, missing)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        if before is missing:
            sys.modules.pop(spec.name, None)
        else:
            sys.modules[spec.name] = before
