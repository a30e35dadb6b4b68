"""The broker interface: a source of records and an atomic sink, joined into one backend.

Exactly-once results come from one rule: a batch's results, dead letters, per-entity state,
window state and the source position it ends at are written in ONE atomic step (a Redis
MULTI/EXEC, a PostgreSQL transaction, a Kafka transaction with the consumer offsets in it,
or a DynamoDB TransactWriteItems with the Kinesis shards' sequence numbers in it). On start the scorer reads that stored position and resumes right after it, so a crash
at any point either kept the whole batch or none of it; the re-read batch is scored again.

Adapters: `redis_streams` (Redis Streams source and sink), `sql` (PostgreSQL / SQLite sink),
`kafka` (confluent-kafka transactions; a source, and a transactional backend) and `kinesis`
(Kinesis shards under DynamoDB leases, committed to DynamoDB; a backend).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from flightdeck.errors import FlightdeckError
from flightdeck.streaming.events import DeadLetter, Record, ScoredEvent


class SinkRejectedError(FlightdeckError):
    """The sink refused a batch because of what is in it (the same batch would fail again).

    The scorer splits the batch to find the record at fault and dead-letters it. Errors that may
    pass on a retry (connection lost, server restarting) are not this error: they stop the
    scorer, which resumes from the stored position."""


class FencedError(FlightdeckError):
    """The stored position is not the one this scorer last read or wrote: another scorer with the
    same consumer name committed in between. Nothing of the batch was written; the scorer re-reads
    from the stored position."""

    def __init__(self, consumer: str) -> None:
        super().__init__(f"consumer {consumer!r}: the stored position moved under this scorer (another "
                         "scorer runs with the same consumer name). Fix: give each scorer its own "
                         "--consumer and input stream; this one re-reads from the stored position.")


@dataclass(frozen=True)
class Checkpoint:
    """What the last committed batch left behind."""

    position: str | None = None  # the source position after the last committed record
    processed: int = 0  # records committed so far (results + dead letters)
    windows: dict | None = None  # Windows.state() of every window definition


@dataclass
class CommitBatch:
    """Everything one batch changes, committed together or not at all."""

    results: list[ScoredEvent]
    dead_letters: list[DeadLetter]
    entities: dict[str, dict]
    window_records: list[dict]
    checkpoint: Checkpoint
    alerts: list[dict] = field(default_factory=list)


class Source(Protocol):
    def seek(self, position: str | None, processed: int = 0) -> None:
        """Continue right after `position` (None: from the beginning); `processed` records so far."""

    def poll(self, max_records: int, timeout_s: float) -> list[Record]:
        """Up to `max_records` records, waiting at most `timeout_s` for the first."""

    def lag(self) -> int | None:
        """Records in the source after the last one polled (None when unknown)."""

    def close(self) -> None: ...


class Sink(Protocol):
    def load(self) -> Checkpoint:
        """The checkpoint of the last committed batch (empty on first start)."""

    def entities(self, ids: list[str]) -> dict[str, dict]:
        """Stored per-entity state of these entities (absent ones are left out)."""

    def commit(self, batch: CommitBatch) -> None:
        """Write the batch atomically; SinkRejectedError when its content is refused, FencedError
        when the stored position is not the one this sink last loaded or wrote."""

    def close(self) -> None: ...


class Backend:
    """A source and a sink; the sink owns the position, the source seeks to it on start."""

    def __init__(self, source: Source, sink: Sink) -> None:
        self.source, self.sink = source, sink

    def start(self) -> Checkpoint:
        checkpoint = self.sink.load()
        self.source.seek(checkpoint.position, checkpoint.processed)
        return checkpoint

    def poll(self, max_records: int, timeout_s: float) -> list[Record]:
        return self.source.poll(max_records, timeout_s)

    def entities(self, ids: list[str]) -> dict[str, dict]:
        return self.sink.entities(ids)

    def commit(self, batch: CommitBatch) -> None:
        self.sink.commit(batch)

    def position(self, previous: str | None, records: list[Record]) -> str:
        """The position to store after `records`, which follow the stored position `previous`:
        the source's own (multi-partition) or the last offset."""
        own = getattr(self.source, "position", None)
        return own(previous, records) if callable(own) else records[-1].offset

    def lag(self) -> int | None:
        return self.source.lag()

    def close(self) -> None:
        self.source.close()
        self.sink.close()
