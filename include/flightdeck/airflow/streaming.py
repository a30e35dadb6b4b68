"""Airflow side of the stream path: an event trigger on a Redis stream, and the drift-alert asset.

`RedisStreamTrigger` is a `BaseEventTrigger`, so an Airflow 3 `AssetWatcher` can watch a
Redis stream (the scorer's drift alerts) and the triggerer turns every new entry into an
asset event whose `extra["payload"]` is the entry; DAGs scheduled on the asset run once per
alert. None of the installed providers offers a message-queue trigger for Redis or Kafka
(apache-airflow-providers-common-messaging is not installed), hence this small one.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from airflow.sdk import Asset, AssetWatcher
from airflow.triggers.base import BaseEventTrigger, TriggerEvent

from flightdeck.config import get_settings

log = logging.getLogger(__name__)

# The stream the scorer publishes drift alerts to (`flightdeck stream --alerts`).
ALERT_STREAM = get_settings().stream_alerts
DRIFT_ALERT_ASSET = "flightdeck_stream_drift_alerts"
_LAST_ID = "last_id"


class RedisStreamTrigger(BaseEventTrigger):
    """Fires once per entry appended to `stream` after `last_id` ("$" = entries from now on).

    Runs for as long as the triggerer keeps it (a watcher's trigger is not meant to end).
    Under a watcher, the id of each entry is kept in the asset's state store once the triggerer
    has taken its event, so a restarted triggerer resumes after it instead of skipping what
    arrived meanwhile: at least once (the last event before a crash may fire again), never lost.
    """

    def __init__(self, redis_url: str, stream: str, last_id: str = "$", block_ms: int = 5000) -> None:
        super().__init__()
        self.redis_url, self.stream, self.last_id, self.block_ms = redis_url, stream, last_id, block_ms

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (f"{type(self).__module__}.{type(self).__qualname__}",
                {"redis_url": self.redis_url, "stream": self.stream, "last_id": self.last_id,
                 "block_ms": self.block_ms})

    async def run(self):
        from redis import asyncio as aioredis

        client = aioredis.Redis.from_url(self.redis_url)
        try:
            last = await self._resume_from(client)
            while True:
                answer = await client.xread({self.stream: last}, count=10, block=self.block_ms)
                for entry_id, fields in (answer[0][1] if answer else []):
                    last = entry_id.decode()
                    yield TriggerEvent({"stream": self.stream, "id": last,
                                        "data": {k.decode(): v.decode() for k, v in fields.items()}})
                    await self._remember(last)
                await asyncio.sleep(0)
        finally:
            await client.aclose()

    async def _resume_from(self, client) -> str:
        stored = None
        if self.asset_state_store is not None:
            try:
                stored = await self.asset_state_store.aget(_LAST_ID)
            except Exception:  # the store is an optimisation: without it the trigger starts at last_id
                log.warning("cannot read %s's last id from the asset state store", self.stream, exc_info=True)
        if stored:
            return str(stored)
        if self.last_id != "$":
            return self.last_id
        # Pin "now" once, so an entry appended between two reads is not missed ("$" re-reads now).
        info = await client.xinfo_stream(self.stream) if await client.exists(self.stream) else {}
        last = info.get("last-generated-id", b"0-0")
        return last.decode() if isinstance(last, bytes) else str(last)

    async def _remember(self, entry_id: str) -> None:
        if self.asset_state_store is None:
            return
        try:
            await self.asset_state_store.aset(_LAST_ID, entry_id)
        except Exception:
            log.warning("cannot store %s's last id %s in the asset state store", self.stream, entry_id,
                        exc_info=True)


def drift_alert_asset(redis_url: str, stream: str = ALERT_STREAM) -> Asset:
    """The asset a drift-alert DAG is scheduled on: one asset event per alert the scorer publishes."""
    trigger = RedisStreamTrigger(redis_url, stream)
    return Asset(DRIFT_ALERT_ASSET, watchers=[AssetWatcher(name=f"{DRIFT_ALERT_ASSET}_watcher", trigger=trigger)])


def alerts_from_context(context) -> list[dict]:
    """The trigger payloads of the asset events that started this run (newest last)."""
    events = (context.get("triggering_asset_events") or {})
    payloads = []
    for asset_events in events.values():
        for event in asset_events:
            extra = getattr(event, "extra", None) or {}
            if "payload" in extra:
                payloads.append(extra["payload"])
    return payloads
