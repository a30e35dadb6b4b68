"""Feature events on the wire: decoding, validation and the records the scorer writes.

An event is one JSON object: the entity id (`customer_id`), the event time (`event_time`,
ISO-8601 or epoch seconds), an optional `event_id`, and every model feature at top level
(flightdeck.data.schema). Validation is per event, so one bad event is dead-lettered with
its reason while the rest of its batch is scored.

`parse_batch` is the scorer's path: it decodes a whole batch with orjson and checks it column by
column, and hands every record it cannot vouch for cheaply (not a flat valid object, a wrong
type, an escaped NUL, an odd event id) to `parse_event`, which decides and words the reason. So
both paths accept the same events with the same values, and the reasons are `parse_event`'s.
"""

from __future__ import annotations

import json
import math
import reprlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from operator import itemgetter
from typing import NamedTuple

import numpy as np
import orjson

from flightdeck.data.schema import (
    CATEGORICAL_FEATURES,
    ENTITY_ID,
    EVENT_TIME,
    FEATURES,
    NUMERIC_FEATURES,
)
from flightdeck.errors import FlightdeckError

EVENT_ID = "event_id"

_shown = reprlib.Repr()  # a value in a reason: short, never huge
_shown.maxstring = _shown.maxother = 60
_shown.maxlevel = 2
_show = _shown.repr


class InvalidEventError(FlightdeckError):
    """An event cannot be scored; the message is the dead-letter reason."""


class Record(NamedTuple):
    """One message as a broker delivered it: where it sits (`offset`) and its raw bytes.

    A named tuple rather than a dataclass: a source makes one per message, and a tuple is made
    in half the time."""

    offset: str
    value: bytes
    timestamp: float | None = None  # when the broker appended it (epoch seconds), if known


@dataclass(frozen=True)
class Event:
    """A validated feature event."""

    offset: str
    event_id: str
    entity_id: str
    event_time: float  # epoch seconds, UTC
    features: dict


@dataclass
class EventBatch:
    """The valid events of a batch, column by column, in input order.

    Numeric features are float64 arrays, categorical ones lists of str: what the model's feeds,
    the feature buckets and the windows take without a Python object per event and feature."""

    offsets: list[str] = field(default_factory=list)
    event_ids: list[str] = field(default_factory=list)
    entity_ids: list[str] = field(default_factory=list)
    event_times: list[float] = field(default_factory=list)
    columns: dict[str, np.ndarray | list[str]] = field(
        default_factory=lambda: {name: np.empty(0) for name in NUMERIC_FEATURES} | {
            name: [] for name in CATEGORICAL_FEATURES})

    def __len__(self) -> int:
        return len(self.offsets)

    def features(self, i: int) -> dict:
        """Event `i`'s features as `parse_event` gives them."""
        return {name: (float(self.columns[name][i]) if name in _NUMERIC else self.columns[name][i])
                for name in FEATURES}

    def event(self, i: int) -> Event:
        return Event(self.offsets[i], self.event_ids[i], self.entity_ids[i], self.event_times[i], self.features(i))

    def take(self, positions: list[int]) -> EventBatch:
        """The events at `positions`, in that order."""
        index = np.asarray(positions, dtype=np.intp)
        return EventBatch([self.offsets[i] for i in positions], [self.event_ids[i] for i in positions],
                          [self.entity_ids[i] for i in positions], [self.event_times[i] for i in positions],
                          {name: (self.columns[name][index] if name in _NUMERIC
                                  else [self.columns[name][i] for i in positions]) for name in FEATURES})

    @classmethod
    def of(cls, events: list[Event]) -> EventBatch:
        """A batch of already parsed events."""
        return cls([e.offset for e in events], [e.event_id for e in events], [e.entity_id for e in events],
                   [e.event_time for e in events],
                   {name: (np.array([e.features[name] for e in events], dtype=np.float64) if name in _NUMERIC
                           else [e.features[name] for e in events]) for name in FEATURES})


_NUMERIC = frozenset(NUMERIC_FEATURES)


@dataclass(frozen=True, slots=True)
class ScoredEvent:
    """One result: which event, which model version scored it, and the score."""

    offset: str
    event_id: str
    entity_id: str
    event_time: float
    score: float
    label: int
    model_version: str
    variant: str
    entity_events: int  # the entity's event count including this one (per-entity state)
    entity_mean_score: float  # rolling mean of the entity's last scores (per-entity state)

    def to_json(self) -> str:
        return self.to_bytes().decode()

    def to_bytes(self) -> bytes:
        """The result as compact JSON (fields in declaration order)."""
        return orjson.dumps(self)


