"""Feature events from the synthetic generator, for demos, tests and the benchmark."""

from __future__ import annotations

import time
from collections.abc import Iterator

from flightdeck.data.schema import ENTITY_ID, EVENT_TIME, FEATURES
from flightdeck.streaming.events import EVENT_ID, encode_event


def generated_events(n: int, seed: int = 7, day: str = "2026-02-01") -> Iterator[bytes]:
    """`n` encoded events of complete generated rows, event ids `e0…`, in event-time order."""
    from flightdeck.data.generator import generate_partition

    made = 0
    chunk = 0
    while made < n:
        frame = generate_partition(day, rows=min(max(n - made, 100) * 2, 20_000), seed=seed + chunk)
        frame = frame.dropna(subset=list(FEATURES)).sort_values(EVENT_TIME)
        for row in frame[[ENTITY_ID, EVENT_TIME, *FEATURES]].to_dict(orient="records"):
            if made >= n:
                return
            yield encode_event({EVENT_ID: f"e{made}", **row})
            made += 1
        chunk += 1


def produce_generated(redis_url: str | None, stream: str, n: int, seed: int = 7, rate: float = 0.0) -> int:
    """Append `n` generated events to a Redis stream, at `rate` events/s (0: as fast as possible)."""
    from flightdeck.config import get_settings
    from flightdeck.streaming.redis_streams import connect

    client = connect(redis_url or get_settings().stream_redis_url)
    started, sent = time.monotonic(), 0
    pipe = client.pipeline(transaction=False)
    for value in generated_events(n, seed):
        pipe.xadd(stream, {"data": value})
        sent += 1
        if sent % 500 == 0:
            pipe.execute()
            if rate > 0:
                time.sleep(max(started + sent / rate - time.monotonic(), 0.0))
    pipe.execute()
    return sent
