"""The CloudEvents Kafka protocol binding, and interop with the official SDK both ways.

Checked against the Kafka Protocol Binding for CloudEvents 1.0 (``ce_`` headers in UTF-8,
``content-type`` as ``datacontenttype``, the data as the value, ``partitionkey`` as the key)
and against both APIs of the official Python SDK: the 1.x API (``cloudevents.kafka``; in
cloudevents 2.x ``cloudevents.v1.kafka``) and the 2.x core API
(``cloudevents.core.bindings.kafka``, skipped when the installed SDK is 1.x).

Known SDK 1.x-API quirks the tests steer around (they are not ours): ``to_binary`` needs a
``datacontenttype``, cannot write a non-string extension, JSON-encodes the data unless told
otherwise and sends ``partitionkey`` only as the key; ``from_binary`` hands the key over as
it came (bytes) and JSON-decodes the value unless told otherwise; ``to_structured`` moves
``datacontenttype`` out of the event into the ``content-type`` header, and
``from_structured`` reads the ``content-type`` header as ``datacontenttype``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone
from enum import IntEnum, StrEnum
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from tests.cloudevents_sdk import (
    CoreCloudEvent,
    JSONFormat,
    core_kafka,
    needs_core,
    sdk_http,
    sdk_kafka,
)
from tests.conformance.event_backend import EVENTS_AT_THE_LIMITS

from hybridmesh.events import limits
from hybridmesh.events.envelope import CloudEvent, EventFormatError
from hybridmesh.events.kafka_binding import (
    TYPES_HEADER,
    KafkaRecord,
    Mode,
    from_kafka,
    to_kafka,
)

TIME = datetime(2024, 5, 1, 12, 30, 15, 123456, tzinfo=UTC)
BLOB = b"\x00\x01\x02\xfe\xff binary \x80"  # neither JSON nor UTF-8
NASTY = 'naïve "quoted" 100% ünïcödé ✓ 😀'
JSON_DATA: dict[str, Any] = {"order": 42, "items": [{"sku": "a-1", "qty": 2}], "note": NASTY}
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
TYPED_EXTENSIONS: dict[str, Any] = {
    "traceparent": TRACEPARENT,
    "tenant": "acmé",
    "retries": 3,
    "replay": True,
    "negative": -(2**31),
    "off": False,
}
STRING_EXTENSIONS = {"traceparent": TRACEPARENT, "tenant": "acmé"}


class Level(IntEnum):
    HIGH = 3


class Tier(StrEnum):
    GOLD = "gold"


MODES: tuple[Mode, ...] = ("binary", "structured")


def _ours(data: Any = None, **kwargs: Any) -> CloudEvent:
    kwargs.setdefault("time", TIME)
    kwargs.setdefault("subject", NASTY)
    return CloudEvent.create("order.created", "/orders", data, **kwargs)


def _raw(data: Any = None, **attributes: Any) -> CloudEvent:
    """An event exactly as given (``create`` would fill in a datacontenttype)."""
    return CloudEvent(type="order.created", source="/orders", id="evt-1", data=data, **attributes)


def _round_trip(event: CloudEvent, mode: Mode) -> CloudEvent:
    record = to_kafka(event, mode)
    return from_kafka(record.key, record.value, record.headers)


def _headers(record: KafkaRecord) -> dict[str, bytes]:
    names = [name for name, _ in record.headers]
    assert len(names) == len(set(names)), "a header name appears twice"
    return dict(record.headers)


# -- the record layout -------------------------------------------------------------------------


class TestRecordLayout:
    def test_binary_mode_headers_key_and_value(self) -> None:
        event = _ours(
            JSON_DATA,
            id="evt-1",
            dataschema="https://example.com/order.json",
            partition_key="customer-7",
            extensions=STRING_EXTENSIONS,
        )
        record = to_kafka(event)
        assert _headers(record) == {
            "ce_specversion": b"1.0",
            "ce_id": b"evt-1",
            "ce_source": b"/orders",
            "ce_type": b"order.created",
            "ce_time": b"2024-05-01T12:30:15.123456Z",
            "ce_subject": NASTY.encode(),  # UTF-8, not percent-encoded as in HTTP
            "ce_dataschema": b"https://example.com/order.json",
            "ce_traceparent": TRACEPARENT.encode(),
            "ce_tenant": "acmé".encode(),
            "ce_partitionkey": b"customer-7",  # the key mapper leaves the event as it is
            "content-type": b"application/json",  # datacontenttype, not ce_datacontenttype
        }
        assert record.key == b"customer-7"
        compact = json.dumps(JSON_DATA, separators=(",", ":"), ensure_ascii=False)
        assert record.value == compact.encode()

    def test_binary_mode_is_the_default(self) -> None:
        event = _ours({"n": 1})
        assert to_kafka(event) == to_kafka(event, "binary")

    @pytest.mark.parametrize(
        ("event", "value"),
        [
            pytest.param(_ours(BLOB), BLOB, id="bytes as they are"),
            pytest.param(_ours("héllo", datacontenttype="text/plain"), "héllo".encode(), id="text"),
            pytest.param(_ours(None), None, id="no data: no value"),
            pytest.param(_ours(""), b'""', id="a JSON string"),
            pytest.param(_ours(b"", datacontenttype="application/pdf"), b"", id="empty bytes"),
        ],
    )
    def test_binary_mode_value(self, event: CloudEvent, value: bytes | None) -> None:
        record = to_kafka(event)
        assert record.value == value
        assert record.key is None

    def test_binary_mode_data_bytes_are_not_copied(self) -> None:
        data = BLOB * 1000
        assert to_kafka(_ours(data)).value is data

    @pytest.mark.parametrize(
        ("event", "types"),
        [
            pytest.param(_ours(1, extensions=STRING_EXTENSIONS), None, id="none needed"),
            pytest.param(
                _ours(1, extensions={"retries": 3, "tenant": "a", "replay": False}),
                b"retries=int,replay=bool",
                id="typed extensions",
            ),
            pytest.param(
                _ours("<a/>", datacontenttype="application/xml"), b"data=text", id="text as xml"
            ),
            pytest.param(
                _ours(b"hello", datacontenttype="text/plain"), b"data=bytes", id="bytes as text"
            ),
            pytest.param(_raw(b"\x00"), b"data=bytes", id="bytes without a content type"),
        ],
    )
    def test_types_header_only_where_the_text_cannot_say(
        self, event: CloudEvent, types: bytes | None
    ) -> None:
        assert _headers(to_kafka(event)).get(TYPES_HEADER) == types

    def test_extensions_in_their_canonical_string_forms(self) -> None:
        headers = _headers(to_kafka(_ours(1, extensions=TYPED_EXTENSIONS)))
        assert headers["ce_retries"] == b"3"
        assert headers["ce_negative"] == b"-2147483648"
        assert headers["ce_replay"] == b"true"
        assert headers["ce_off"] == b"false"

    def test_time_in_utc(self) -> None:
        local = TIME.astimezone(timezone(timedelta(hours=-5)))
        assert _headers(to_kafka(_ours(1, time=local)))["ce_time"] == b"2024-05-01T12:30:15.123456Z"

    def test_structured_mode(self) -> None:
        event = _ours(BLOB, partition_key="customer-7", extensions=TYPED_EXTENSIONS)
        record = to_kafka(event, "structured")
        assert record.headers == [("content-type", b"application/cloudevents+json; charset=UTF-8")]
        assert record.value == event.to_json()
        assert b'"data_base64":' in record.value
        assert record.key == b"customer-7"

    def test_an_invalid_event_is_refused(self) -> None:
        bad = _raw({"n": 1}, extensions={"Bad": "x"})
        with pytest.raises(EventFormatError, match="extension names"):
            to_kafka(bad)

    def test_an_unknown_mode_is_refused(self) -> None:
        with pytest.raises(ValueError, match="mode must be"):
            to_kafka(_ours(1), "batch")  # type: ignore[arg-type]


# -- hybridmesh -> Kafka -> hybridmesh ---------------------------------------------------------

ROUND_TRIPS = [
    pytest.param(_ours(JSON_DATA), id="json"),
    pytest.param(_raw(JSON_DATA), id="json without a content type"),
    pytest.param(_raw("text", datacontenttype="application/json"), id="a json string"),
    pytest.param(_ours([1, 2.5, None, True], datacontenttype="application/vnd.x+json"), id="+json"),
    pytest.param(_ours(NASTY, datacontenttype="text/plain; charset=utf-8"), id="text"),
    pytest.param(_ours("", datacontenttype="text/plain"), id="empty text"),
    pytest.param(_ours(BLOB), id="bytes"),
    pytest.param(_ours(b"", datacontenttype="application/octet-stream"), id="empty bytes"),
    pytest.param(_ours(b"hello", datacontenttype="text/plain"), id="bytes as text"),
    pytest.param(_ours(BLOB, datacontenttype="text/plain"), id="non-UTF-8 bytes as text"),
    pytest.param(_ours("<a>é</a>", datacontenttype="application/xml"), id="text as xml"),
    pytest.param(_raw(BLOB), id="bytes without a content type"),
    pytest.param(_ours(None), id="no data"),
    pytest.param(_ours(None, datacontenttype="text/plain"), id="no data with a content type"),
    pytest.param(_raw(None), id="only the required attributes"),
    pytest.param(_ours({"n": 1}, extensions=TYPED_EXTENSIONS), id="typed extensions"),
    pytest.param(
        _ours({"n": 1}, extensions={"n": "3", "flag": "true", "s": NASTY}), id="numeric strings"
    ),
    pytest.param(
        _ours(
            {"n": 1},
            partition_key="customer-✓",
            dataschema="https://example.com/ü.json",
            time=TIME.astimezone(timezone(timedelta(hours=5, minutes=30))),
        ),
        id="partitionkey, dataschema, time not in UTC",
    ),
    pytest.param(_ours(1, time=datetime(2024, 5, 1, tzinfo=UTC)), id="whole seconds"),
    pytest.param(
        _ours(1, extensions={"level": Level.HIGH, "tier": Tier.GOLD}), id="enum extensions"
    ),
]


def _kinds(extensions: Mapping[str, Any]) -> dict[str, type]:
    """Each extension's CloudEvents type (an enum member counts as its value's type)."""
    return {k: next(t for t in (bool, int, str) if isinstance(v, t)) for k, v in extensions.items()}


class TestRoundTrip:
    @pytest.mark.parametrize("mode", MODES)
    @pytest.mark.parametrize("event", ROUND_TRIPS)
    def test_the_same_event_comes_back(self, event: CloudEvent, mode: Mode) -> None:
        back = _round_trip(event, mode)
        assert back == event
        assert back.to_json() == event.to_json()
        assert type(back.data) is type(event.data)
        assert _kinds(back.extensions) == _kinds(event.extensions)

    @pytest.mark.parametrize("mode", MODES)
    @pytest.mark.parametrize("largest", list(EVENTS_AT_THE_LIMITS))
    def test_events_at_the_limits(self, largest: str, mode: Mode) -> None:
        event = EVENTS_AT_THE_LIMITS[largest](12345678)
        back = _round_trip(event, mode)
        assert back == event
        assert back.to_json() == event.to_json()


# -- the key -------------------------------------------------------------------------------------


class TestKey:
    @pytest.mark.parametrize("mode", MODES)
    def test_the_events_partitionkey_wins_over_the_key(self, mode: Mode) -> None:
        record = to_kafka(_ours({"n": 1}, partition_key="from-event"), mode)
        assert from_kafka(b"other", record.value, record.headers).partition_key == "from-event"

    @pytest.mark.parametrize("mode", MODES)
    def test_a_key_becomes_the_partitionkey_of_an_event_without_one(self, mode: Mode) -> None:
        record = to_kafka(_ours({"n": 1}), mode)
        event = from_kafka("customer-✓".encode(), record.value, record.headers)
        assert event.partition_key == "customer-✓"

    @pytest.mark.parametrize(
        "key",
        [
            pytest.param(b"\x00\x00\x00\x01\x02", id="binary (an Avro key, say)"),
            pytest.param(b"\xff\xfe", id="not UTF-8"),
            pytest.param(b"", id="empty"),
            pytest.param(b"k" * (limits.MAX_EXTENSION_VALUE + 1), id="too long"),
        ],
    )
    @pytest.mark.parametrize("mode", MODES)
    def test_a_key_that_cannot_be_a_partitionkey_is_left_alone(
        self, key: bytes, mode: Mode
    ) -> None:
        event = _ours({"n": 1})
        record = to_kafka(event, mode)
        assert from_kafka(key, record.value, record.headers) == event

    def test_a_key_is_left_alone_when_the_event_has_no_room_for_it(self) -> None:
        full = {f"x{i}": "v" for i in range(limits.MAX_EXTENSIONS)}
        event = _ours({"n": 1}, extensions=full)
        for mode in MODES:
            record = to_kafka(event, mode)
            assert from_kafka(b"k", record.value, record.headers) == event


# -- hybridmesh -> SDK -------------------------------------------------------------------------


def _our_attributes(event: CloudEvent, *, as_strings: bool = False) -> dict[str, Any]:
    """Our event's attributes as the SDK names them (extensions at the top level)."""
    attrs: dict[str, Any] = {"specversion": event.specversion, "id": event.id}
    attrs.update(source=event.source, type=event.type)
    for name in ("subject", "datacontenttype", "dataschema", "time"):
        if getattr(event, name) is not None:
            attrs[name] = getattr(event, name)
    for name, value in event.extensions.items():
        if as_strings:
            value = str(value).lower() if isinstance(value, bool) else str(value)
        attrs[name] = value
    return attrs


