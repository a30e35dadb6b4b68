"""Drift investigation: what a drift alert from the stream scorer means, in one report.

The scorer publishes an alert when a closed window's score PSI against its reference (the
first closed window of the same model version) crosses `drift_alert_psi` (`score_drift`), or
when only the PSI of some features against the version's training reference profile does
(`feature_drift`); the alert is the window record, with `feature_psi` (every feature, or None
when the version has no profile) and `drifted_features`. Alerts written before per-feature
PSI existed have neither and are read as before. An investigation reads the alert, pulls that
window's results from the scorer's output stream and its reference window from the scorer's
window state (a Kinesis scorer's both from its DynamoDB table), and writes a short report: score
distribution then and now, the features that drifted and their PSI, the features whose means
moved most, and the entities with the highest scores in the window.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from flightdeck.errors import FlightdeckError
from flightdeck.streaming.feature_drift import ALERT_KINDS

SCAN_PAGE = 1000


class InvalidAlertError(FlightdeckError):
    """A drift alert cannot be read; the message names the field and the fix."""


@dataclass(frozen=True)
class DriftAlert:
    """One drift alert: the window (kind, [start, end), model version), its score PSI and the
    features whose PSI crossed the threshold."""

    entry_id: str  # the alert's id in the alert stream
    kind: str
    start: float
    end: float
    model_version: str
    score_psi: float
    record: dict
    alert: str = "score_drift"  # score_drift or feature_drift
    feature_psi: dict | None = None  # every feature's PSI against the training reference, if known
    drifted_features: tuple[str, ...] = ()  # largest PSI first


def parse_alert(payload: dict) -> DriftAlert:
    """A trigger payload (`{"stream", "id", "data": {"data": "<alert JSON>"}}`) as a DriftAlert."""
    try:
        body = json.loads(payload["data"]["data"])
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidAlertError(f"alert payload {str(payload)[:200]} has no JSON 'data' field ({exc}). Fix: "
                                "publish alerts with `flightdeck stream --alerts <stream>`.") from None
    missing = [k for k in ("alert", "kind", "start", "end", "model_version", "score_psi") if k not in body]
    if missing:
        raise InvalidAlertError(f"alert {payload.get('id')} lacks {missing}. Fix: publish the scorer's window "
                                "record (flightdeck stream) to the alert stream.")
    if body["alert"] not in ALERT_KINDS:
        raise InvalidAlertError(f"alert {payload.get('id')} is {body['alert']!r}, not one of {list(ALERT_KINDS)}. "
                                "Fix: point the drift investigation at the drift-alert stream only.")
    feature_psi = body.get("feature_psi")
    if feature_psi is not None and not isinstance(feature_psi, dict):
        raise InvalidAlertError(f"alert {payload.get('id')}: feature_psi is not an object. Fix: publish the "
                                "scorer's window record (flightdeck stream) to the alert stream.")
    return DriftAlert(str(payload.get("id")), body["kind"], float(body["start"]), float(body["end"]),
                      str(body["model_version"]), float(body["score_psi"]), body, body["alert"],
                      feature_psi, tuple(body.get("drifted_features") or ()))


def window_results(client, output_stream: str, alert: DriftAlert, max_scan: int = 200_000) -> list[dict]:
    """The results of the alert's window in a Redis scorer's output stream (see `collect_window`):
    scanned backwards from the alert's append time."""
    return collect_window(_redis_pages(client, output_stream, alert), alert, max_scan)


def _redis_pages(client, output_stream: str, alert: DriftAlert) -> Iterator[list[dict]]:
    cursor = f"{alert.entry_id.split('-')[0]}-18446744073709551615"
    while True:
        page = client.xrevrange(output_stream, max=cursor, min="-", count=SCAN_PAGE)
        if not page:
            return
        yield [json.loads(fields[b"data"]) for _, fields in page]
        if len(page) < SCAN_PAGE:
            return
        cursor = f"({page[-1][0].decode()}"


def collect_window(pages: Iterable[list[dict]], alert: DriftAlert, max_scan: int = 200_000) -> list[dict]:
    """The results of the alert's window (event time in [start, end), same model version), oldest first,
    from pages of results newest first that begin at the alert.

    The alert was written in the same atomic commit as the batch that closed its window, so
    every result of the window precedes the alert: read back until a whole page lies before the
    window (events arrive roughly in event-time order; a straggler older than one page is missed,
    which a report can bear).
    """
    found, scanned = [], 0
    for rows in pages:
        found += [r for r in rows if alert.start <= r["event_time"] < alert.end
                  and r["model_version"] == alert.model_version]
        scanned += len(rows)
        if scanned >= max_scan or all(r["event_time"] < alert.start for r in rows):
            break
    return found[::-1]


