"""Properties of the CloudEvents decoder, over inputs Hypothesis makes up.

- Whatever comes in (bytes, any JSON value, any attribute values, any headers), decoding
  gives a CloudEvent or raises EventFormatError: no other exception.
- What decodes encodes again and decodes to the same event (structured mode), and goes
  through binary mode without an error.
- Decoding does work in proportion to its input: counted as lines of hybridmesh's Python
  run (deterministic, unlike time), doubling a batch at most doubles the work, and
  lengthening an attribute adds none (the C parsers and regular expressions, which have no
  backtracking patterns, scan it once).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from types import FrameType
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from hybridmesh.events.envelope import (
    BATCH_CONTENT_TYPE,
    STRUCTURED_CONTENT_TYPE,
    CloudEvent,
    EventFormatError,
    from_batch,
    from_http,
)

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=30)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)
ATTRIBUTES = [
    "id",
    "source",
    "specversion",
    "type",
    "subject",
    "time",
    "datacontenttype",
    "dataschema",
    "data",
    "data_base64",
    "partitionkey",
    "traceparent",
]
# Values that are close to valid as well as anything at all.
attribute_values = (
    json_values
    | st.sampled_from(
        [
            "1.0",
            "order.created",
            "a.b",
            "2024-05-01T12:30:15Z",
            "2024-05-01T12:30:15.123456789+01:00",
            "0001-01-01T00:00:00+01:00",
            "application/json",
            "text/plain; charset=utf-8",
            "application/octet-stream",
            "aGVsbG8=",
            "",
        ]
    )
    | st.text(alphabet=st.characters(codec="utf-8"), max_size=300)
    | st.text(max_size=20).map(lambda t: t * 40)
)
VALID = {"specversion": "1.0", "id": "e-1", "source": "/s", "type": "a.b"}
# Mostly valid events with some attributes made up, and anything at all.
events = st.builds(
    lambda changes: {**VALID, **changes},
    st.dictionaries(
        st.sampled_from(ATTRIBUTES) | st.text(max_size=25), attribute_values, max_size=6
    ),
) | st.dictionaries(
    st.sampled_from(ATTRIBUTES) | st.text(max_size=25), attribute_values, max_size=12
)


def _decodes(decode: Callable[[], Any]) -> Any:
    """``decode()``'s result, or None when it raised EventFormatError; anything else fails."""
    try:
        return decode()
    except EventFormatError as error:
        assert error.problems, "an EventFormatError names at least one problem"
        assert len(error.problems) <= 101
        return None


def _round_trips(event: CloudEvent) -> None:
    again = CloudEvent.from_json(event.to_json())
    assert again == event
    assert again.to_json() == event.to_json()
    headers, body = event.to_binary()
    assert isinstance(CloudEvent.from_binary(headers, body), CloudEvent)


@FAST
@given(st.binary(max_size=400))
def test_any_bytes_decode_or_raise_event_format_error(body: bytes) -> None:
    for decode in (CloudEvent.from_json, from_batch):
        _decodes(lambda decode=decode: decode(body))  # type: ignore[misc]
    content_types = [STRUCTURED_CONTENT_TYPE, BATCH_CONTENT_TYPE, "application/json"]
    for content_type in content_types:
        headers = {"Content-Type": content_type, "ce-id": "1", "ce-source": "/s"}
        _decodes(lambda headers=headers: from_http(headers, body))  # type: ignore[misc]


@FAST
@given(json_values)
def test_any_json_value_decodes_or_raises_event_format_error(value: Any) -> None:
    body = json.dumps(value).encode()
    event = _decodes(lambda: CloudEvent.from_json(body))
    if event is not None:
        _round_trips(event)
    _decodes(lambda: from_batch(json.dumps([value, value])))


