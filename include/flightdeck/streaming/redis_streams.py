"""Redis Streams adapter: a source that reads after a stored id, and an atomic sink.

The source reads with XREAD from the id the sink stored, not from a consumer group's
pending list: the stored id is written in the same MULTI/EXEC as the results, so it is the
only truth about what has been processed. (A consumer group would add a second, separately
acknowledged position that a crash can leave out of step.) One scorer owns one stream;
scale out with one stream per shard (`events:0`, `events:1`, ...).
"""

from __future__ import annotations

import json

import orjson
import redis

from flightdeck.streaming.broker import Checkpoint, CommitBatch, FencedError
from flightdeck.streaming.events import Record, ScoredBatch
from flightdeck.streaming.windows import window_key


def connect(url: str) -> redis.Redis:
    """A client for `url` (redis://host:port/db)."""
    return redis.Redis.from_url(url)


class RedisStreamSource:
    """Records of one stream, in order, after a position (an entry id)."""

    def __init__(self, client: redis.Redis, stream: str, field: str = "data") -> None:
        self.client, self.stream, self.field = client, stream, field.encode()
        # XREAD's replies as hiredis parsed them (the client's own callback builds a tuple and a dict
        # per entry); the same connections as `client`.
        self._reader = redis.Redis(connection_pool=client.connection_pool)
        self._reader.set_response_callback("XREAD", _as_sent)
        self._last = "0-0"
        self._read = 0

    def seek(self, position: str | None, processed: int = 0) -> None:
        self._last = position or "0-0"
        self._read = processed

    def poll(self, max_records: int, timeout_s: float) -> list[Record]:
        block = max(int(timeout_s * 1000), 1) if timeout_s > 0 else None
        answer = self._reader.xread({self.stream: self._last}, count=max_records, block=block)
        if not answer:
            return []
        # RESP2: [[stream, entries]]; RESP3: {stream: entries}. An entry is [id, [field, value, ...]].
        entries = answer[0][1] if isinstance(answer, list) else next(iter(answer.values()))
        field, make = self.field, Record
        records = []
        for entry_id, fields in entries:
            offset = entry_id.decode()
            value = fields[1] if fields[0] == field else _field(fields, field)
            # An entry id starts with the milliseconds at which Redis appended it.
            records.append(make(offset, value, int(offset[:offset.index("-")]) / 1000))
        self._last = records[-1].offset
        self._read += len(records)
        return records

    def lag(self) -> int | None:
        # entries-added (Redis >= 7) counts every entry ever appended; we have read `_read` of
        # them since the stream began (the sink's processed count plus this run's reads).
        added = self.client.xinfo_stream(self.stream).get("entries-added")
        return None if added is None else max(int(added) - self._read, 0)

    def close(self) -> None:
        pass


def _as_sent(response, **_options):
    return response


def _field(fields: list, name: bytes) -> bytes:
    """The value of `name` in an entry's flat [field, value, ...] list (b"" when absent)."""
    for i in range(0, len(fields) - 1, 2):
        if fields[i] == name:
            return fields[i + 1]
    return b""


_COMMIT = """
local n_res, n_dead, n_ent, n_win, n_alert = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]),
    tonumber(ARGV[4]), tonumber(ARGV[5])
if (redis.call('GET', KEYS[5]) or '') ~= ARGV[7] then
    return redis.error_reply('FENCED the stored checkpoint is not the expected one')
end
-- ARGV[8]: the results, ARGV[9]: entity id and state pairs, each joined with NUL (which neither
-- JSON text nor a valid entity id holds): two arguments instead of thousands.
local function split(s, n)
    local out, pos = {}, 1
    for k = 1, n do
        local stop = string.find(s, '\\0', pos, true) or (#s + 1)
        out[k] = string.sub(s, pos, stop - 1)
        pos = stop + 1
    end
    return out
end
for _, result in ipairs(split(ARGV[8], n_res)) do redis.call('XADD', KEYS[1], '*', 'data', result) end
local states = split(ARGV[9], n_ent)
for s = 1, n_ent, 1000 do redis.call('HSET', KEYS[3], unpack(states, s, math.min(s + 999, n_ent))) end
local i = 10
for _ = 1, n_dead do redis.call('XADD', KEYS[2], '*', 'data', ARGV[i], 'reason', ARGV[i + 1]); i = i + 2 end
for _ = 1, n_win, 2 do redis.call('HSET', KEYS[4], ARGV[i], ARGV[i + 1]); i = i + 2 end
for _ = 1, n_alert do redis.call('XADD', KEYS[6], '*', 'data', ARGV[i]); i = i + 1 end
redis.call('SET', KEYS[5], ARGV[6])
return n_res
"""


