"""The locks are complete and verifiable: every pinned distribution carries the sha256 of its
files, so the installs run in hash-checking mode, and every top-level
requirement of the `.in` files is pinned in its lock."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
LOCKS = {"requirements.txt": "requirements.in", "requirements-checkov.txt": "requirements-checkov.in",
         "requirements-flink.txt": "requirements-flink.in", "requirements-uv.txt": "requirements-uv.in"}


def entries(lock: Path) -> dict[str, list[str]]:
    """Each pinned name with the hashes that follow it (continuation lines)."""
    found: dict[str, list[str]] = {}
    current = None
    for line in lock.read_text().splitlines():
        pin = re.match(r"^([A-Za-z0-9_.\-\[\],]+)==(\S+)", line)
        if pin:
            current = canonicalize_name(pin.group(1).split("[")[0])
            found[current] = []
        elif current and (digest := re.search(r"--hash=sha256:([0-9a-f]{64})", line)):
            found[current].append(digest.group(1))
        elif not line.startswith(" "):
            current = None
    return found


@pytest.mark.parametrize("lock", LOCKS)
def test_every_pin_has_hashes(lock):
    pinned = entries(ROOT / lock)
    assert pinned, f"{lock} pins nothing"
    unhashed = sorted(name for name, hashes in pinned.items() if not hashes)
    assert not unhashed, f"{lock}: pins without --hash (regenerate with `make lock`): {unhashed}"


@pytest.mark.parametrize(("lock", "source"), LOCKS.items())
def test_every_top_level_requirement_is_pinned(lock, source):
    pinned = entries(ROOT / lock)
    wanted = [Requirement(line.split("#")[0].strip()) for line in (ROOT / source).read_text().splitlines()
              if line.split("#")[0].strip()]
    missing = sorted(r.name for r in wanted if canonicalize_name(r.name) not in pinned)
    assert not missing, f"{source} names {missing}, absent from {lock}: run `make lock`"


def test_the_parser_sees_a_missing_hash(tmp_path):
    lock = tmp_path / "lock.txt"
    lock.write_text("alpha==1.0 \\\n    --hash=sha256:" + "a" * 64 + "\n    # via x\nbeta==2.0\n    # via alpha\n")
    assert entries(lock) == {"alpha": ["a" * 64], "beta": []}


def test_the_bootstrapped_uv_is_the_one_the_main_lock_pins():
    """pip installs uv from requirements-uv.txt, then uv installs requirements.txt (uv included):
    one version, not a second one replacing the first mid-install."""
    assert entries(ROOT / "requirements-uv.txt")["uv"] == entries(ROOT / "requirements.txt")["uv"]