def reference_window(records: list[dict], alert: DriftAlert) -> dict | None:
    """The reference of the alert's window: the earliest closed window of the same kind and version."""
    same = [r for r in records if r["kind"] == alert.kind and r["model_version"] == alert.model_version
            and r["start"] < alert.start and r["count"]]
    return min(same, key=lambda r: r["start"]) if same else None


def investigate(alert: DriftAlert, results: list[dict], reference: dict | None, top: int = 5) -> dict:
    """The report of one alert (JSON-ready): window, reference, feature shifts, top entities."""
    window = alert.record
    shifts = []
    if reference:
        for name, mean in window.get("feature_means", {}).items():
            before = reference.get("feature_means", {}).get(name)
            if before is not None:
                shifts.append({"feature": name, "reference_mean": before, "window_mean": mean,
                               "relative_change": (mean - before) / abs(before) if before else None})
        shifts.sort(key=lambda s: -abs(s["relative_change"] or 0.0))
    ranked = sorted(results, key=lambda r: -r["score"])[:top]
    return {
        "alert_id": alert.entry_id, "alert": alert.alert, "kind": alert.kind, "start": alert.start,
        "end": alert.end, "model_version": alert.model_version, "score_psi": alert.score_psi,
        "drifted_features": [{"feature": name, "psi": (alert.feature_psi or {}).get(name)}
                             for name in alert.drifted_features],
        "feature_psi": alert.feature_psi,
        "window": {k: window.get(k) for k in ("count", "score_mean", "score_std", "score_bins", "late_events")},
        "reference": None if reference is None else {
            k: reference.get(k) for k in ("start", "end", "count", "score_mean", "score_std", "score_bins")},
        "results_found": len(results),
        "positive_rate": sum(r["label"] for r in results) / len(results) if results else None,
        "feature_shifts": shifts,
        "top_entities": [{"entity_id": r["entity_id"], "event_id": r["event_id"], "score": r["score"]}
                         for r in ranked],
    }


def summary(report: dict) -> str:
    """A few lines for a person: what drifted, by how much, and where to look first."""
    lines = [f"{report['kind']} window [{report['start']:.0f}, {report['end']:.0f}) of model version "
             f"{report['model_version']}: score PSI {report['score_psi']:.3f}",
             f"window: {report['window']['count']} events, mean score {report['window']['score_mean']:.3f}"]
    drifted = report.get("drifted_features") or []
    if drifted:
        lines.append("features drifted from the training reference: " + ", ".join(
            f"{d['feature']} (PSI {d['psi']:.3f})" if d["psi"] is not None else d["feature"] for d in drifted))
    if report["reference"]:
        lines.append(f"reference [{report['reference']['start']:.0f}, ...): {report['reference']['count']} events, "
                     f"mean score {report['reference']['score_mean']:.3f}")
    for shift in report["feature_shifts"][:3]:
        change = shift["relative_change"]
        lines.append(f"feature {shift['feature']}: mean {shift['reference_mean']:.3g} -> {shift['window_mean']:.3g}"
                     + (f" ({change:+.0%})" if change is not None else ""))
    lines.append(f"{report['results_found']} results of the window found in the output stream")
    return "\n".join(lines)


def write_report(report: dict, folder: Path) -> Path:
    """`folder/drift-<alert id>.json` (written whole, then renamed into place)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"drift-{report['alert_id']}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=2))
    tmp.replace(path)
    return path


def read_alert(client, stream: str, entry_id: str) -> dict:
    """The payload of one alert already in `stream` (for a manual re-investigation)."""
    page = client.xrange(stream, min=entry_id, max=entry_id)
    if not page:
        raise InvalidAlertError(f"{stream} has no entry {entry_id!r}. Fix: pass the id of an alert in that stream "
                                "(XRANGE shows them).")
    entry, fields = page[0]
    return {"stream": stream, "id": entry.decode(), "data": {k.decode(): v.decode() for k, v in fields.items()}}


def investigate_payload(redis_url: str, payload: dict, output_stream: str, state_prefix: str,
                        folder: Path) -> dict:
    """Parse one alert, pull its window and reference, write the report; returns report + path + summary."""
    from flightdeck.streaming.redis_streams import connect

    alert = parse_alert(payload)
    client = connect(redis_url)
    try:
        results = window_results(client, output_stream, alert)
        records = [json.loads(v) for v in client.hvals(f"{state_prefix}:windows")]
    finally:
        client.close()
    return _outcome(alert, results, records, folder)


def _outcome(alert: DriftAlert, results: list[dict], records: list[dict], folder: Path) -> dict:
    report = investigate(alert, results, reference_window(records, alert))
    return {"report": str(write_report(report, folder)), "summary": summary(report), "alert_id": alert.entry_id,
            "score_psi": alert.score_psi, "drifted_features": list(alert.drifted_features)}


# -- a Kinesis scorer's alerts (flightdeck stream --broker kinesis --alerts STREAM) -----------------
def kinesis_alert_payload(stream: str, shard_id: str, sequence: str, data: bytes, partition_key: str | None) -> dict:
    """A record of a Kinesis alert stream as a payload in the Redis trigger's shape (for `parse_alert`),
    plus its partition key, which names the scorer's commit that holds the alert."""
    return {"stream": stream, "id": f"{shard_id}:{sequence}", "data": {"data": data.decode("utf-8", "replace")},
            "partition_key": partition_key}


