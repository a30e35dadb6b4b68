"""Kinesis adapter: shards in, DynamoDB out, one DynamoDB transaction per batch (exactly once).

Kinesis has no transactions and no consumer-side offsets, so the truth lives in one DynamoDB
table (`pk`, `sk`, both strings), written with conditional writes:

| item (`pk` / `sk`) | holds |
|---|---|
| `<consumer>#shard` / shard id | the shard's lease (`lease_owner`, `lease_token`, `lease_until`) and checkpoint (`seq`) |
| `<consumer>#state` / `checkpoint` | records processed so far and the windows' state |
| `<consumer>#results` / commit number | one page per batch: its results, one JSON object per line |
| `<consumer>#dead` / commit number | the batch's dead letters, each with its reason |
| `<consumer>#windows` / commit number | the batch's window records (the newest per window wins) |
| `<consumer>#entities#<bucket>` / `-` | the rolling state of every entity hashed to the bucket (zlib-compressed JSON) |
| `<consumer>#outbox` / commit number | alerts and dead letters still to forward to Kinesis streams |

**One transaction per batch.** `TransactWriteItems` writes a batch's result page, dead letters,
window records, entity states, the new processed count and every leased shard's new sequence
number together, or nothing (at most 100 items: pages of up to 300 KB, and the entity buckets
the batch touched, so a transaction's item count does not grow with the batch). Its conditions are the fence: each shard must still be leased to
this process under the lease token it acquired, and the stored count must be the one this
process last loaded or wrote. A second scorer that takes a lease (a restarted instance takes its
own at once; another instance once the lease has expired) bumps the token, so the first one's
next commit fails as a whole (`FencedError`) and it re-reads from the stored checkpoint.
Entity state is held in memory (read once at start, like the Kafka adapter's changelog) and
stored in `entity_buckets` items, each rewritten whole when a batch touches it: a bucket holds
at most 400 KB compressed and a transaction 4 MB, so this suits up to about 100,000 entities
(raise `entity_buckets`, up to 64, before that). Per-entity items would not have that bound,
but a transaction then holds about 90 records, and moto copies its whole table once per item
of a transaction (2-3 s per 90-item transaction measured): the tests could not run it.

**Resharding.** A split or merge closes the parent shards and opens children whose records are
newer than everything in the parents. A shard is read only once every parent it lists has been
read to its end in this process (the end of a closed shard: no next iterator, or no records and
nothing behind). After a restart the parents are read again from their checkpoints, end at
once, and the children resume from theirs.

**Alerts and forwarded dead letters.** Kinesis cannot join a DynamoDB transaction: the batch's
drift alerts (and dead letters, when `dead_letter_stream` is set) are committed in the
transaction as an outbox item and put to their Kinesis streams after it, then the item is
deleted; a crash in between forwards them again on the next start (at least once: the
partition key `<consumer>:<commit>:<i>` identifies an alert, a dead letter's is its offset).
The exactly-once copies are the DynamoDB ones.
"""

from __future__ import annotations

import json
import logging
import re
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from flightdeck.errors import ConfigError, FlightdeckError
from flightdeck.streaming.broker import Checkpoint, CommitBatch, FencedError
from flightdeck.streaming.events import Record
from flightdeck.streaming.windows import window_key

log = logging.getLogger(__name__)

TRANSACTION_ITEMS = 100  # DynamoDB's limit of items in one TransactWriteItems
PAGE_BYTES = 300_000  # a page item's lines (DynamoDB items hold at most 400 KB)
DEAD_VALUE_CHARS = 4096  # a dead letter's raw value is kept up to this many characters
MAX_BUCKETS = 64
BUCKET_BYTES = 380_000  # an entity bucket's compressed states (an item holds at most 400 KB)
TRANSACTION_BYTES = 3_000_000  # entity buckets in one transaction (which holds at most 4 MB)
STREAM_NAME = re.compile(r"^[a-zA-Z0-9_.-]{1,128}$")
DEFAULT_TABLE = "flightdeck-stream"


class LeaseHeldError(FlightdeckError):
    """Another live scorer instance holds a shard of this consumer."""


def clients(region: str | None = None, endpoint_url: str | None = None):
    """(kinesis, dynamodb) boto3 clients; without `endpoint_url`, botocore's own resolution
    (AWS_ENDPOINT_URL, the profile, the region) decides where they go."""
    import boto3
    from botocore.config import Config

    config = Config(retries={"max_attempts": 8, "mode": "standard"}, connect_timeout=5, read_timeout=20)
    session = boto3.session.Session(region_name=region)
    return (session.client("kinesis", endpoint_url=endpoint_url, config=config),
            session.client("dynamodb", endpoint_url=endpoint_url, config=config))


