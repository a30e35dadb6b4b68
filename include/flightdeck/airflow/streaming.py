"""Airflow side of the stream path: an event trigger on a Redis stream, and the drift-alert asset.

`RedisStreamTrigger` is a `BaseEventTrigger`, so an Airflow 3 `AssetWatcher` can watch a
Redis stream (the scorer's drift alerts) and the triggerer turns every new entry into an
asset event whose `extra["payload"]` is the entry; DAGs scheduled on the asset run once per
alert. None of the installed providers offers a message-queue trigger for Redis or Kafka
(apache-airflow-providers-common-messaging is not installed), hence this small one.

A Kinesis scorer's alert stream is watched with the Amazon provider's own `KinesisTrigger`
(`kinesis_drift_alert_asset`, the schedule when the setting `stream_broker` is kinesis); its
events carry a batch of base64 records, which `alerts_from_context` turns into one alert payload
each, in the Redis trigger's shape; the investigation then reads the scorer's DynamoDB table.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from typing import Any

from airflow.sdk import Asset, AssetWatcher, get_current_context, task
from airflow.triggers.base import BaseEventTrigger, TriggerEvent

from flightdeck.airflow.defaults import fail_fast_on_user_error, registry
from flightdeck.airflow.notify import send_alert
from flightdeck.config import get_settings

log = logging.getLogger(__name__)

# The stream the scorer publishes drift alerts to (`flightdeck stream --alerts`).
ALERT_STREAM = get_settings().stream_alerts
DRIFT_ALERT_ASSET = "flightdeck_stream_drift_alerts"
_LAST_ID = "last_id"
# How much longer than an XREAD's block the watcher waits for its answer before it takes the
# connection for dead (a busy server, a slow network).
READ_MARGIN_S = 10.0


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

    @property
    def client_name(self) -> str:
        """The name of the watcher's Redis connection (CLIENT LIST shows it)."""
        return f"flightdeck-watcher:{self.stream}"

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (f"{type(self).__module__}.{type(self).__qualname__}",
                {"redis_url": self.redis_url, "stream": self.stream, "last_id": self.last_id,
                 "block_ms": self.block_ms})

    async def run(self):
        from redis import asyncio as aioredis

        # redis-py's default read timeout (5 s) is no longer than the default block: every quiet
        # block period would end in "Timeout reading from ..." and the triggerer would restart the
        # watcher. Reads wait for the whole block, plus a margin that still catches a dead server.
        client = aioredis.Redis.from_url(self.redis_url, client_name=self.client_name,
                                         socket_timeout=self.block_ms / 1000 + READ_MARGIN_S)
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


def kinesis_drift_alert_asset(stream: str, aws_conn_id: str | None = "aws_default", region_name: str | None = None,
                              shard_iterator_type: str = "LATEST", waiter_delay: float = 5) -> Asset:
    """The drift-alert asset of a Kinesis scorer (`flightdeck stream --broker kinesis --alerts STREAM`),
    watched by the Amazon provider's KinesisTrigger: one asset event per batch of new alerts."""
    from airflow.providers.amazon.aws.triggers.kinesis import KinesisTrigger

    trigger = KinesisTrigger(stream_name=stream, aws_conn_id=aws_conn_id, region_name=region_name,
                             shard_iterator_type=shard_iterator_type, waiter_delay=waiter_delay)  # type: ignore[arg-type]
    return Asset(DRIFT_ALERT_ASSET, watchers=[AssetWatcher(name=f"{DRIFT_ALERT_ASSET}_watcher", trigger=trigger)])


def kinesis_alert_payloads(payload: dict, stream: str = "kinesis") -> list[dict]:
    """A KinesisTrigger event (`message_batch` of base64 records) as one payload per alert, shaped as the
    Redis trigger's (`{"stream", "id", "data": {"data": <alert JSON>}}`) for `parse_alert`, with the
    record's partition key (which names the scorer's commit that holds the alert)."""
    from flightdeck.streaming.drift import kinesis_alert_payload

    return [kinesis_alert_payload(stream, m["ShardId"], m["SequenceNumber"], base64.b64decode(m["Data"]),
                                  m.get("PartitionKey"))
            for m in payload.get("message_batch") or []]