def read_kinesis_alert(kinesis, stream: str, alert_id: str) -> dict:
    """The payload of one alert still in a Kinesis alert stream (`<shard id>:<sequence number>`)."""
    from flightdeck.streaming.kinesis import read_record

    data, key = read_record(kinesis, stream, alert_id)
    shard_id, _, sequence = alert_id.rpartition(":")
    return kinesis_alert_payload(stream, shard_id, sequence, data, key)


def investigate_kinesis_payload(reader, payload: dict, folder: Path) -> dict:
    """`investigate_payload` for a Kinesis scorer's alert: the window's results and the reference
    window come from the scorer's DynamoDB table (`reader`, a `kinesis.DynamoReader`)."""
    alert = parse_alert(payload)
    results = collect_window(reader.results_newest_first(_alert_commit(payload, reader.consumer)), alert)
    return _outcome(alert, results, reader.window_records(), folder)


def _alert_commit(payload: dict, consumer: str) -> str | None:
    """The scorer's commit that holds the alert (None, without a partition key: read from the newest)."""
    from flightdeck.streaming.kinesis import alert_commit

    parsed = alert_commit(payload.get("partition_key") or "")
    if parsed is None:
        return None
    if parsed[0] != consumer:
        raise InvalidAlertError(f"alert {payload.get('id')} was published by the scorer {parsed[0]!r}, not "
                                f"{consumer!r}. Fix: run the investigation with consumer {parsed[0]!r} (the "
                                "scorer's --consumer).")
    return parsed[1]


# -- where a run reads alerts, results and windows: the scorer's broker ---------------------------
class RedisAlerts:
    """A Redis scorer's alert stream, output stream and window state."""

    def __init__(self, redis_url: str, alert_stream: str, output_stream: str, state_prefix: str) -> None:
        self.redis_url, self.alert_stream = redis_url, alert_stream
        self.output_stream, self.state_prefix = output_stream, state_prefix

    def read(self, alert_id: str) -> dict:
        from flightdeck.streaming.redis_streams import connect

        client = connect(self.redis_url)
        try:
            return read_alert(client, self.alert_stream, alert_id)
        finally:
            client.close()

    def investigate(self, payload: dict, folder: Path) -> dict:
        return investigate_payload(self.redis_url, payload, self.output_stream, self.state_prefix, folder)


class KinesisAlerts:
    """A Kinesis scorer's alert stream, and the results and windows in its DynamoDB table."""

    def __init__(self, alert_stream: str, table: str, consumer: str, region: str | None = None,
                 clients: tuple | None = None) -> None:
        from flightdeck.streaming import kinesis

        kinesis.check_stream_name("alert_stream", alert_stream)
        self.kinesis, dynamodb = clients or kinesis.clients(region)
        self.alert_stream = alert_stream
        self.reader = kinesis.DynamoReader(dynamodb, table, consumer)

    def read(self, alert_id: str) -> dict:
        return read_kinesis_alert(self.kinesis, self.alert_stream, alert_id)

    def investigate(self, payload: dict, folder: Path) -> dict:
        return investigate_kinesis_payload(self.reader, payload, folder)


def alert_source(params, redis_url: str) -> RedisAlerts | KinesisAlerts:
    """Where the investigation of `params` (a `DriftInvestigationParams`) reads: its broker's stores."""
    if params.broker == "kinesis":
        return KinesisAlerts(params.alert_stream, params.dynamodb_table, params.consumer, params.aws_region)
    return RedisAlerts(params.redis_url or redis_url, params.alert_stream, params.output_stream, params.state_prefix)