class RedisSink:
    """Results to an output stream, dead letters to a dead-letter stream, state in keys.

    One Lua script per batch writes the output entries, the dead letters, entity state,
    window records and the source position: Redis runs a script atomically, so it applies
    all of it or, if the client dies before the call arrives, none of it.

    Fencing: the script first compares the stored checkpoint with the one this sink last loaded
    or wrote, and writes nothing if they differ (FencedError): a second scorer started with the
    same consumer name cannot make the first one write its batches again.

    `overlapping_commits`: a commit may run on another thread while the source polls and `entities`
    reads (each call takes its own connection from the client's pool), so the scorer overlaps a
    batch's commit with the next batch's work. The sink never refuses a batch's content.

    Keep stream state on a Redis with `maxmemory-policy noeviction` and AOF persistence (the
    `stream-redis` service in compose): an evicted or lost checkpoint re-scores the whole stream.
    """

    def __init__(self, client: redis.Redis, output_stream: str, dead_letter_stream: str, state_prefix: str,
                 alert_stream: str | None = None) -> None:
        self.overlapping_commits = True
        self.client = client
        self.output, self.dead, self.alerts = output_stream, dead_letter_stream, alert_stream
        self._checkpoint = f"{state_prefix}:checkpoint"
        self._entities = f"{state_prefix}:entities"
        self.windows_key = f"{state_prefix}:windows"
        self._script = client.register_script(_COMMIT)
        self._stored = b""  # the checkpoint as last loaded or written: what a commit expects to find

    def load(self) -> Checkpoint:
        raw = self.client.get(self._checkpoint)
        self._stored = raw or b""
        if raw is None:
            return Checkpoint()
        data = json.loads(raw)
        return Checkpoint(data["position"], data["processed"], data["windows"])

    def entities(self, ids: list[str]) -> dict[str, dict]:
        if not ids:
            return {}
        values = self.client.hmget(self._entities, ids)
        return {i: json.loads(v) for i, v in zip(ids, values, strict=True) if v is not None}

    def all_entities(self, limit: int) -> dict[str, dict] | None:
        """Every stored entity state, or None when there are more than `limit` of them."""
        if self.client.hlen(self._entities) > limit:
            return None
        return {k.decode(): json.loads(v) for k, v in self.client.hgetall(self._entities).items()}

    def commit(self, batch: CommitBatch) -> None:
        # One Lua call instead of a MULTI/EXEC of one XADD per result: equally atomic (Redis
        # runs a script alone and all of it), and one reply instead of thousands (3x faster).
        # orjson: the results, entity states and the checkpoint (with the window state) of a batch
        # are thousands of small documents.
        cp = batch.checkpoint
        checkpoint = orjson.dumps({"position": cp.position, "processed": cp.processed, "windows": cp.windows})
        dumps = orjson.dumps
        results = (batch.results.json_lines() if isinstance(batch.results, ScoredBatch)
                   else [dumps(r) for r in batch.results])
        dead = [d.to_json() for d in batch.dead_letters]
        reasons = [d.storable_reason for d in batch.dead_letters]
        entities = [x for k, v in batch.entities.items() for x in (k.encode(), dumps(v))]
        # A window re-emitted by several late events is one record (the same state): written once.
        latest = {window_key(r): r for r in batch.window_records}
        windows = [x for key, r in latest.items() for x in (key, dumps(r))]
        alerts = [dumps(a) for a in batch.alerts] if self.alerts else []
        counts = [len(results), len(dead), len(entities), len(windows), len(alerts)]
        try:
            self._script(keys=[self.output, self.dead, self._entities, self.windows_key, self._checkpoint,
                               self.alerts or self.output],
                         args=[*counts, checkpoint, self._stored, b"\0".join(results), b"\0".join(entities),
                               *[x for pair in zip(dead, reasons, strict=True) for x in pair],
                               *windows, *alerts])
        except redis.ResponseError as exc:
            if str(exc).startswith("FENCED"):
                raise FencedError(self._checkpoint.removesuffix(":checkpoint")) from None
            raise
        self._stored = checkpoint

    def window_records(self) -> list[dict]:
        """Every window record written so far."""
        return [json.loads(v) for v in self.client.hvals(self.windows_key)]

    def close(self) -> None:
        pass