def _sdk_attributes(event: Any) -> dict[str, Any]:
    """An SDK event's attributes, ``time`` as a datetime and a bytes key as text."""
    attrs = dict(event.get_attributes())
    if isinstance(attrs.get("time"), str):
        attrs["time"] = datetime.fromisoformat(attrs["time"].replace("Z", "+00:00"))
    if isinstance(attrs.get("partitionkey"), bytes):
        attrs["partitionkey"] = attrs["partitionkey"].decode()
    return attrs


def _identity(value: Any) -> Any:
    return value


SDK_READS = [
    pytest.param(_ours(JSON_DATA, partition_key="customer-7"), id="json"),
    pytest.param(_ours(NASTY, datacontenttype="text/plain"), id="text"),
    pytest.param(_ours(BLOB, datacontenttype="application/vnd.x.thrift"), id="bytes"),
    pytest.param(_ours(None, dataschema="https://example.com/o.json"), id="no data"),
    pytest.param(_ours({"n": 1}, extensions=TYPED_EXTENSIONS), id="typed extensions"),
]


def _as_sdk_1(record: KafkaRecord) -> Any:
    return sdk_kafka.KafkaMessage(dict(record.headers), record.key, record.value)


class TestOursReadBySdk:
    @pytest.mark.parametrize("event", SDK_READS)
    def test_binary(self, event: CloudEvent) -> None:
        message = _as_sdk_1(to_kafka(event, "binary"))
        json_data = isinstance(event.data, dict)
        sdk_event = sdk_kafka.from_binary(
            message, data_unmarshaller=None if json_data else _identity
        )
        # headers carry no types: extensions arrive as their canonical strings
        assert _sdk_attributes(sdk_event) == _our_attributes(event, as_strings=True)
        expected = event.data.encode() if isinstance(event.data, str) else event.data
        assert sdk_event.get_data() == expected  # the 1.x API hands text over as bytes

    @pytest.mark.parametrize("event", SDK_READS)
    def test_structured(self, event: CloudEvent) -> None:
        sdk_event = sdk_kafka.from_structured(_as_sdk_1(to_kafka(event, "structured")))
        attrs = _sdk_attributes(sdk_event)
        # the 1.x API takes the record's content-type for datacontenttype
        attrs.pop("datacontenttype")
        expected = _our_attributes(event)
        expected.pop("datacontenttype", None)
        assert attrs == expected  # the JSON format keeps the extension types
        assert sdk_event.get_data() == event.data

    @needs_core
    @pytest.mark.parametrize("event", SDK_READS)
    @pytest.mark.parametrize("mode", MODES)
    def test_core(self, event: CloudEvent, mode: Mode) -> None:
        record = to_kafka(event, mode)
        message = core_kafka.KafkaMessage(dict(record.headers), record.key, record.value or b"")
        read = core_kafka.from_binary if mode == "binary" else core_kafka.from_structured
        for core_event in (read(message, JSONFormat()), core_kafka.from_kafka_event(message)):
            expected = _our_attributes(event, as_strings=mode == "binary")
            assert dict(core_event.get_attributes()) == expected
            assert core_event.get_data() == event.data


