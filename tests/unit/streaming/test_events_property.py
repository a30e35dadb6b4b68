"""Property tests of event parsing: whatever bytes arrive, `parse_event` returns an event or raises
InvalidEventError with a dead-letter reason (never another exception), and valid events keep their fields."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flightdeck.data.schema import (
    CATEGORICAL_FEATURES,
    CATEGORY_VALUES,
    ENTITY_ID,
    EVENT_TIME,
    NUMERIC_RANGES,
)
from flightdeck.streaming.events import EVENT_ID, InvalidEventError, Record, parse_event

SETTINGS = settings(derandomize=True, max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

# Text over every code point, lone surrogates and NUL included (JSON escapes them as \ud800, \u0000).
ANY_TEXT = st.lists(st.characters(exclude_categories=()) | st.sampled_from(["\x00", "\ud800", "\udfff"]),
                    max_size=20).map("".join)  # st.text leaves out lone surrogates
# Text a producer may legitimately send: valid Unicode without NUL.
CLEAN_TEXT = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), min_size=1, max_size=20)
SCALARS = (st.none() | st.booleans() | st.integers(min_value=-(10 ** 400), max_value=10 ** 400)
           | st.floats(allow_nan=True, allow_infinity=True) | ANY_TEXT)
ANY_JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                        | st.dictionaries(ANY_TEXT, inner, max_size=4), max_leaves=20)


def _dumps(value) -> bytes:
    """JSON as a careless producer writes it: NaN and Infinity included, surrogates escaped."""
    return json.dumps(value, allow_nan=True).encode()


def _outcome(value: bytes):
    """The event, or the dead-letter reason; any other exception fails the test."""
    try:
        return parse_event(Record("1-0", value))
    except InvalidEventError as exc:
        reason = str(exc)
        assert "Fix:" in reason and len(reason) < 2000, reason  # a bounded reason that says what to do
        return reason


@st.composite
def valid_events(draw) -> dict:
    body = {name: draw(st.floats(low, high) | st.integers(int(math.ceil(low)), int(high)))
            for name, (low, high) in NUMERIC_RANGES.items()}
    body.update({name: draw(st.sampled_from(CATEGORY_VALUES[name])) for name in CATEGORICAL_FEATURES})
    body[ENTITY_ID] = draw(CLEAN_TEXT)
    moment = draw(st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2100, 1, 1),
                               timezones=st.just(UTC)))
    body[EVENT_TIME] = draw(st.sampled_from([moment.isoformat(), moment.timestamp()]))
    event_id = draw(st.none() | CLEAN_TEXT)
    if event_id is not None:
        body[EVENT_ID] = event_id
    return body


@SETTINGS
@given(st.binary(max_size=300))
def test_arbitrary_bytes_parse_or_become_a_dead_letter(value):
    outcome = _outcome(value)
    assert isinstance(outcome, str) or outcome.entity_id is not None


@SETTINGS
@given(ANY_JSON)
def test_arbitrary_json_parses_or_becomes_a_dead_letter(value):
    outcome = _outcome(_dumps(value))
    if not isinstance(value, dict):
        assert outcome == "not a JSON object. Fix: publish one JSON object per event."


@SETTINGS
@given(st.integers(min_value=1, max_value=200_000), st.sampled_from([b"[", b'{"a":']))
def test_deep_nesting_becomes_a_dead_letter(depth, opener):
    closer = b"]" if opener == b"[" else b"}"
    assert isinstance(_outcome(opener * depth + b"1" + closer * depth), str)


@SETTINGS
@given(valid_events())
def test_valid_events_keep_their_fields(body):
    event = parse_event(Record("7-0", _dumps(body)))
    assert event.offset == "7-0"
    assert event.entity_id == body[ENTITY_ID]
    assert event.event_id == body.get(EVENT_ID, "7-0")
    assert event.features == {name: body[name] for name in (*NUMERIC_RANGES, *CATEGORICAL_FEATURES)}
    sent = body[EVENT_TIME]
    expected = sent if isinstance(sent, float) else datetime.fromisoformat(sent).timestamp()
    assert event.event_time == expected


@SETTINGS
@given(valid_events(), st.data())
def test_one_hostile_field_in_a_valid_event_is_handled(body, data):
    """A valid event with one field removed or replaced by any JSON value: parsed, or dead-lettered
    with a reason that names that field."""
    field = data.draw(st.sampled_from(sorted(body)))
    if data.draw(st.booleans()):
        del body[field]
    else:
        body[field] = data.draw(ANY_JSON)
    outcome = _outcome(_dumps(body))
    if isinstance(outcome, str):
        assert repr(field) in outcome
    else:
        value = body.get(field)
        if field in NUMERIC_RANGES:
            assert type(value) in (int, float) and outcome.features[field] == float(value)
        elif field in (*CATEGORICAL_FEATURES, ENTITY_ID, EVENT_ID):
            text = {**outcome.features, ENTITY_ID: outcome.entity_id, EVENT_ID: outcome.event_id}[field]
            assert "\x00" not in text
            text.encode("utf-8")  # no lone surrogate: it could not be routed, keyed in Redis or stored


@SETTINGS
@given(valid_events(), st.sampled_from([ENTITY_ID, EVENT_ID, *CATEGORICAL_FEATURES]), ANY_TEXT)
def test_text_fields_keep_only_text_that_can_be_routed_keyed_and_stored(body, field, text):
    """NUL and lone surrogates (\\ud800 escapes) are dead-lettered; any other text is kept as sent."""
    body[field] = text
    outcome = _outcome(_dumps(body))
    if isinstance(outcome, str):
        assert repr(field) in outcome
        assert text == "" or "\x00" in text or any("\ud800" <= c <= "\udfff" for c in text)
    else:
        kept = {**outcome.features, ENTITY_ID: outcome.entity_id, EVENT_ID: outcome.event_id}[field]
        assert kept == json.loads(_dumps(text))  # as sent (a \ud83d\ude00 escape pair decodes to one character)
        kept.encode("utf-8")  # valid Unicode without NUL
        assert "\x00" not in kept
