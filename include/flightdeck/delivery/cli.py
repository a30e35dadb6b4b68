"""`flightdeck release-lock show|free`: look at a model's release lock, or free the lock of a run
that is gone (flightdeck/delivery/lock.py). `register(commands)` adds them to flightdeck's
sub-parsers; handlers import lazily."""

from __future__ import annotations

import argparse
import time

from flightdeck.errors import FlightdeckError


class LockNotHeldError(FlightdeckError):
    """`release-lock free` named a run that does not hold the model's lock: nothing was freed."""


def _show(args: argparse.Namespace) -> None:
    from flightdeck.delivery.lock import ReleaseLocks

    held = ReleaseLocks.from_settings().holder(args.model_name)
    if held is None:
        print(f"{args.model_name}: free")
        return
    until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(held.expires_at))
    print(f"{args.model_name}: {'lapsed' if held.lapsed() else 'held'} by run {held.run_id!r} until {until}")


def _free(args: argparse.Namespace) -> None:
    from flightdeck.delivery.lock import ReleaseLocks

    locks = ReleaseLocks.from_settings()
    if locks.release(args.model_name, args.run_id):
        print(f"{args.model_name}: freed (was held by run {args.run_id!r})")
        return
    held = locks.holder(args.model_name)
    raise LockNotHeldError(
        f"{args.model_name}: not held by run {args.run_id!r} (holder: {held.run_id if held else 'none'}); "
        f"nothing freed. Fix: name the holder that `flightdeck release-lock show {args.model_name}` prints.")


def register(commands) -> None:
    """Add the release-lock commands to an argparse sub-parsers object."""
    lock = commands.add_parser("release-lock", help="show a model's release lock, or free a gone run's lock")
    actions = lock.add_subparsers(dest="lock_action", required=True)
    show = actions.add_parser("show", help="who holds the model's release lock, and until when")
    show.add_argument("model_name")
    show.set_defaults(func=_show)
    free = actions.add_parser("free", help="free the lock if RUN_ID holds it (a run that died holding it)")
    free.add_argument("model_name")
    free.add_argument("run_id")
    free.set_defaults(func=_free)