# -- SDK -> hybridmesh -------------------------------------------------------------------------


def _from_sdk(message: Any) -> CloudEvent:
    """``from_kafka`` on an SDK message, as a Kafka client would deliver it (bytes)."""

    def raw(part: str | bytes | None) -> bytes | None:
        return part.encode() if isinstance(part, str) else part

    return from_kafka(raw(message.key), raw(message.value), list(message.headers.items()))


def _sdk_event(data: Any = None, **attributes: Any) -> Any:
    attributes = {"type": "order.created", "source": "/orders", "subject": NASTY, **attributes}
    return sdk_http.CloudEvent(attributes, data)


class TestSdkReadByOurs:
    @pytest.mark.parametrize(
        ("data", "content_type", "marshaller"),
        [
            pytest.param(JSON_DATA, "application/json", None, id="json"),
            pytest.param(None, "application/json", None, id="no data"),
            pytest.param(NASTY, "text/plain", _identity, id="text"),
            pytest.param(BLOB, "application/octet-stream", _identity, id="bytes"),
        ],
    )
    def test_binary(self, data: Any, content_type: str, marshaller: Any) -> None:
        # string extensions only: the 1.x API cannot write other types to a header
        sdk_event = _sdk_event(
            data, datacontenttype=content_type, partitionkey="customer-7", **STRING_EXTENSIONS
        )
        message = sdk_kafka.to_binary(sdk_event, data_marshaller=marshaller)
        assert "ce_partitionkey" not in message.headers  # the 1.x API sends only the key
        ours = _from_sdk(message)
        assert _our_attributes(ours) == _sdk_attributes(sdk_event)
        assert ours.partition_key == "customer-7"
        assert ours.data == data

    @pytest.mark.parametrize(
        "data",
        [
            pytest.param(JSON_DATA, id="json"),
            pytest.param(NASTY, id="a json string"),
            pytest.param(BLOB, id="bytes"),
            pytest.param(None, id="no data"),
        ],
    )
    def test_structured(self, data: Any) -> None:
        sdk_event = _sdk_event(data, partitionkey="customer-7", **TYPED_EXTENSIONS)
        message = sdk_kafka.to_structured(sdk_event)
        assert message.headers == {}  # no headers: read as structured JSON (binding 1.0.x)
        ours = _from_sdk(message)
        assert _our_attributes(ours) == _sdk_attributes(sdk_event)
        assert ours.data == data
        assert ours.extensions == {"partitionkey": "customer-7", **TYPED_EXTENSIONS}

    def test_structured_with_datacontenttype_is_refused_clearly(self) -> None:
        """The 1.x API puts datacontenttype in the content-type header and takes it out of
        the event: no CloudEvents mode, and it says so."""
        sdk_event = _sdk_event(JSON_DATA, datacontenttype="application/json")
        with pytest.raises(EventFormatError) as info:
            _from_sdk(sdk_kafka.to_structured(sdk_event))
        assert [p.field for p in info.value.problems] == ["content-type"]
        assert "without ce_ headers" in str(info.value)

    @needs_core
    @pytest.mark.parametrize(
        ("data", "content_type"),
        [
            pytest.param(JSON_DATA, "application/json", id="json"),
            pytest.param(JSON_DATA, None, id="json without a content type"),
            pytest.param(NASTY, "text/plain", id="text"),
            pytest.param(BLOB, "application/octet-stream", id="bytes"),
            pytest.param(None, None, id="no data"),
        ],
    )
    @pytest.mark.parametrize("mode", MODES)
    def test_core(self, data: Any, content_type: str | None, mode: Mode) -> None:
        attributes = {"type": "order.created", "source": "/orders", "time": TIME}
        attributes |= {"subject": NASTY, "partitionkey": "customer-✓", **TYPED_EXTENSIONS}
        if content_type is not None:
            attributes["datacontenttype"] = content_type
        core_event = CoreCloudEvent(attributes, data)
        write = core_kafka.to_binary if mode == "binary" else core_kafka.to_structured
        ours = _from_sdk(write(core_event, JSONFormat()))
        expected = dict(core_event.get_attributes())
        if mode == "binary":  # headers carry no types: str() of each, as the core API writes
            expected = {k: v if isinstance(v, datetime) else str(v) for k, v in expected.items()}
        assert _our_attributes(ours) == expected
        assert ours.data == data


