"""A steady load on the gateway: single-row MLflow requests from a background thread.

Used by the release demo and the release tests to keep traffic flowing while a rollout
moves it; it counts answers by HTTP status and by the model version that answered.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

# Made unique per request by at most one unit (see `nudged`).
NUDGED_FEATURE = "annual_income"
DEFAULT_RATE = 200.0


def nudged(row: dict, i: int) -> dict:
    """Request `i`'s copy of a row, made unique by a negligible change of one feature.

    The gateway caches answers by model version and input, and real traffic seldom repeats a
    row exactly; a load that cycles over a few thousand rows would soon be answered from the
    cache, which hides the candidate's latency and injected faults from the gates.
    """
    return {**row, NUDGED_FEATURE: float(row[NUDGED_FEATURE]) + (i % 1_000_000) * 1e-6}



@dataclass
class Load:
    """Single-row requests at a steady rate from a background thread; counts answers by status."""

    base_url: str
    rows: list[dict]
    rate: float = DEFAULT_RATE
    statuses: Counter = field(default_factory=Counter)
    versions: Counter = field(default_factory=Counter)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Load:
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), name="gateway-load", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=30)

    def summary(self) -> str:
        statuses = ", ".join(f"{status}: {n:,}" for status, n in sorted(self.statuses.items(), key=str))
        versions = ", ".join(f"v{v}: {n:,}" for v, n in sorted(self.versions.items()))
        return f"{sum(self.statuses.values()):,} requests ({statuses}); answered by {versions or 'none'}"

    async def _run(self) -> None:
        import aiohttp

        interval = 1 / self.rate
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=32)) as session:
            pending: set[asyncio.Task] = set()
            next_at = time.monotonic()
            i = 0
            while not self._stop.is_set():
                body = {"dataframe_records": [nudged(self.rows[i % len(self.rows)], i)]}
                pending.add(asyncio.create_task(self._one(session, body)))
                pending = {t for t in pending if not t.done()}
                i += 1
                next_at += interval
                await asyncio.sleep(max(next_at - time.monotonic(), 0))
            await asyncio.gather(*pending, return_exceptions=True)

    async def _one(self, session, body: dict) -> None:
        import aiohttp

        try:
            async with session.post(f"{self.base_url}/invocations", json=body,
                                    timeout=aiohttp.ClientTimeout(total=10)) as response:
                self.statuses[response.status] += 1
                if response.status == 200:
                    self.versions[(await response.json())["model_version"]] += 1
        except (aiohttp.ClientError, TimeoutError):
            self.statuses["connection error"] += 1