class ScoredBatch(Sequence):
    """A batch's results, column by column: a sequence of ScoredEvent made one by one only when a
    sink asks for them; `json_lines` encodes them all without that step."""

    _KEYS = ("offset", "event_id", "entity_id", "event_time", "score", "label", "model_version", "variant",
             "entity_events", "entity_mean_score")

    def __init__(self, offsets: list[str], event_ids: list[str], entity_ids: list[str], event_times: list[float],
                 scores: list[float], labels: list[int], versions: list[str], variants: list[str],
                 entity_events: list[int], entity_means: list[float]) -> None:
        self.columns = (offsets, event_ids, entity_ids, event_times, scores, labels, versions, variants,
                        entity_events, entity_means)

    def __len__(self) -> int:
        return len(self.columns[0])

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [ScoredEvent(*row) for row in zip(*(c[i] for c in self.columns), strict=True)]
        return ScoredEvent(*(c[i] for c in self.columns))

    def __iter__(self):
        return (ScoredEvent(*row) for row in zip(*self.columns, strict=True))

    def __add__(self, other):
        return [*self, *other]

    def __radd__(self, other):
        return [*other, *self]

    def __eq__(self, other):
        return isinstance(other, Sequence) and list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]

    def counts(self) -> dict[tuple[str, str], int]:
        """Results per (variant, model version)."""
        counts: dict[tuple[str, str], int] = {}
        for key in zip(self.columns[7], self.columns[6], strict=True):
            counts[key] = counts.get(key, 0) + 1
        return counts

    def json_lines(self) -> list[bytes]:
        """Each result as `ScoredEvent.to_bytes` writes it."""
        dumps = orjson.dumps
        return [dumps({"offset": a, "event_id": b, "entity_id": c, "event_time": d, "score": e, "label": f,
                       "model_version": g, "variant": h, "entity_events": i, "entity_mean_score": j})
                for a, b, c, d, e, f, g, h, i, j in zip(*self.columns, strict=True)]


@dataclass(frozen=True)
class DeadLetter:
    """An event that failed validation, kept with the reason and its raw bytes."""

    offset: str
    reason: str
    value: bytes

    @property
    def text(self) -> str:
        """The raw bytes as storable text: undecodable bytes and NUL (which PostgreSQL text refuses)
        become U+FFFD."""
        return self.value.decode("utf-8", "replace").replace("\x00", "\ufffd")

    @property
    def storable_reason(self) -> str:
        return self.reason.replace("\x00", "\ufffd")

    def to_json(self) -> str:
        return json.dumps({"offset": self.offset, "reason": self.storable_reason, "value": self.text},
                          separators=(",", ":"))


def parse_event(record: Record) -> Event:
    """Decode and validate one record; InvalidEventError names the field and the fix."""
    try:
        body = json.loads(record.value)
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidEventError(f"not JSON ({exc}). Fix: publish one JSON object per event.") from None
    except RecursionError:
        raise InvalidEventError("JSON nested too deeply to decode. Fix: publish one flat JSON object "
                                "per event.") from None
    if not isinstance(body, dict):
        raise InvalidEventError("not a JSON object. Fix: publish one JSON object per event.")
    entity = body.get(ENTITY_ID)
    if not isinstance(entity, str) or not entity:
        raise InvalidEventError(f"field {ENTITY_ID!r} is missing or not a string. Fix: send the entity id.")
    _clean_text(ENTITY_ID, entity)
    features = {}
    for name in NUMERIC_FEATURES:
        value = _finite(body.get(name))
        if value is None:
            raise InvalidEventError(f"field {name!r} must be a finite number, got {_show(body.get(name))}. "
                                    "Fix: send every numeric feature as a number.")
        features[name] = value
    for name in CATEGORICAL_FEATURES:
        value = body.get(name)
        if not isinstance(value, str):
            raise InvalidEventError(f"field {name!r} must be a string, got {_show(value)}. "
                                    "Fix: send the category as text.")
        features[name] = _clean_text(name, value)
    event_id = body.get(EVENT_ID)
    event_id = record.offset if event_id is None else _clean_text(EVENT_ID, str(event_id))
    return Event(offset=record.offset, event_id=event_id, entity_id=entity,
                 event_time=_epoch(body.get(EVENT_TIME)), features=features)