def check_stream_name(option: str, name: str | None) -> None:
    if name is not None and not STREAM_NAME.match(name):
        raise ConfigError(option, f"{name!r} is not a Kinesis stream name",
                          "use 1-128 letters, digits, '_', '-' or '.' (Redis-style names with ':' are not allowed)")


def ensure_table(dynamodb, table: str) -> None:
    """Create the state table (on-demand capacity) unless it exists, and wait until it is active."""
    try:
        status = dynamodb.describe_table(TableName=table)["Table"]["TableStatus"]
    except dynamodb.exceptions.ResourceNotFoundException:
        try:
            dynamodb.create_table(TableName=table, BillingMode="PAY_PER_REQUEST",
                                  AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                                        {"AttributeName": "sk", "AttributeType": "S"}],
                                  KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                                             {"AttributeName": "sk", "KeyType": "RANGE"}])
        except dynamodb.exceptions.ResourceInUseException:
            pass  # another instance created it first
        status = dynamodb.describe_table(TableName=table)["Table"]["TableStatus"]
    if status != "ACTIVE":
        dynamodb.get_waiter("table_exists").wait(TableName=table, WaiterConfig={"Delay": 1, "MaxAttempts": 60})


def publish(kinesis, stream: str, values: Iterable[bytes], partition_key: Callable[[bytes, int], str] | None = None,
            chunk: int = 500) -> int:
    """Put `values` on `stream` in order (PutRecords, 500 a call, failed entries put again).
    Default partition key: the event's entity id, so one entity's events stay in one shard, in order."""
    key = partition_key or _entity_key
    pending = [(key(v, i), v) for i, v in enumerate(values)]
    sent = 0
    for start in range(0, len(pending), chunk):
        part = pending[start:start + chunk]
        for _attempt in range(10):
            answer = kinesis.put_records(StreamName=stream, Records=[{"Data": v, "PartitionKey": k} for k, v in part])
            failed = [p for p, r in zip(part, answer["Records"], strict=True) if "ErrorCode" in r]
            sent += len(part) - len(failed)
            if not failed:
                break
            part = failed
            time.sleep(0.2)
        else:
            raise FlightdeckError(f"Kinesis stream {stream!r} kept refusing {len(part)} records. Fix: raise the "
                                  "stream's capacity (shards or on-demand mode) and publish them again.")
    return sent


def alert_key(consumer: str, commit: str, i: int) -> str:
    """The partition key of a forwarded alert: its consumer, the commit that holds it, its place in it."""
    return f"{consumer}:{commit}:{i}"


def alert_commit(key: str) -> tuple[str, str] | None:
    """(consumer, commit) of an `alert_key`; None when `key` is not one."""
    parts = key.rsplit(":", 2)
    if len(parts) != 3 or not parts[1].isdigit() or not parts[2].isdigit():
        return None
    return parts[0], parts[1]


def _entity_key(value: bytes, i: int) -> str:
    try:
        entity = json.loads(value).get("customer_id")
    except (ValueError, AttributeError):
        entity = None
    return str(entity) if entity not in (None, "") else f"record-{i}"


# -- attribute values ------------------------------------------------------------------------------
def _s(value: str) -> dict:
    return {"S": value}


def _n(value: int | float) -> dict:
    return {"N": str(value)}


def _key(pk: str, sk: str) -> dict:
    return {"pk": _s(pk), "sk": _s(sk)}


def _offsets(position: str | None) -> dict[str, str]:
    return dict(json.loads(position)) if position else {}


def _seq_int(seq: str) -> int:
    return int(seq)


@dataclass
class _Shard:
    shard_id: str
    parents: tuple[str, ...]
    closed: bool
    token: int = 0  # the lease token this process holds
    stored: str | None = None  # the committed sequence number
    read: str | None = None  # the last sequence number polled
    iterator: str | None = None
    ended: bool = False


def list_shards(kinesis, stream: str) -> list[_Shard]:
    """Every shard the stream lists (open ones, and closed ones still within retention)."""
    shards, token = [], None
    try:
        while True:
            page = kinesis.list_shards(NextToken=token) if token else kinesis.list_shards(StreamName=stream)
            shards.extend(page["Shards"])
            token = page.get("NextToken")
            if not token:
                break
    except kinesis.exceptions.ResourceNotFoundException:
        raise ConfigError("--input", f"Kinesis stream {stream!r} does not exist",
                          "create it first (aws kinesis create-stream), or name the right stream") from None
    return [_Shard(s["ShardId"], tuple(p for p in (s.get("ParentShardId"), s.get("AdjacentParentShardId")) if p),
                   "EndingSequenceNumber" in s.get("SequenceNumberRange", {})) for s in shards]