@FAST
@given(events)
@example({**VALID, "time": "0001-01-01T00:00:00+01:00"})
@example({**VALID, "datacontenttype": "text/plain", "data": 5})
@example({**VALID, "subject": "\ud800"})
@example({**VALID, "data": {"n": 2**70}})
@example({**VALID, "note": 2**70})
@example({**VALID, "type": "a" * 10_000})
@example({**VALID, 7: "seven"})
def test_any_attribute_values_decode_or_raise_and_what_decodes_round_trips(
    document: dict[str, Any],
) -> None:
    event = _decodes(lambda: CloudEvent.from_dict(document))
    if event is not None:
        _round_trips(event)
    try:
        text = json.dumps([document], default=str)
    except (TypeError, ValueError):  # a key or a number JSON cannot hold
        return
    decoded = _decodes(lambda: from_batch(text))
    if decoded is not None:
        _round_trips(decoded[0])


header_names = st.sampled_from(
    [
        "ce-id",
        "ce-source",
        "ce-specversion",
        "ce-type",
        "ce-subject",
        "ce-time",
        "ce-data",
        "ce-partitionkey",
        "Content-Type",
        "content-type",
        "ce-",
        "ce-Ünï",
        "X-Other",
    ]
) | st.text(max_size=12).map(lambda t: "ce-" + t)
header_values = st.text(max_size=60) | st.sampled_from(
    ["1.0", "a.b", "/s", "%", "%ZZ", "%C3%A9", "%ED%A0%80", "%FF", "application/json", "text/plain"]
)


@FAST
@given(st.dictionaries(header_names, header_values, max_size=10), st.binary(max_size=200))
def test_any_headers_and_body_decode_or_raise_event_format_error(
    headers: dict[str, str], body: bytes
) -> None:
    base = {"ce-id": "1", "ce-source": "/s", "ce-specversion": "1.0", "ce-type": "a.b"}
    for candidate in (headers, {**base, **headers}):
        event = _decodes(lambda candidate=candidate: CloudEvent.from_binary(candidate, body))  # type: ignore[misc]
        if event is not None:
            _round_trips(event)
        _decodes(lambda candidate=candidate: from_http(candidate, body))  # type: ignore[misc]


# -- linear work -------------------------------------------------------------------------


#: Lines that making an error about one attribute may add (its message, the exception).
ERROR_PATH = 60


def _lines_run(work: Callable[[], object]) -> int:
    """How many lines of hybridmesh's own Python ``work`` runs (deterministic)."""
    count = 0

    def local(frame: FrameType, event: str, arg: object) -> Any:
        nonlocal count
        if event == "line":
            count += 1
        return local

    def calls(frame: FrameType, event: str, arg: object) -> Any:
        return local if "hybridmesh" in frame.f_code.co_filename else None

    previous = sys.gettrace()
    sys.settrace(calls)
    try:
        _decodes(work)
    finally:
        sys.settrace(previous)
    return count


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events, st.integers(min_value=1, max_value=8))
def test_a_batch_twice_as_long_is_at_most_twice_the_work(
    document: dict[str, Any], copies: int
) -> None:
    def batch(n: int) -> bytes:
        items = [{**document, "id": f"e-{i}"} for i in range(n)]
        return json.dumps(items, default=str).encode()

    once, twice = batch(copies), batch(2 * copies)
    assert _lines_run(lambda: from_batch(twice)) <= 2 * _lines_run(lambda: from_batch(once))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(["id", "source", "type", "subject", "time", "dataschema", "data", "note"]),
    st.text(min_size=1, max_size=3),
    st.sampled_from([10, 300, 3_000]),
)
def test_a_longer_attribute_is_no_more_python_work(attribute: str, unit: str, length: int) -> None:
    base = {"specversion": "1.0", "id": "e", "source": "/s", "type": "a.b"}

    def body(n: int) -> bytes:
        return json.dumps({**base, attribute: unit * n}).encode()

    short, long = body(length), body(100 * length)
    # The same checks run whatever the length: at most a constant more, when the longer
    # one is past a limit and an error is made.
    assert _lines_run(lambda: CloudEvent.from_json(long)) <= (
        _lines_run(lambda: CloudEvent.from_json(short)) + ERROR_PATH
    )