# -- records that are not CloudEvents --------------------------------------------------------

_GOOD = [
    ("ce_specversion", b"1.0"),
    ("ce_id", b"evt-1"),
    ("ce_source", b"/orders"),
    ("ce_type", b"order.created"),
]


def _without(name: str) -> list[tuple[str, bytes]]:
    return [h for h in _GOOD if h[0] != name]


def _replacing(name: str, value: Any) -> list[tuple[str, bytes]]:
    return [*_without(name), (name, value)]


_STRUCTURED = [("content-type", b"application/cloudevents+json")]
_JSON = [("content-type", b"application/json")]

BAD_RECORDS = [
    # (value, headers, the problem's field, words of its message)
    pytest.param(
        b"hello", [], "content-type", "no content-type and no ce_ headers", id="no headers"
    ),
    pytest.param(None, [], "value", "has none", id="no headers and no value"),
    pytest.param(b"{}", _without("ce_id"), "ce_id", "required header is missing", id="no ce_id"),
    pytest.param(b"{}", _without("ce_type"), "ce_type", "required header", id="no ce_type"),
    pytest.param(b"{}", _without("ce_source"), "ce_source", "required header", id="no ce_source"),
    pytest.param(
        b"{}", _without("ce_specversion"), "ce_specversion", "required", id="no ce_specversion"
    ),
    pytest.param(
        b"{}", _replacing("ce_specversion", b"0.3"), "ce_specversion", "unsupported", id="0.3"
    ),
    pytest.param(
        b"{}", [*_GOOD, ("ce_subject", b"caf\xe9")], "ce_subject", "not UTF-8", id="not UTF-8"
    ),
    pytest.param(
        b"{}",
        [*_GOOD, ("content-type", b"\xff")],
        "content-type",
        "not UTF-8",
        id="content-type not UTF-8",
    ),
    pytest.param(
        b"{}", [*_GOOD, ("ce_subject", None)], "ce_subject", "must have a value", id="null header"
    ),
    pytest.param(b"{}", [*_GOOD, ("ce_id", b"evt-2")], "ce_id", "more than once", id="ce_id twice"),
    pytest.param(
        b"{}", [*_GOOD, *_JSON, *_JSON], "content-type", "more than once", id="content-type twice"
    ),
    pytest.param(
        b"{}", [*_GOOD, ("ce_data", b"{}")], "ce_data", "the data is the record value", id="ce_data"
    ),
    pytest.param(
        b'{"specversion": "1.0", "id": ', _STRUCTURED, "value", "is not JSON", id="broken JSON"
    ),
    pytest.param(None, _STRUCTURED, "value", "has none", id="structured without a value"),
    pytest.param(b"[1]", _STRUCTURED, None, "must be a JSON object", id="structured array"),
    pytest.param(
        b'{"specversion":"1.0","id":"1","source":"/s","type":"a b"}',
        _STRUCTURED,
        "type",
        "dot-separated tokens",
        id="structured, bad type",
    ),
    pytest.param(
        b"[]",
        [("content-type", b"application/cloudevents-batch+json")],
        "content-type",
        "no batch mode",
        id="batch",
    ),
    pytest.param(
        b"{}",
        [("content-type", b"application/cloudevents+avro")],
        "content-type",
        "not supported",
        id="another event format",
    ),
    pytest.param(b"{}", _JSON, "content-type", "without ce_ headers", id="plain JSON"),
    pytest.param(b"hello", [*_GOOD, *_JSON], "value", "is not JSON", id="value not JSON"),
    pytest.param(b"hello", _GOOD, "value", "is not JSON", id="value not JSON, no content-type"),
    pytest.param(
        b'{"n": 123456789012345678901234567890}',
        [*_GOOD, *_JSON],
        "value.n",
        "64 bits",
        id="a whole number beyond 64 bits",
    ),
    pytest.param(
        b"{}", [*_GOOD, ("ce_time", b"yesterday")], "ce_time", "RFC 3339", id="bad ce_time"
    ),
    pytest.param(
        b"{}",
        _replacing("ce_id", b"x" * (limits.MAX_ID + 1)),
        "ce_id",
        "at most 256",
        id="ce_id too long",
    ),
    pytest.param(
        b"{}", _replacing("ce_source", b""), "ce_source", "must not be empty", id="empty source"
    ),
    pytest.param(
        b"{}",
        [*_GOOD, ("ce_Bad-Name", b"x")],
        "ce_bad-name",
        "extension names",
        id="bad extension name",
    ),
    pytest.param(
        b"{}",
        [*_GOOD, ("ce_x", b"\x07")],
        "ce_x",
        "control characters",
        id="control character",
    ),
    pytest.param(
        b"{}",
        [*_GOOD, *((f"ce_x{i}", b"v") for i in range(limits.MAX_EXTENSIONS + 1))],
        None,
        "at most 32 extensions",
        id="too many extensions",
    ),
    pytest.param(
        b"{}",
        [*_GOOD, ("ce_x", b"v" * (limits.MAX_EXTENSION_VALUE + 1))],
        "ce_x",
        "at most 1024",
        id="extension value too long",
    ),
    pytest.param(
        b"{}",
        [*_GOOD, ("content-type", b"not a type")],
        "content-type",
        "media type",
        id="bad content-type",
    ),
    pytest.param(
        b"{}",
        [*_GOOD, *_JSON, ("ce_datacontenttype", b"text/plain")],
        "ce_datacontenttype",
        "content-type says",
        id="ce_datacontenttype disagrees",
    ),
    pytest.param(
        b"\x00" * (limits.MAX_DATA_BYTES + 1),
        [*_GOOD, ("content-type", b"application/octet-stream")],
        "value",
        "at most 524288",
        id="data too large",
    ),
    pytest.param(
        b"{}",
        [*_GOOD, ("ce_n", b"3"), (TYPES_HEADER, b"n=float")],
        TYPES_HEADER,
        "not name=type",
        id="hm_types: unknown type",
    ),
    pytest.param(
        b"{}",
        [*_GOOD, (TYPES_HEADER, b"n=int")],
        TYPES_HEADER,
        "no extension header",
        id="hm_types: no such header",
    ),
    pytest.param(
        b"{}",
        [*_GOOD, ("ce_n", b"three"), (TYPES_HEADER, b"n=int")],
        "ce_n",
        "not a 32-bit integer",
        id="hm_types: not an integer",
    ),
    pytest.param(
        b"{}",
        [*_GOOD, ("ce_n", b"9" * 5000), (TYPES_HEADER, b"n=int")],
        "ce_n",
        "not a 32-bit integer",
        id="hm_types: a huge integer",
    ),
    pytest.param(
        b"{}",
        [*_GOOD, ("ce_n", b"2147483648"), (TYPES_HEADER, b"n=int")],
        "ce_n",
        "integers must be from",
        id="hm_types: beyond 32 bits",
    ),
    pytest.param(
        b"{}",
        [*_GOOD, ("ce_b", b"yes"), (TYPES_HEADER, b"b=bool")],
        "ce_b",
        "not true or false",
        id="hm_types: not a boolean",
    ),
    pytest.param(
        b"\xff",
        [*_GOOD, (TYPES_HEADER, b"data=text"), ("content-type", b"application/xml")],
        "value",
        "not UTF-8 text",
        id="hm_types: text that is not UTF-8",
    ),
]


