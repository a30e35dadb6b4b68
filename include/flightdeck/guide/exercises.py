"""`flightdeck exercises list` and `flightdeck exercises check N`: the guide's exercises, checked
against the running system (flightdeck.guide.checks). `check` prints each criterion as met or
missing and exits 0 only when every one is met, 1 otherwise."""

from __future__ import annotations

import argparse
import sys
import textwrap


def _list(args: argparse.Namespace) -> None:
    from flightdeck.guide.checks import EXERCISES

    for exercise in EXERCISES.values():
        print(f"{exercise.number:2d}  {exercise.title:<58} {exercise.pattern:<12} {exercise.page}")
    print("\nCheck one with `flightdeck exercises check N`; answers go in $FLIGHTDECK_HOME/exercises/NN.yaml.")


def run_check(number: int, out=None, airflow_url: str | None = None) -> bool:
    """Check exercise `number`, print the criteria to `out`; True when every one is met.
    With `airflow_url`, exercises run through Airflow (3, 11) also check its REST API."""
    from flightdeck.errors import ConfigError
    from flightdeck.guide.checks import EXERCISES, Context

    out = out or sys.stdout
    exercise = EXERCISES.get(number)
    if exercise is None:
        raise ConfigError("N", f"there is no exercise {number}", f"give a number from 1 to {len(EXERCISES)} "
                          "(`flightdeck exercises list`)")
    criteria = exercise.check(Context(airflow_url=airflow_url))
    print(f"Exercise {exercise.number}: {exercise.title} ({exercise.pattern})", file=out)
    for criterion in criteria:
        mark = "met    " if criterion.met else "MISSING"
        print(f"  [{mark}] {criterion.text}", file=out)
        if criterion.found:
            print(textwrap.indent(textwrap.fill(criterion.found, 96), " " * 12), file=out)
    met = sum(c.met for c in criteria)
    done = bool(criteria) and met == len(criteria)
    print(f"{met} of {len(criteria)} criteria met." + (" Well done." if done else
                                                      f" See {exercise.page} for hints."), file=out)
    return done


def _check(args: argparse.Namespace) -> None:
    if not run_check(args.number, airflow_url=args.airflow_url):
        sys.exit(1)


def register(commands: argparse._SubParsersAction) -> None:
    """Add `exercises list` and `exercises check N` to the `flightdeck` sub-commands."""
    exercises = commands.add_parser("exercises", help="the guide's exercises: list them, check your work")
    sub = exercises.add_subparsers(dest="exercises_command", required=True)
    listing = sub.add_parser("list", help="the twenty exercises, their pattern and page")
    listing.set_defaults(func=_list)
    check = sub.add_parser("check", help="check exercise N against the running system (exit 0 when done)")
    check.add_argument("number", type=int, metavar="N")
    check.add_argument("--airflow-url", help="also check the runs in Airflow's REST API (exercises 3 and 11), "
                                              "e.g. http://localhost:8080 under `make airflow`")
    check.set_defaults(func=_check)