def parse_batch(records: list[Record]) -> tuple[EventBatch, list[DeadLetter]]:
    """The valid events of `records` as columns, and a dead letter (with `parse_event`'s reason)
    for each invalid one, both in input order. Same outcome as `parse_event` on each record."""
    loads, decode_error, fields = orjson.loads, orjson.JSONDecodeError, _FIELDS
    rows: list[tuple] = []
    event_ids: list = []
    fast: list[int] = []  # positions in `records` of the rows in `rows`
    for i, record in enumerate(records):
        value = record.value
        # orjson refuses what json would turn into a reason anyway (bad UTF-8, NaN, 1e400, lone
        # surrogate escapes, deep nesting); an escaped NUL it accepts, so it goes the slow way.
        if b"\\u0000" in value:
            continue
        try:
            body = loads(value)
            rows.append(fields(body))  # every field at once; a missing one: KeyError
        except (decode_error, KeyError, TypeError):
            continue
        event_ids.append(body.get(EVENT_ID) if type(body) is dict else None)
        fast.append(i)
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in range(2 + len(FEATURES))]
    bad, times = _column_faults(columns, event_ids)
    if bad:
        keep = [j for j in range(len(rows)) if j not in bad]
        columns = [[column[j] for j in keep] for column in columns]
        fast, times, event_ids = [fast[j] for j in keep], [times[j] for j in keep], [event_ids[j] for j in keep]
    offsets = [records[i].offset for i in fast]
    batch = EventBatch(offsets, [o if e is None else e for e, o in zip(event_ids, offsets, strict=True)],
                       list(columns[0]), times,
                       {name: (np.array(column, dtype=np.float64) if name in _NUMERIC else list(column))
                        for name, column in zip(FEATURES, columns[2:], strict=True)})
    if len(fast) == len(records):
        return batch, []
    # The records the columns did not vouch for, one by one (rare: malformed, or unusual but valid).
    dead: list[DeadLetter] = []
    slow: list[tuple[int, Event]] = []
    fast_set = set(fast)
    for i, record in enumerate(records):
        if i in fast_set:
            continue
        try:
            slow.append((i, parse_event(record)))
        except InvalidEventError as exc:
            dead.append(DeadLetter(record.offset, str(exc), record.value))
        except Exception as exc:  # noqa: BLE001 - parsing depends on the record's bytes only
            dead.append(DeadLetter(record.offset, f"cannot be parsed ({type(exc).__name__}: {exc}). "
                                                  "Fix: publish one JSON object per event.", record.value))
    if slow:
        merged = EventBatch.of([*(batch.event(j) for j in range(len(batch))), *(e for _, e in slow)])
        order = sorted(range(len(merged)), key=lambda j: fast[j] if j < len(fast) else slow[j - len(fast)][0])
        batch = merged.take(order)
    return batch, dead


_FIELDS = itemgetter(ENTITY_ID, EVENT_TIME, *FEATURES)
_NUMBERS = frozenset((int, float))
_TEXT = frozenset((str,))
_EVENT_ID_TYPES = frozenset((str, type(None)))


def _column_faults(columns: list, event_ids: list) -> tuple[set[int], list[float | None]]:
    """Positions of rows that `parse_event` must look at (a field of an unexpected type, a number
    that is not finite, an empty entity id, an event time that is no ISO-8601 text), and each row's
    event time in epoch seconds (None where it is at fault). `columns`: entity id, event time, then
    the features in `FEATURES` order."""
    bad: set[int] = set()
    times: list[float | None] = []
    entities, event_times, *features = columns
    for name, column in zip(FEATURES, features, strict=True):
        if name in _NUMERIC:
            if set(map(type, column)) <= _NUMBERS:
                try:
                    finite = np.isfinite(np.array(column, dtype=np.float64))
                except OverflowError:  # an integer beyond a float's range
                    finite = np.array([_finite(v) is not None for v in column])
                if finite.all():
                    continue
                bad.update(np.flatnonzero(~finite).tolist())
            else:
                bad.update(j for j, v in enumerate(column) if _finite(v) is None)
        elif not set(map(type, column)) <= _TEXT:
            bad.update(j for j, v in enumerate(column) if type(v) is not str)
    if not set(map(type, entities)) <= _TEXT or "" in entities:
        bad.update(j for j, v in enumerate(entities) if type(v) is not str or not v)
    if not set(map(type, event_ids)) <= _EVENT_ID_TYPES:
        bad.update(j for j, v in enumerate(event_ids) if type(v) not in _EVENT_ID_TYPES)
    parse_time, utc = datetime.fromisoformat, UTC
    for j, t in enumerate(event_times):
        kind = type(t)
        if kind is str:
            try:
                moment = parse_time(t)
                times.append((moment if moment.tzinfo else moment.replace(tzinfo=utc)).timestamp())
                continue
            except (ValueError, OverflowError, OSError):
                pass
        elif kind in _NUMBERS and (number := _finite(t)) is not None:
            times.append(number)
            continue
        times.append(None)
        bad.add(j)
    return bad, times


def _finite(value) -> float | None:
    """`value` as a finite float, or None (not a number, a bool, NaN, infinite, or beyond a float's range)."""
    if type(value) not in (int, float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _clean_text(name: str, value: str) -> str:
    """`value`, unless it holds NUL or a lone surrogate (a JSON escape like \\ud800 that is no character):
    neither can be hashed for routing, used in a Redis key, or stored in PostgreSQL text."""
    if "\x00" in value:
        raise InvalidEventError(f"field {name!r} contains a NUL character. Fix: send text without NUL.")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidEventError(f"field {name!r} contains a lone surrogate escape (\\ud800-\\udfff). "
                                    "Fix: send valid Unicode text.") from None
    return value


def _epoch(value) -> float:
    number = _finite(value)
    if number is not None:
        return number
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
    raise InvalidEventError(f"field {EVENT_TIME!r} must be ISO-8601 or epoch seconds, got {_show(value)}. "
                            "Fix: stamp each event with the time it happened.")


def encode_event(row: dict) -> bytes:
    """One event as bytes (for producers and tests); timestamps become ISO-8601 strings."""
    def default(value):
        if hasattr(value, "isoformat"):
            return value.isoformat()
        if hasattr(value, "item"):
            return value.item()
        raise TypeError(f"cannot encode {type(value).__name__}")
    return json.dumps(row, default=default, separators=(",", ":")).encode()