class KinesisBackend:
    """A Kinesis stream's shards in, DynamoDB out; see the module docstring."""

    def __init__(self, kinesis, dynamodb, stream: str, table: str, consumer: str, instance_id: str, *,
                 alert_stream: str | None = None, dead_letter_stream: str | None = None, lease_s: float = 30.0,
                 acquire_timeout_s: float | None = None, max_batch: int = 500, entity_buckets: int = 16,
                 idle_sleep_s: float = 0.2,
                 relist_s: float = 10.0, clock: Callable[[], float] = time.time) -> None:
        for option, name in (("--input", stream), ("--alerts", alert_stream), ("--dead-letter", dead_letter_stream)):
            check_stream_name(option, name)
        if not 1 <= max_batch <= 1000:
            raise ConfigError("max_batch", str(max_batch), "use 1 to 1000 records a transaction")
        if not 4 <= entity_buckets <= MAX_BUCKETS:
            raise ConfigError("--entity-buckets", str(entity_buckets), f"use 4 to {MAX_BUCKETS}")
        if "#" in consumer:
            raise ConfigError("--consumer", consumer, "use a name without '#'")
        self.kinesis, self.dynamodb, self.stream, self.table = kinesis, dynamodb, stream, table
        self.consumer, self.instance_id = consumer, instance_id
        self.alert_stream, self.dead_letter_stream = alert_stream, dead_letter_stream
        self.lease_s, self.max_batch, self.idle_sleep_s, self.relist_s = lease_s, max_batch, idle_sleep_s, relist_s
        self.entity_buckets = entity_buckets
        self._buckets: dict[int, dict[str, dict]] = {}
        self.acquire_timeout_s = lease_s + 10.0 if acquire_timeout_s is None else acquire_timeout_s
        self.clock = clock
        self._shards: dict[str, _Shard] = {}
        self._processed = 0  # the stored count this process last loaded or wrote: what a commit expects
        self._renewed = self._listed = 0.0
        self._turn = 0
        self._outbox_left = False  # a forward failed: the outbox holds items to forward after the next commit

    # -- keys --------------------------------------------------------------------------------
    def _pk(self, kind: str) -> str:
        return f"{self.consumer}#{kind}"

    # -- start: table, shards, leases, state -------------------------------------------------
    def start(self) -> Checkpoint:
        ensure_table(self.dynamodb, self.table)
        self._shards = {}
        self._list_shards()
        self._acquire([s for s in self._shards.values()])
        item = self.dynamodb.get_item(TableName=self.table, Key=_key(self._pk("state"), "checkpoint"),
                                      ConsistentRead=True).get("Item")
        self._processed = int(item["processed"]["N"]) if item else 0
        windows = json.loads(item["windows"]["S"]) if item and "windows" in item else None
        self._load_buckets()
        self._forward_outbox()
        position = {s.shard_id: s.stored for s in self._shards.values() if s.stored is not None}
        return Checkpoint(json.dumps(position, sort_keys=True) if position else None, self._processed, windows)

    def _list_shards(self) -> list[_Shard]:
        """Read the stream's shards; returns the ones not seen before."""
        new = []
        for s in list_shards(self.kinesis, self.stream):
            known = self._shards.get(s.shard_id)
            if known is not None:
                known.closed = s.closed
                continue
            self._shards[s.shard_id] = s
            new.append(s)
        self._listed = time.monotonic()
        return new

    def _acquire(self, shards: list[_Shard]) -> None:
        """Lease every shard to this instance: free, expired, or already this instance's (a restarted
        instance fences its predecessor at once). Waits up to `acquire_timeout_s` for the others."""
        deadline = time.monotonic() + self.acquire_timeout_s
        pending = list(shards)
        while pending:
            now = self.clock()
            held = []
            for shard in pending:
                try:
                    item = self.dynamodb.update_item(
                        TableName=self.table, Key=_key(self._pk("shard"), shard.shard_id),
                        UpdateExpression="SET lease_owner = :me, lease_until = :until ADD lease_token :one",
                        ConditionExpression="attribute_not_exists(lease_owner) OR lease_owner = :me OR lease_until < :now",
                        ExpressionAttributeValues={":me": _s(self.instance_id), ":until": _n(now + self.lease_s),
                                                   ":one": _n(1), ":now": _n(now)},
                        ReturnValues="ALL_NEW")["Attributes"]
                except self.dynamodb.exceptions.ConditionalCheckFailedException:
                    held.append(shard)
                    continue
                shard.token = int(item["lease_token"]["N"])
                shard.stored = shard.read = item["seq"]["S"] if "seq" in item else None
                shard.iterator, shard.ended = None, False
            pending = held
            if pending and time.monotonic() >= deadline:
                item = self.dynamodb.get_item(TableName=self.table, Key=_key(self._pk("shard"), pending[0].shard_id),
                                              ConsistentRead=True).get("Item", {})
                owner = item.get("lease_owner", {}).get("S", "?")
                raise LeaseHeldError(
                    f"consumer {self.consumer!r}: shard {pending[0].shard_id} of {self.stream!r} is leased to instance "
                    f"{owner!r}, which still renews it. Fix: stop that scorer, give this one another --consumer, or "
                    f"start it with --instance-id {owner} if that instance is gone.")
            if pending:
                time.sleep(min(1.0, self.lease_s / 4))
        self._renewed = time.monotonic()

    def _forward_outbox(self) -> None:
        """Forward what a crash left in the outbox (committed, not yet put on its streams)."""
        for item in self._query(self._pk("outbox")):
            self._forward(item["sk"]["S"], json.loads(item["data"]["S"]))

    def _forward(self, sk: str, data: dict) -> None:
        if self.alert_stream and data.get("alerts"):
            publish(self.kinesis, self.alert_stream, [a.encode() for a in data["alerts"]],
                    lambda _v, i: alert_key(self.consumer, sk, i))
        if self.dead_letter_stream and data.get("dead"):
            offsets = [json.loads(d)["offset"] for d in data["dead"]]
            publish(self.kinesis, self.dead_letter_stream, [d.encode() for d in data["dead"]],
                    lambda _v, i: offsets[i])
        self.dynamodb.delete_item(TableName=self.table, Key=_key(self._pk("outbox"), sk))

    def _query(self, pk: str) -> Iterator[dict]:
        kwargs = {"TableName": self.table, "KeyConditionExpression": "pk = :pk",
                  "ExpressionAttributeValues": {":pk": _s(pk)}, "ConsistentRead": True}
        while True:
            page = self.dynamodb.query(**kwargs)
            yield from page["Items"]
            if "LastEvaluatedKey" not in page:
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    # -- source ------------------------------------------------------------------------------
    def batch_limit(self) -> int:
        return self.max_batch

    def _readable(self) -> list[_Shard]:
        """Shards to read now: not ended, and every parent this stream still lists has ended."""
        ready = [s for s in self._shards.values() if not s.ended and all(
            self._shards[p].ended for p in s.parents if p in self._shards)]
        if not ready:
            return ready
        self._turn = (self._turn + 1) % len(ready)
        return ready[self._turn:] + ready[:self._turn]

    def poll(self, max_records: int, timeout_s: float) -> list[Record]:
        limit = max(1, min(max_records, self.batch_limit()))
        deadline = time.monotonic() + timeout_s
        while True:
            self._renew_if_due()
            records: list[Record] = []
            ended = sum(s.ended for s in self._shards.values())
            for shard in self._readable():
                if len(records) >= limit:
                    break
                records.extend(self._read(shard, limit - len(records)))
            if records:
                return records
            if sum(s.ended for s in self._shards.values()) > ended:
                continue  # a parent just ended: its children are readable now
            if time.monotonic() - self._listed >= self.relist_s:
                self._discover()  # learn of a reshard (a closed parent, its children)
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                return records
            time.sleep(min(self.idle_sleep_s, left))

    def _read(self, shard: _Shard, limit: int) -> list[Record]:
        if shard.iterator is None:
            request = {"StreamName": self.stream, "ShardId": shard.shard_id}
            if shard.read is None:
                request["ShardIteratorType"] = "TRIM_HORIZON"
            else:
                request.update(ShardIteratorType="AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=shard.read)
            try:
                shard.iterator = self.kinesis.get_shard_iterator(**request)["ShardIterator"]
            except self.kinesis.exceptions.InvalidArgumentException:
                if shard.read is None:
                    raise
                # The checkpoint's record is past the stream's retention: what followed it is gone too.
                log.error("shard %s: sequence number %s is no longer in %s (retention passed); reading from the "
                          "oldest record kept", shard.shard_id, shard.read, self.stream)
                shard.iterator = self.kinesis.get_shard_iterator(StreamName=self.stream, ShardId=shard.shard_id,
                                                                 ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        try:
            answer = self.kinesis.get_records(ShardIterator=shard.iterator, Limit=limit)
        except self.kinesis.exceptions.ExpiredIteratorException:
            shard.iterator = None  # asked again from the last record read, on the next sweep
            return []
        except self.kinesis.exceptions.ProvisionedThroughputExceededException:
            return []
        raw = answer.get("Records", [])
        shard.iterator = answer.get("NextShardIterator")
        if raw:
            shard.read = raw[-1]["SequenceNumber"]
        if shard.iterator is None or (shard.closed and not raw and answer.get("MillisBehindLatest", 1) == 0):
            shard.ended = True
            log.info("shard %s of %s read to its end", shard.shard_id, self.stream)
            self._discover()
        return [Record(f"{shard.shard_id}:{r['SequenceNumber']}", r["Data"],
                       r["ApproximateArrivalTimestamp"].timestamp() if r.get("ApproximateArrivalTimestamp") else None)
                for r in raw]

    def _discover(self) -> None:
        new = self._list_shards()
        if new:
            log.info("new shards of %s: %s", self.stream, [s.shard_id for s in new])
            self._acquire(new)

    def _renew_if_due(self) -> None:
        if time.monotonic() - self._renewed < self.lease_s / 3:
            return
        until = self.clock() + self.lease_s
        for shard in self._shards.values():
            if shard.ended and shard.read == shard.stored:
                continue
            try:
                self.dynamodb.update_item(
                    TableName=self.table, Key=_key(self._pk("shard"), shard.shard_id),
                    UpdateExpression="SET lease_until = :until",
                    ConditionExpression="lease_owner = :me AND lease_token = :token",
                    ExpressionAttributeValues={":until": _n(until), ":me": _s(self.instance_id),
                                               ":token": _n(shard.token)})
            except self.dynamodb.exceptions.ConditionalCheckFailedException:
                log.warning("lost the lease of shard %s: the next commit is fenced", shard.shard_id)
        self._renewed = time.monotonic()

    def position(self, previous: str | None, records: list[Record]) -> str:
        """Each shard's last sequence number after `records`, which follow the stored `previous`."""
        offsets = _offsets(previous)
        for r in records:
            shard, seq = r.offset.rsplit(":", 1)
            if shard not in offsets or _seq_int(seq) > _seq_int(offsets[shard]):
                offsets[shard] = seq
        return json.dumps(offsets, sort_keys=True)

    def lag(self) -> int | None:
        return None  # Kinesis reports time behind (MillisBehindLatest), not a record count

    # -- sink --------------------------------------------------------------------------------
    def _bucket(self, entity: str) -> int:
        return zlib.crc32(entity.encode()) % self.entity_buckets

    def _load_buckets(self) -> None:
        keys = [_key(self._pk(f"entities#{b:03d}"), "-") for b in range(self.entity_buckets)]
        self._buckets = {b: {} for b in range(self.entity_buckets)}
        request = {self.table: {"Keys": keys, "ConsistentRead": True}}
        while request:
            answer = self.dynamodb.batch_get_item(RequestItems=request)
            for item in answer["Responses"].get(self.table, []):
                self._buckets[int(item["pk"]["S"].rsplit("#", 1)[1])] = json.loads(zlib.decompress(item["states"]["B"]))
            request = answer.get("UnprocessedKeys") or None

    def entities(self, ids: list[str]) -> dict[str, dict]:
        found = {}
        for entity in ids:
            state = self._buckets[self._bucket(entity)].get(entity)
            if state is not None:
                found[entity] = state
        return found

    def commit(self, batch: CommitBatch) -> None:
        cp = batch.checkpoint
        offsets = _offsets(cp.position)
        sk = f"{self._processed:015d}"
        until = self.clock() + self.lease_s
        items: list[dict] = []
        for shard in self._shards.values():
            moved = offsets.get(shard.shard_id) not in (None, shard.stored)
            if shard.ended and not moved:
                continue
            values = {":until": _n(until), ":me": _s(self.instance_id), ":token": _n(shard.token)}
            expression = "SET lease_until = :until"
            if moved:
                expression += ", #seq = :seq"
                values[":seq"] = _s(offsets[shard.shard_id])
            names = {"#seq": "seq"} if moved else {}
            items.append({"Update": {"TableName": self.table, "Key": _key(self._pk("shard"), shard.shard_id),
                                     "UpdateExpression": expression, "ExpressionAttributeValues": values,
                                     **({"ExpressionAttributeNames": names} if names else {}),
                                     "ConditionExpression": "lease_owner = :me AND lease_token = :token"}})
        state = {**_key(self._pk("state"), "checkpoint"), "processed": _n(cp.processed),
                 "windows": _s(json.dumps(cp.windows))}
        items.append({"Put": {"TableName": self.table, "Item": state,
                              "ConditionExpression": "attribute_not_exists(pk) OR #processed = :before",
                              "ExpressionAttributeNames": {"#processed": "processed"},
                              "ExpressionAttributeValues": {":before": _n(self._processed)}}})
        dead = [_dead_json(d) for d in batch.dead_letters]
        encode = getattr(batch.results, "json_lines", None)  # a column batch encodes itself at once
        results = [line.decode() for line in encode()] if callable(encode) else [r.to_json() for r in batch.results]
        pages = {"results": results, "dead": dead,
                 "windows": [json.dumps(r) for r in {window_key(r): r for r in batch.window_records}.values()]}
        for kind, lines in pages.items():
            for i, chunk in enumerate(_chunks(lines)):
                items.append(self._page(kind, f"{sk}.{i:03d}", {"lines": _s("\n".join(chunk)), "n": _n(len(chunk))}))
        outbox = {"alerts": [json.dumps(a) for a in batch.alerts] if self.alert_stream else [],
                  "dead": dead if self.dead_letter_stream else []}
        if outbox["alerts"] or outbox["dead"]:
            items.append(self._page("outbox", sk, {"data": _s(json.dumps(outbox))}))
        touched: dict[int, dict[str, dict]] = {}
        for entity, entity_state in batch.entities.items():
            b = self._bucket(entity)
            touched.setdefault(b, dict(self._buckets[b]))[entity] = entity_state
        size = 0
        for b, states in touched.items():
            packed = zlib.compress(json.dumps(states, separators=(",", ":")).encode(), 6)
            size += len(packed)
            if len(packed) > BUCKET_BYTES:
                raise FlightdeckError(f"entity bucket {b} of consumer {self.consumer!r} would hold {len(packed)} bytes "
                                      f"compressed, over DynamoDB's item limit. Fix: restart with more --entity-buckets "
                                      f"(now {self.entity_buckets}, at most {MAX_BUCKETS}).")
            items.append({"Put": {"TableName": self.table, "Item": {**_key(self._pk(f"entities#{b:03d}"), "-"),
                                                                    "states": {"B": packed}}}})
        if size > TRANSACTION_BYTES:
            raise FlightdeckError(f"a batch touches {size} bytes of entity state, over DynamoDB's 4 MB a transaction. "
                                  "Fix: lower the batch size (--batch-size).")
        if len(items) > TRANSACTION_ITEMS:
            raise FlightdeckError(f"a batch needs {len(items)} items, over DynamoDB's {TRANSACTION_ITEMS} a "
                                  "transaction. Fix: lower --entity-buckets or the batch size.")
        self._transact(items)
        self._processed = cp.processed
        self._buckets.update(touched)
        for shard_id, seq in offsets.items():
            if shard_id in self._shards:
                self._shards[shard_id].stored = seq
        self._renewed = time.monotonic()
        if outbox["alerts"] or outbox["dead"] or self._outbox_left:
            try:
                if self._outbox_left:
                    self._forward_outbox()
                elif outbox["alerts"] or outbox["dead"]:
                    self._forward(sk, outbox)
                self._outbox_left = False
            except Exception:  # noqa: BLE001 - committed already: forwarded after a later commit, or on start
                self._outbox_left = True
                log.warning("could not forward alerts / dead letters to Kinesis; they stay in the outbox",
                            exc_info=True)

    def _page(self, kind: str, sk: str, attributes: dict) -> dict:
        return {"Put": {"TableName": self.table, "Item": {**_key(self._pk(kind), sk), **attributes},
                        "ConditionExpression": "attribute_not_exists(pk)"}}

    def _transact(self, items: list[dict]) -> None:
        from botocore.exceptions import ClientError

        for attempt in range(5):
            try:
                self.dynamodb.transact_write_items(TransactItems=items)
                return
            except ClientError as exc:
                error = exc.response.get("Error", {})
                if error.get("Code") != "TransactionCanceledException":
                    raise  # the request itself is wrong (or the service is): not the batch's content
                reasons = [r.get("Code", "None") for r in exc.response.get("CancellationReasons", [])]
                if not reasons:  # some servers leave them out: read them from the message
                    reasons = re.findall(r"(ConditionalCheckFailed|TransactionConflict|ValidationError)",
                                         error.get("Message", ""))
                if "ConditionalCheckFailed" in reasons:
                    raise FencedError(self.consumer) from None
                if "ValidationError" in reasons:  # pages are bounded: the state item or an entity bucket is full
                    raise FlightdeckError(f"DynamoDB refused the batch ({error.get('Message')}): an item is over "
                                          "400 KB, an entity bucket or the windows' state. Fix: restart with more "
                                          "--entity-buckets, or fewer or shorter windows.") from None
                if "TransactionConflict" not in reasons or attempt == 4:
                    raise
                time.sleep(0.05 * 2 ** attempt)

    def close(self) -> None:
        """Give the leases back, so another instance need not wait for them to expire."""
        for shard in self._shards.values():
            try:
                self.dynamodb.update_item(
                    TableName=self.table, Key=_key(self._pk("shard"), shard.shard_id),
                    UpdateExpression="SET lease_until = :zero",
                    ConditionExpression="lease_owner = :me AND lease_token = :token",
                    ExpressionAttributeValues={":zero": _n(0), ":me": _s(self.instance_id),
                                               ":token": _n(shard.token)})
            except Exception:  # noqa: BLE001 - a lease that is gone already needs no release
                log.debug("lease of %s not released", shard.shard_id, exc_info=True)


def _dead_json(dead) -> str:
    value = dead.text
    if len(value) > DEAD_VALUE_CHARS:
        value = f"{value[:DEAD_VALUE_CHARS]}... ({len(value)} characters, cut)"
    return json.dumps({"offset": dead.offset, "reason": dead.storable_reason[:DEAD_VALUE_CHARS], "value": value},
                      separators=(",", ":"))


def _chunks(lines: list[str]) -> Iterator[list[str]]:
    chunk: list[str] = []
    size = 0
    for line in lines:
        if chunk and size + len(line) + 1 > PAGE_BYTES:
            yield chunk
            chunk, size = [], 0
        chunk.append(line)
        size += len(line) + 1
    if chunk:
        yield chunk


class DynamoReader:
    """What a Kinesis scorer committed: results, dead letters, window records, its checkpoint."""

    def __init__(self, dynamodb, table: str, consumer: str) -> None:
        self.dynamodb, self.table, self.consumer = dynamodb, table, consumer

    def _items(self, kind: str, newest_first: bool = False, upto: str | None = None) -> Iterator[dict]:
        """The page items of `kind` in commit order (or newest first), up to sort key `upto`."""
        kwargs = {"TableName": self.table, "KeyConditionExpression": "pk = :pk",
                  "ExpressionAttributeValues": {":pk": _s(f"{self.consumer}#{kind}")}, "ConsistentRead": True,
                  "ScanIndexForward": not newest_first}
        if upto is not None:
            kwargs["KeyConditionExpression"] += " AND sk <= :upto"
            kwargs["ExpressionAttributeValues"][":upto"] = _s(upto)
        while True:
            page = self.dynamodb.query(**kwargs)
            yield from page["Items"]
            if "LastEvaluatedKey" not in page:
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def _pages(self, kind: str) -> Iterator[str]:
        for item in self._items(kind):
            yield from item["lines"]["S"].split("\n")

    def results(self) -> list[dict]:
        """Every committed result, in commit order."""
        return [json.loads(line) for line in self._pages("results")]

    def results_newest_first(self, upto_commit: str | None = None) -> Iterator[list[dict]]:
        """Committed results one page at a time, newest first (within a page too), from the pages of
        commit `upto_commit` (an alert's, see `alert_commit`; None: the newest) back to the first."""
        upto = None if upto_commit is None else f"{upto_commit}.999"  # a commit's pages are <commit>.000, .001, ...
        for item in self._items("results", newest_first=True, upto=upto):
            yield [json.loads(line) for line in reversed(item["lines"]["S"].split("\n"))]

    def dead_letters(self) -> list[dict]:
        """Every committed dead letter (`offset`, `reason`, `value`), in commit order."""
        return [json.loads(line) for line in self._pages("dead")]

    def window_records(self) -> list[dict]:
        """The newest record of every window."""
        return list({window_key(r): r for r in map(json.loads, self._pages("windows"))}.values())

    def processed(self) -> int:
        """Records committed so far (results and dead letters)."""
        item = self.dynamodb.get_item(TableName=self.table, Key=_key(f"{self.consumer}#state", "checkpoint"),
                                      ConsistentRead=True, ProjectionExpression="#p",
                                      ExpressionAttributeNames={"#p": "processed"}).get("Item")
        return int(item["processed"]["N"]) if item else 0

    def checkpoint(self) -> dict:
        """`processed`, each shard's `seq` and lease."""
        item = self.dynamodb.get_item(TableName=self.table, Key=_key(f"{self.consumer}#state", "checkpoint"),
                                      ConsistentRead=True).get("Item", {})
        shards = {}
        kwargs = {"TableName": self.table, "KeyConditionExpression": "pk = :pk",
                  "ExpressionAttributeValues": {":pk": _s(f"{self.consumer}#shard")}, "ConsistentRead": True}
        for s in self.dynamodb.query(**kwargs)["Items"]:
            shards[s["sk"]["S"]] = {k: next(iter(v.values())) for k, v in s.items() if k not in ("pk", "sk")}
        return {"processed": int(item["processed"]["N"]) if item else 0, "shards": shards}


def read_record(kinesis, stream: str, record_id: str) -> tuple[bytes, str]:
    """(data, partition key) of one record of `stream`, named `<shard id>:<sequence number>`."""
    shard_id, _, seq = record_id.rpartition(":")
    if not shard_id or not seq.isdigit():
        raise ConfigError("record id", repr(record_id), "use <shard id>:<sequence number>, "
                          "e.g. shardId-000000000000:49660000000000000000000000000000000000000000000000000002")
    try:
        iterator = kinesis.get_shard_iterator(StreamName=stream, ShardId=shard_id, StartingSequenceNumber=seq,
                                              ShardIteratorType="AT_SEQUENCE_NUMBER")["ShardIterator"]
        records = kinesis.get_records(ShardIterator=iterator, Limit=1)["Records"]
    except (kinesis.exceptions.ResourceNotFoundException, kinesis.exceptions.InvalidArgumentException):
        records = []
    if not records or records[0]["SequenceNumber"] != seq:
        raise ConfigError("record id", f"{stream} has no record {record_id!r} (any more)",
                          "name a record the stream still keeps (its retention is 24 h by default)")
    return records[0]["Data"], records[0]["PartitionKey"]


def read_range(kinesis, stream: str, start: str = "-", end: str = "+", page: int = 1000) -> list[Record]:
    """Every record of `stream` that arrived between `start` and `end` (epoch milliseconds, inclusive;
    '-' the oldest, '+' the newest), parents before children, in arrival order within a shard."""
    def bound(value: str, name: str) -> float | None:
        if value in ("-", "+"):
            return None
        try:
            return int(value) / 1000
        except ValueError:
            raise ConfigError(name, value, "use epoch milliseconds, '-' (oldest) or '+' (newest)") from None

    first, last = bound(start, "start"), bound(end, "end")
    shards = {s.shard_id: s for s in list_shards(kinesis, stream)}
    out: list[Record] = []
    done: set[str] = set()
    while len(done) < len(shards):
        ready = [s for s in shards.values() if s.shard_id not in done and all(
            p in done for p in s.parents if p in shards)]
        for shard in ready:
            out.extend(_read_shard_range(kinesis, stream, shard.shard_id, first, last, page))
            done.add(shard.shard_id)
    return out


def _read_shard_range(kinesis, stream: str, shard_id: str, first: float | None, last: float | None,
                      page: int) -> Iterator[Record]:
    from datetime import UTC, datetime

    request = {"StreamName": stream, "ShardId": shard_id, "ShardIteratorType": "TRIM_HORIZON"}
    if first is not None:
        request.update(ShardIteratorType="AT_TIMESTAMP", Timestamp=datetime.fromtimestamp(first, UTC))
    iterator = kinesis.get_shard_iterator(**request)["ShardIterator"]
    while iterator:
        answer = kinesis.get_records(ShardIterator=iterator, Limit=page)
        raw = answer.get("Records", [])
        for r in raw:
            ts = r["ApproximateArrivalTimestamp"].timestamp()
            if last is not None and ts > last:
                return
            if first is None or ts >= first:
                yield Record(f"{shard_id}:{r['SequenceNumber']}", r["Data"], ts)
        iterator = answer.get("NextShardIterator")
        if not raw and answer.get("MillisBehindLatest", 0) == 0:
            return  # caught up (an open shard) or read to its end (a closed one)
