"""Walking parsed documents (YAML, HCL as python-hcl2 returns it, JSON): the static tests look
for strings anywhere in a nested tree of dicts and lists."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


def walk_strings(node: Any) -> Iterator[str]:
    """Every string in a tree of dicts and lists (dict values only, not keys), depth first."""
    if isinstance(node, dict):
        for value in node.values():
            yield from walk_strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from walk_strings(item)
    elif isinstance(node, str):
        yield node
