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
        return self.take(self._reader.xread({self.stream: self._last}, count=max_records, block=block))

    def read_command(self, max_records: int) -> tuple:
        """The XREAD of `poll(max_records, 0)` as a command to send along another one
        (`RedisSink.send_commit`); its reply goes to `take`."""
        return ("XREAD", "COUNT", max_records, "STREAMS", self.stream, self._last)

    def take(self, answer) -> list[Record]:
        """The records of an XREAD reply (as the server sent it), continuing after them."""
        if not answer:
            return []
        # RESP2: [[stream, entries]]; RESP3: {stream: entries}. An entry is [id, [field, value, ...]].
        entries = answer[0][1] if isinstance(answer, list) else next(iter(answer.values()))
        field, make, cls = self.field, tuple.__new__, Record  # a Record without NamedTuple's __new__ in Python
        records = []
        for entry_id, fields in entries:
            millis, _, _ = entry_id.partition(b"-")  # an entry id starts with the ms at which Redis appended it
            value = fields[1] if fields[0] == field else _field(fields, field)
            records.append(make(cls, (entry_id.decode(), value, int(millis) / 1000)))
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

    `send_commit` sends a batch's script (and the read after it) without waiting for the reply, so
    the scorer overlaps a batch's commit with the next batch's work on one thread. (`overlapping_commits`:
    `commit` may also run on another thread while the source polls and `entities` reads, each call
    taking its own connection from the client's pool.) The sink never refuses a batch's content.

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
        self._script_loaded = False
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
        keys, args, checkpoint = self._commit_arguments(batch)
        try:
            self._script(keys=keys, args=args)
        except redis.ResponseError as exc:
            self._raise_fenced(exc)
            raise
        self._stored = checkpoint

    def send_commit(self, batch: CommitBatch, source: RedisStreamSource | None = None, read: int = 0) -> SentCommit:
        """Send the batch's commit and, with a `source` on the same client, the read of up to `read`
        records after it, in one write, without waiting for the replies: Redis applies the commit
        and prepares the next records while the caller works on. `result()` of the answer waits for
        both and returns the records read, or raises FencedError as `commit` does (then nothing was
        written and the records read are dropped: the caller re-reads from the stored position).
        One commit at a time: call `result()` before sending another."""
        keys, args, checkpoint = self._commit_arguments(batch)
        if not self._script_loaded:  # EVALSHA needs the script in the server's cache
            self._script.sha = self.client.script_load(_COMMIT)
            self._script_loaded = True
        joined = (source is not None and read > 0 and isinstance(source, RedisStreamSource)
                  and source.client.connection_pool is self.client.connection_pool)
        commands = [("EVALSHA", self._script.sha, len(keys), *keys, *args)]
        if joined:
            commands.append(source.read_command(read))
        pool = self.client.connection_pool
        connection = pool.get_connection()
        try:
            connection.send_packed_command(connection.pack_commands(commands))
        except BaseException:
            pool.release(connection)
            raise
        return SentCommit(self, batch, checkpoint, pool, connection, source if joined else None,
                          source, read)

    def _commit_arguments(self, batch: CommitBatch) -> tuple[list, list, bytes]:
        """The commit script's keys and arguments, and the checkpoint it stores."""
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
        keys = [self.output, self.dead, self._entities, self.windows_key, self._checkpoint, self.alerts or self.output]
        args = [*counts, checkpoint, self._stored, b"\0".join(results), b"\0".join(entities),
                *[x for pair in zip(dead, reasons, strict=True) for x in pair], *windows, *alerts]
        return keys, args, checkpoint

    def _raise_fenced(self, exc: redis.ResponseError) -> None:
        if str(exc).startswith("FENCED"):
            raise FencedError(self._checkpoint.removesuffix(":checkpoint")) from None

    def window_records(self) -> list[dict]:
        """Every window record written so far."""
        return [json.loads(v) for v in self.client.hvals(self.windows_key)]

    def close(self) -> None:
        pass


class SentCommit:
    """A commit `RedisSink.send_commit` sent (with, perhaps, the read after it), its replies not yet read."""

    def __init__(self, sink: RedisSink, batch: CommitBatch, checkpoint: bytes, pool, connection,
                 joined: RedisStreamSource | None, source, read: int) -> None:
        self._sink, self._batch, self._checkpoint = sink, batch, checkpoint
        self._pool, self._connection, self._joined, self._source, self._read = pool, connection, joined, source, read

    def result(self) -> list:
        """Wait for the replies: the records read after the commit; FencedError when it was fenced."""
        connection, self._connection = self._connection, None
        if connection is None:
            raise RuntimeError("the replies of this commit were already read")
        error, answer = None, None
        try:
            try:
                connection.read_response()
            except redis.ResponseError as exc:  # the read after it ran all the same: its reply comes next
                error = exc
            if self._joined is not None:
                answer = connection.read_response()
        finally:
            self._pool.release(connection)
        if error is not None:
            self._sink._raise_fenced(error)
            if not isinstance(error, redis.exceptions.NoScriptError):
                raise error
            # The server lost its script cache (a restart): nothing was written; commit the usual way.
            self._sink._script_loaded = False
            self._sink.commit(self._batch)
            return self._source.poll(self._read, 0) if self._source is not None and self._read > 0 else []
        self._sink._stored = self._checkpoint
        if self._joined is not None:
            return self._joined.take(answer)
        return self._source.poll(self._read, 0) if self._source is not None and self._read > 0 else []

    def close(self) -> None:
        """Give the connection back unread (the scorer stops without settling): it is reconnected."""
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.disconnect()
            self._pool.release(connection)
