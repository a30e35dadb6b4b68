"""`flightdeck advise`: recommend a serving pattern and a release strategy (placeholder until built)."""

from __future__ import annotations

import argparse


def register(commands: argparse._SubParsersAction) -> None:
    """Adds no command yet."""
