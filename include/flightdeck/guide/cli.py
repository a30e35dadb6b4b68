"""`flightdeck advise` and `flightdeck exercises …`.

`register(commands)` adds them to flightdeck's sub-parsers; each module adds its own arguments
and imports its heavy parts lazily.
"""

from __future__ import annotations

import argparse


def register(commands: argparse._SubParsersAction) -> None:
    from flightdeck.guide import advise, exercises

    advise.register(commands)
    exercises.register(commands)