class TestBadRecords:
    @pytest.mark.parametrize(("value", "headers", "field", "words"), BAD_RECORDS)
    def test_each_names_its_problem(
        self, value: bytes | None, headers: list[tuple[str, bytes]], field: str | None, words: str
    ) -> None:
        with pytest.raises(EventFormatError) as info:
            from_kafka(None, value, headers)
        matching = [p for p in info.value.problems if p.field == field]
        assert matching, f"expected a problem on {field!r}: {info.value}"
        assert any(words in p.message for p in matching), str(info.value)

    def test_every_problem_of_a_record_is_listed(self) -> None:
        headers = [
            *_replacing("ce_type", b"a b"),
            ("ce_time", b"never"),
            ("ce_subject", b""),
            *_JSON,
        ]
        with pytest.raises(EventFormatError) as info:
            from_kafka(None, b"{", headers)
        fields = {p.field for p in info.value.problems}
        assert fields == {"ce_type", "ce_time", "ce_subject", "value"}


# -- properties ------------------------------------------------------------------------------

_NAMES = st.sampled_from(
    [
        "ce_specversion",
        "ce_id",
        "ce_source",
        "ce_type",
        "ce_time",
        "ce_subject",
        "ce_dataschema",
        "ce_datacontenttype",
        "ce_partitionkey",
        "ce_n",
        "ce_data",
        "CE_ID",
        "content-type",
        "Content-Type",
        TYPES_HEADER,
        "other",
    ]
) | st.text(max_size=12)
_VALUES = st.sampled_from(
    [
        b"1.0",
        b"order.created",
        b"2024-05-01T12:30:15Z",
        b"application/json",
        b"text/plain",
        b"application/octet-stream",
        b"application/cloudevents+json",
        b"application/cloudevents-batch+json",
        b"n=int",
        b"n=bool,data=bytes",
        b"data=text",
        b"3",
        b"true",
        b"",
        b"\xff",
    ]
) | st.binary(max_size=20)
_BODIES = (
    st.none()
    | st.binary(max_size=60)
    | st.sampled_from(
        [
            b"{}",
            b"null",
            b'{"n": 1}',
            b'{"specversion":"1.0","id":"1","source":"/s","type":"a","data_base64":"AA=="}',
            b'{"specversion":"1.0","id":"1","source":"/s","type":"a","partitionkey":null}',
        ]
    )
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    key=st.none() | st.binary(max_size=8) | st.sampled_from([b"k", "ü".encode()]),
    value=_BODIES,
    headers=st.lists(st.tuples(_NAMES, _VALUES | st.none()), max_size=12),
)
@example(key=None, value=b"{}", headers=[*_GOOD, ("ce_n", b"1"), (TYPES_HEADER, b"n=int")])
def test_any_record_gives_an_event_that_goes_round_or_an_event_format_error(
    key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]
) -> None:
    try:
        event = from_kafka(key, value, headers)
    except EventFormatError:
        return
    for mode in MODES:
        back = _round_trip(event, mode)
        assert back == event
        assert back.to_json() == event.to_json()