def alerts_from_context(context) -> list[dict]:
    """The trigger payloads of the asset events that started this run (newest last); a Kinesis
    event's batch counts as one payload per record."""
    events = (context.get("triggering_asset_events") or {})
    payloads = []
    for asset_events in events.values():
        for event in asset_events:
            extra = getattr(event, "extra", None) or {}
            if "payload" in extra:
                payload = extra["payload"]
                if isinstance(payload, dict) and "message_batch" in payload:
                    payloads.extend(kinesis_alert_payloads(payload))
                else:
                    payloads.append(payload)
    return payloads


def drift_alert_schedule() -> list[Asset]:
    """stream_drift_investigation's schedule: the drift-alert asset of the configured stream broker,
    watched on Redis (`stream_redis_url`) or, with `stream_broker` kinesis, on the Kinesis stream
    `stream_alerts` (the aws_default connection)."""
    settings = get_settings()
    if settings.stream_broker == "kinesis":
        from flightdeck.streaming.kinesis import check_stream_name

        check_stream_name("FLIGHTDECK_STREAM_ALERTS", settings.stream_alerts)
        return [kinesis_drift_alert_asset(settings.stream_alerts)]
    return [drift_alert_asset(settings.stream_redis_url, ALERT_STREAM)]


def replay_params() -> dict:
    """stream_replay's Params: the fields of `StreamReplayParams`."""
    from flightdeck.airflow.params import params_from_model
    from flightdeck.streaming.params import StreamReplayParams

    return params_from_model(StreamReplayParams)


def investigation_params() -> dict:
    """stream_drift_investigation's Params: the fields of `DriftInvestigationParams`."""
    from flightdeck.airflow.params import params_from_model
    from flightdeck.streaming.params import DriftInvestigationParams

    return params_from_model(DriftInvestigationParams)


@task
def replay_range(params=None, dag_run=None, run_id=None) -> dict:
    """Score a range of the input stream through the batch path; write one parquet file."""
    from flightdeck.airflow.params import validated
    from flightdeck.batch.scoring import ModelArtifact
    from flightdeck.streaming.params import StreamReplayParams
    from flightdeck.streaming.replay import replay, replay_kinesis

    settings = get_settings()
    checked = validated(StreamReplayParams, params, dag_run)
    with fail_fast_on_user_error():
        models = registry()
        pinned = models.resolve(checked.model_name, checked.model_ref)
        version, onnx_bytes = models.download_onnx(checked.model_name, pinned.version)
        model = ModelArtifact(checked.model_name, version, onnx_bytes)
        output = settings.home / "predictions" / "replay"
        if checked.broker == "kinesis":
            return replay_kinesis(checked.stream, checked.start, checked.end, model, output, run_id,
                                  settings.decision_threshold, region=checked.aws_region)
        return replay(checked.redis_url or settings.stream_redis_url, checked.stream, checked.start, checked.end,
                      model, output, run_id, settings.decision_threshold)


@task
def investigate(params=None, dag_run=None) -> list[dict]:
    """Investigate every alert that started the run (or the one named by `alert_id`): a report
    per alert and a short summary sent as an alert."""
    from flightdeck.airflow.params import validated
    from flightdeck.streaming.drift import InvalidAlertError, alert_source
    from flightdeck.streaming.params import DriftInvestigationParams

    settings = get_settings()
    checked = validated(DriftInvestigationParams, params, dag_run)
    with fail_fast_on_user_error():
        payloads = alerts_from_context(get_current_context())
        source = alert_source(checked, settings.stream_redis_url)
        if checked.alert_id:
            payloads.append(source.read(checked.alert_id))
        if not payloads:
            raise InvalidAlertError("this run has no alert: it was neither started by an alert nor given one. "
                                    "Fix: trigger it with {\"alert_id\": \"<entry id in the alert stream>\"}.")
        done = []
        for payload in payloads:
            outcome = source.investigate(payload, settings.home / "reports" / "stream-drift")
            send_alert(f"flightdeck: stream score drift (PSI {outcome['score_psi']:.2f})",
                       f"{outcome['summary']}\nreport: {outcome['report']}")
            done.append(outcome)
    return done
