"""`flightdeck exercises`: check the guide's exercises against the running system (placeholder until built)."""

from __future__ import annotations

import argparse


def register(commands: argparse._SubParsersAction) -> None:
    """Adds no command yet."""
