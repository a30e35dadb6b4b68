"""Feature events on the wire: decoding, validation and the records the scorer writes.

An event is one JSON object: the entity id (`customer_id`), the event time (`event_time`,
ISO-8601 or epoch seconds), an optional `event_id`, and every model feature at top level
(flightdeck.data.schema). Validation is per event, so one bad event is dead-lettered with
its reason while the rest of its batch is scored.
"""

from __future__ import annotations

import json
import math
import reprlib
from dataclasses import dataclass
from datetime import UTC, datetime

from flightdeck.data.schema import CATEGORICAL_FEATURES, ENTITY_ID, EVENT_TIME, NUMERIC_FEATURES
from flightdeck.errors import FlightdeckError

EVENT_ID = "event_id"

_shown = reprlib.Repr()  # a value in a reason: short, never huge
_shown.maxstring = _shown.maxother = 60
_shown.maxlevel = 2
_show = _shown.repr


class InvalidEventError(FlightdeckError):
    """An event cannot be scored; the message is the dead-letter reason."""


@dataclass(frozen=True)
class Record:
    """One message as a broker delivered it: where it sits (`offset`) and its raw bytes."""

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


@dataclass(frozen=True)
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
        return json.dumps(self.__dict__, separators=(",", ":"))


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
