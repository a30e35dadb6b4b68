"""The one way tests wait for something: poll a predicate until it holds."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def eventually(predicate: Callable[[], T], timeout: float, interval: float = 0.1, what: str = "",
               detail: Callable[[], str] | None = None) -> T:
    """Call `predicate` every `interval` seconds until it returns something truthy, and return
    that; an AssertionError (with `what` and `detail()`) once `timeout` seconds have passed.
    An exception in the predicate propagates at once: use it to fail early (a process died)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            message = f"timed out after {timeout:g} s waiting for {what or getattr(predicate, '__name__', 'a condition')}"
            raise AssertionError(f"{message}\n{detail()}" if detail else message)
        time.sleep(interval)
