"""CloudEvents 1.0 envelope: create(), the three wire forms, and every decoding error.

Checked against the CloudEvents 1.0 core spec, the JSON event format (structured and batch)
and the HTTP protocol binding (binary mode, percent-encoded ``ce-*`` header values).
"""

from __future__ import annotations

import base64
import dataclasses
import json
import re
import types
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import unquote

import pytest

from hybridmesh.core import ids
from hybridmesh.core.errors import ValidationError
from hybridmesh.events.envelope import (
    BATCH_CONTENT_TYPE,
    JSON_CONTENT_TYPE,
    SPEC_VERSION,
    STRUCTURED_CONTENT_TYPE,
    CloudEvent,
    EventFormatError,
    from_batch,
    from_http,
    to_batch,
)

BASE: dict[str, Any] = {
    "specversion": "1.0",
    "id": "evt-1",
    "source": "/orders",
    "type": "order.created",
}
FIXED_TIME = datetime(2024, 5, 1, 12, 30, 15, 123456, tzinfo=UTC)
BINARY_BLOB = b"\x00\x01\x02\xfe\xffnot json\n"


def _event(data: Any = None, **kwargs: Any) -> CloudEvent:
    kwargs.setdefault("id", "evt-1")
    kwargs.setdefault("time", FIXED_TIME)
    return CloudEvent.create("order.created", "/orders", data, **kwargs)


def _fields(error: EventFormatError) -> list[str | None]:
    return [p.field for p in error.problems]


def _expect_error(field: str | None, call: Callable[[], object]) -> EventFormatError:
    with pytest.raises(EventFormatError) as info:
        call()
    assert field in _fields(info.value), f"expected a problem on {field!r}: {info.value}"
    return info.value


# -- the wire forms, each a function event -> event --------------------------------------


def _structured(event: CloudEvent) -> CloudEvent:
    return CloudEvent.from_json(event.to_json())


def _structured_text(event: CloudEvent) -> CloudEvent:
    return CloudEvent.from_json(event.to_json().decode("utf-8"))


def _structured_http(event: CloudEvent) -> CloudEvent:
    headers = {"Content-Type": f"{STRUCTURED_CONTENT_TYPE}; charset=UTF-8"}
    [parsed] = from_http(headers, event.to_json())
    return parsed


def _binary(event: CloudEvent) -> CloudEvent:
    headers, body = event.to_binary()
    return CloudEvent.from_binary(headers, body)


def _binary_http(event: CloudEvent) -> CloudEvent:
    headers, body = event.to_binary()
    [parsed] = from_http(headers, body)
    return parsed


def _batch(event: CloudEvent) -> CloudEvent:
    [parsed] = from_batch(to_batch([event]))
    return parsed


def _batch_http(event: CloudEvent) -> CloudEvent:
    another = dataclasses.replace(event, id="another")
    parsed = from_http({"content-type": BATCH_CONTENT_TYPE}, to_batch([event, another]))
    assert parsed[1] == another
    return parsed[0]


ALL_MODES = [
    pytest.param(_structured, id="structured"),
    pytest.param(_structured_text, id="structured-str"),
    pytest.param(_structured_http, id="structured-http"),
    pytest.param(_binary, id="binary"),
    pytest.param(_binary_http, id="binary-http"),
    pytest.param(_batch, id="batch"),
    pytest.param(_batch_http, id="batch-http"),
]
STRUCTURED_MODES = [p for p in ALL_MODES if "binary" not in str(p.id)]
BINARY_MODES = [p for p in ALL_MODES if "binary" in str(p.id)]

RoundTrip = Callable[[CloudEvent], CloudEvent]


# -- create() ------------------------------------------------------------------------------


class TestCreate:
    def test_id_is_a_fresh_time_ordered_uuid7(self, monkeypatch: pytest.MonkeyPatch) -> None:
        now_ns = iter([1_700_000_000_000_000_000, 1_700_000_000_001_000_000])  # 1 ms apart
        monkeypatch.setattr(ids, "time", types.SimpleNamespace(time_ns=lambda: next(now_ns)))
        first = CloudEvent.create("order.created", "/orders")
        second = CloudEvent.create("order.created", "/orders")
        assert uuid.UUID(first.id).version == 7
        assert first.id != second.id
        assert first.id < second.id  # later milliseconds sort later

    def test_explicit_id_is_kept(self) -> None:
        assert CloudEvent.create("order.created", "/orders", id="abc").id == "abc"

    def test_time_defaults_to_now_aware_utc(self) -> None:
        before = datetime.now(UTC)
        event = CloudEvent.create("order.created", "/orders")
        after = datetime.now(UTC)
        assert event.time is not None
        assert event.time.tzinfo is not None
        assert event.time.utcoffset() == timedelta(0)
        assert before <= event.time <= after

    def test_spec_version_is_1_0(self) -> None:
        assert CloudEvent.create("order.created", "/orders").specversion == SPEC_VERSION == "1.0"

    def test_json_content_type_when_data_given(self) -> None:
        assert _event({"n": 1}).datacontenttype == JSON_CONTENT_TYPE == "application/json"
        assert _event("text").datacontenttype == JSON_CONTENT_TYPE
        assert _event(0).datacontenttype == JSON_CONTENT_TYPE

    def test_no_content_type_without_data(self) -> None:
        event = _event()
        assert event.data is None
        assert event.datacontenttype is None

    def test_bytes_data_gets_octet_stream(self) -> None:
        assert _event(BINARY_BLOB).datacontenttype == "application/octet-stream"

    def test_explicit_content_type_is_kept(self) -> None:
        event = _event("hi", datacontenttype="text/plain")
        assert event.datacontenttype == "text/plain"

    def test_optional_attributes(self) -> None:
        event = _event({"n": 1}, subject="order-42", dataschema="https://example.com/s.json")
        assert event.subject == "order-42"
        assert event.dataschema == "https://example.com/s.json"
        assert event.to_dict()["subject"] == "order-42"
        assert event.to_dict()["dataschema"] == "https://example.com/s.json"

    def test_partition_key_is_the_partitionkey_extension(self) -> None:
        event = _event({"n": 1}, partition_key="customer-7")
        assert event.extensions == {"partitionkey": "customer-7"}
        assert event.partition_key == "customer-7"
        assert event.to_dict()["partitionkey"] == "customer-7"

    def test_no_partition_key_by_default(self) -> None:
        event = _event({"n": 1})
        assert event.partition_key is None
        assert "partitionkey" not in event.to_dict()

    def test_traceparent_extension(self) -> None:
        traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        event = _event({"n": 1}, extensions={"traceparent": traceparent, "tracestate": "k=v"})
        assert event.traceparent == traceparent
        assert event.to_dict()["traceparent"] == traceparent
        assert event.to_dict()["tracestate"] == "k=v"
        assert _event().traceparent is None

    def test_partition_key_merges_with_extensions(self) -> None:
        event = _event(partition_key="k", extensions={"traceparent": "tp"})
        assert event.extensions == {"traceparent": "tp", "partitionkey": "k"}

    def test_with_extensions_sets_and_removes(self) -> None:
        event = _event(partition_key="k")
        changed = event.with_extensions(traceparent="tp", partitionkey=None)
        assert changed.extensions == {"traceparent": "tp"}
        assert event.extensions == {"partitionkey": "k"}  # the original is untouched

    def test_create_validates(self) -> None:
        _expect_error("type", lambda: CloudEvent.create("", "/orders"))
        _expect_error("source", lambda: CloudEvent.create("order.created", ""))

    def test_event_format_error_is_a_validation_error(self) -> None:
        assert issubclass(EventFormatError, ValidationError)


# -- the structured form itself ------------------------------------------------------------


class TestStructuredShape:
    def test_json_data_goes_in_data(self) -> None:
        obj = _event({"n": 1}).to_dict()
        assert obj == {
            **BASE,
            "time": "2024-05-01T12:30:15.123456Z",
            "datacontenttype": "application/json",
            "data": {"n": 1},
        }

    def test_bytes_go_in_data_base64(self) -> None:
        obj = _event(BINARY_BLOB).to_dict()
        assert "data" not in obj
        assert base64.b64decode(obj["data_base64"]) == BINARY_BLOB

    def test_no_data_member_without_data(self) -> None:
        obj = _event().to_dict()
        assert "data" not in obj
        assert "data_base64" not in obj
        assert "datacontenttype" not in obj

    def test_extensions_are_top_level_members_with_their_json_types(self) -> None:
        obj = json.loads(
            _event(extensions={"tenant": "acme", "retries": 3, "replay": True}).to_json()
        )
        assert obj["tenant"] == "acme"
        assert obj["retries"] == 3
        assert obj["replay"] is True

    def test_time_offset_is_normalised_to_utc_z(self) -> None:
        local = datetime(2024, 5, 1, 14, 30, 15, tzinfo=timezone(timedelta(hours=2)))
        assert _event(time=local).to_dict()["time"] == "2024-05-01T12:30:15.000000Z"

    def test_to_json_is_utf8_json(self) -> None:
        body = _event({"text": "naïve ✓"}).to_json()
        assert isinstance(body, bytes)
        assert json.loads(body.decode("utf-8"))["data"] == {"text": "naïve ✓"}

    def test_batch_is_a_json_array_of_structured_events(self) -> None:
        first, second = _event({"n": 1}), _event(BINARY_BLOB, id="evt-2")
        assert json.loads(to_batch([first, second])) == [first.to_dict(), second.to_dict()]

    def test_empty_batch(self) -> None:
        assert json.loads(to_batch([])) == []
        assert from_batch(b"[]") == []
        assert from_http({"Content-Type": BATCH_CONTENT_TYPE}, b"[]") == []


# -- round trips ---------------------------------------------------------------------------


class TestRoundTrips:
    @pytest.mark.parametrize("through", ALL_MODES)
    @pytest.mark.parametrize(
        "data",
        [
            pytest.param({"order": 42, "items": [{"sku": "a", "qty": 2}], "ok": True}, id="object"),
            pytest.param({"text": "naïve ✓ 日本語", "empty": {}, "none": None}, id="unicode"),
            pytest.param([1, "two", 3.5, None], id="array"),
            pytest.param("a JSON string", id="string"),
            pytest.param(0, id="zero"),
            pytest.param(False, id="false"),
        ],
    )
    def test_json_data(self, through: RoundTrip, data: Any) -> None:
        event = _event(data, subject="order-42", dataschema="https://example.com/order.json")
        back = through(event)
        assert back == event
        assert back.data == data
        assert type(back.data) is type(data)

    @pytest.mark.parametrize("through", ALL_MODES)
    @pytest.mark.parametrize(
        "content_type", ["application/octet-stream", "application/vnd.apache.thrift.binary"]
    )
    def test_bytes_data(self, through: RoundTrip, content_type: str) -> None:
        event = _event(BINARY_BLOB, datacontenttype=content_type)
        back = through(event)
        assert back == event
        assert back.data == BINARY_BLOB
        assert isinstance(back.data, bytes)

    @pytest.mark.parametrize("through", ALL_MODES)
    def test_bytes_data_without_content_type(self, through: RoundTrip) -> None:
        # An event read from JSON with data_base64 and no datacontenttype: bytes, no type.
        event = CloudEvent.from_dict(
            {**BASE, "data_base64": base64.b64encode(BINARY_BLOB).decode()}
        )
        assert event.data == BINARY_BLOB
        assert event.datacontenttype is None
        back = through(event)
        assert back.data == BINARY_BLOB
        assert back.datacontenttype in (None, "application/octet-stream")

    def test_binary_body_is_the_raw_bytes(self) -> None:
        headers, body = _event(BINARY_BLOB, datacontenttype="image/png").to_binary()
        assert body == BINARY_BLOB
        assert headers["Content-Type"] == "image/png"
        assert not any(name.lower() == "ce-datacontenttype" for name in headers)

    @pytest.mark.parametrize("through", ALL_MODES)
    def test_no_data(self, through: RoundTrip) -> None:
        event = _event()
        back = through(event)
        assert back == event
        assert back.data is None
        assert back.datacontenttype is None

    def test_no_data_binary_has_empty_body_and_no_content_type(self) -> None:
        headers, body = _event().to_binary()
        assert body == b""
        assert not any(name.lower() == "content-type" for name in headers)

    @pytest.mark.parametrize("through", ALL_MODES)
    @pytest.mark.parametrize(
        ("text", "content_type"),
        [
            ("hello", "text/plain"),
            ("héllo wörld ✓ — 100%", "text/plain; charset=utf-8"),
            ('<much wow="xml"/>', "text/xml"),
        ],
    )
    def test_string_data_with_text_content_type(
        self, through: RoundTrip, text: str, content_type: str
    ) -> None:
        event = _event(text, datacontenttype=content_type)
        back = through(event)
        assert back == event
        assert back.data == text
        assert isinstance(back.data, str)

    def test_text_goes_on_the_wire_as_is(self) -> None:
        event = _event("héllo", datacontenttype="text/plain")
        assert event.to_dict()["data"] == "héllo"
        headers, body = event.to_binary()
        assert body == "héllo".encode()
        assert headers["Content-Type"] == "text/plain"

    @pytest.mark.parametrize("through", STRUCTURED_MODES)
    def test_extensions_keep_their_types_in_json(self, through: RoundTrip) -> None:
        extensions = {"tenant": "acme", "retries": 3, "negative": -7, "replay": True, "dry": False}
        event = _event({"n": 1}, partition_key="customer-7", extensions=extensions)
        back = through(event)
        assert back == event
        assert back.extensions == {**extensions, "partitionkey": "customer-7"}
        assert back.extensions["replay"] is True
        assert back.extensions["dry"] is False
        assert type(back.extensions["retries"]) is int
        assert back.partition_key == "customer-7"

    @pytest.mark.parametrize("through", BINARY_MODES)
    def test_extensions_in_binary_mode_carry_their_canonical_strings(
        self, through: RoundTrip
    ) -> None:
        # HTTP headers carry no type: the receiver gets each value's canonical string form.
        extensions = {"tenant": "acme", "retries": 3, "negative": -7, "replay": True, "dry": False}
        event = _event({"n": 1}, partition_key="customer-7", extensions=extensions)
        headers, _ = event.to_binary()
        assert headers["ce-retries"] == "3"
        assert headers["ce-replay"] == "true"
        assert headers["ce-dry"] == "false"
        back = through(event)
        assert back.extensions == {
            "tenant": "acme",
            "retries": "3",
            "negative": "-7",
            "replay": "true",
            "dry": "false",
            "partitionkey": "customer-7",
        }
        assert back.partition_key == "customer-7"
        # every other attribute survives unchanged
        assert back == CloudEvent(**{**_as_kwargs(event), "extensions": back.extensions})

    @pytest.mark.parametrize("through", ALL_MODES)
    def test_traceparent_survives(self, through: RoundTrip) -> None:
        traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        back = through(_event({"n": 1}, extensions={"traceparent": traceparent}))
        assert back.traceparent == traceparent

    @pytest.mark.parametrize("through", ALL_MODES)
    def test_time_with_an_offset_survives_as_the_same_instant(self, through: RoundTrip) -> None:
        local = datetime(2024, 5, 1, 14, 30, 15, 500000, tzinfo=timezone(timedelta(hours=2)))
        back = through(_event({"n": 1}, time=local))
        assert back.time == local
        assert back.time is not None and back.time.utcoffset() == timedelta(0)

    @pytest.mark.parametrize("through", ALL_MODES)
    def test_no_time(self, through: RoundTrip) -> None:
        event = CloudEvent(type="order.created", source="/orders", id="evt-1").validate()
        back = through(event)
        assert back == event
        assert back.time is None

    def test_batch_of_mixed_events(self) -> None:
        events = [
            _event({"n": 1}, partition_key="a"),
            _event(BINARY_BLOB, id="evt-2"),
            _event(id="evt-3"),
            _event("plain", id="evt-4", datacontenttype="text/plain"),
        ]
        assert from_batch(to_batch(events)) == events
        assert from_http({"Content-Type": BATCH_CONTENT_TYPE}, to_batch(events)) == events


def _as_kwargs(event: CloudEvent) -> dict[str, Any]:
    return {
        name: getattr(event, name)
        for name in (
            "type",
            "source",
            "id",
            "time",
            "subject",
            "datacontenttype",
            "dataschema",
            "data",
            "extensions",
            "specversion",
        )
    }


# -- HTTP binary header values ---------------------------------------------------------------

_PRINTABLE_ASCII = {chr(c) for c in range(0x21, 0x7F)}


class TestHeaderEncoding:
    @pytest.mark.parametrize(
        ("value", "encoded"),
        [
            ("hello world", "hello%20world"),
            ("100%", "100%25"),
            ('say "hi"', "say%20%22hi%22"),
            ("Euro € 😀", "Euro%20%E2%82%AC%20%F0%9F%98%80"),  # the HTTP binding's example
            ("naïve", "na%C3%AFve"),
            ("a/b:c?d=e&f", "a/b:c?d=e&f"),  # printable ASCII stays as it is
        ],
    )
    def test_values_are_percent_encoded(self, value: str, encoded: str) -> None:
        headers, _ = _event({"n": 1}, subject=value, extensions={"note": value}).to_binary()
        assert headers["ce-subject"] == encoded
        assert headers["ce-note"] == encoded

    def test_every_header_value_is_printable_ascii_without_space_quote_or_raw_percent(
        self,
    ) -> None:
        nasty = 'space here "quoted" 50% ünïcödé ✓ 😀 end'
        headers, _ = _event(
            {"n": 1}, subject=nasty, extensions={"note": nasty}, partition_key=nasty
        ).to_binary()
        for name, value in headers.items():
            assert set(value) <= _PRINTABLE_ASCII, (name, value)
            assert '"' not in value
            # every '%' starts an upper-case escape; a literal percent is itself escaped
            assert not re.search(r"%(?![0-9A-F]{2})", value), (name, value)
        for name in ("ce-subject", "ce-note", "ce-partitionkey"):
            assert unquote(headers[name], errors="strict") == nasty

    @pytest.mark.parametrize("through", BINARY_MODES)
    def test_values_decode_back(self, through: RoundTrip) -> None:
        nasty = 'hello world "quoted" 100% ünïcödé ✓ 😀 %20 %%'
        event = _event(
            {"n": 1},
            subject=nasty,
            dataschema="https://example.com/schemas/ä b.json",
            extensions={"note": nasty},
            partition_key="kunde müller",
        )
        back = through(event)
        assert back == event
        assert back.subject == nasty
        assert back.extensions["note"] == nasty
        assert back.partition_key == "kunde müller"

    def test_source_and_id_with_spaces_decode_back(self) -> None:
        event = CloudEvent.create("order.created", "urn:my source/ü", {"n": 1}, id="id with space")
        assert _binary(event) == event

    def test_decoding_accepts_lower_case_and_needless_escapes(self) -> None:
        headers = {
            "ce-specversion": "1.0",
            "ce-id": "%65vt-1",  # 'e', needlessly encoded
            "ce-source": "/orders",
            "ce-type": "order.created",
            "ce-subject": "caf%c3%a9%20%e2%9c%93",
        }
        event = CloudEvent.from_binary(headers, b"")
        assert event.id == "evt-1"
        assert event.subject == "café ✓"

    def test_header_names_are_case_insensitive(self) -> None:
        headers = {
            "CE-SpecVersion": "1.0",
            "Ce-Id": "evt-1",
            "CE-SOURCE": "/orders",
            "ce-Type": "order.created",
            "CE-Tenant": "acme",
            "CONTENT-TYPE": "application/json",
        }
        [event] = from_http(headers, b'{"n":1}')
        assert (event.id, event.source, event.type) == ("evt-1", "/orders", "order.created")
        assert event.extensions == {"tenant": "acme"}
        assert event.data == {"n": 1}
        assert event.datacontenttype == "application/json"

    def test_invalid_utf8_escape_is_rejected(self) -> None:
        # HTTP binding 3.1.3.2: "%C0%A0" (an overlong space) MUST be rejected.
        headers = {**_binary_headers(), "ce-subject": "%C0%A0"}
        _expect_error("subject", lambda: CloudEvent.from_binary(headers, b""))


def _binary_headers(**extra: str) -> dict[str, str]:
    return {
        "ce-specversion": "1.0",
        "ce-id": "evt-1",
        "ce-source": "/orders",
        "ce-type": "order.created",
        **extra,
    }


# -- time ----------------------------------------------------------------------------------------


class TestTime:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("2024-05-01T12:30:15Z", datetime(2024, 5, 1, 12, 30, 15, tzinfo=UTC)),
            ("2024-05-01T12:30:15.5Z", datetime(2024, 5, 1, 12, 30, 15, 500000, tzinfo=UTC)),
            ("2024-05-01T12:30:15.123Z", datetime(2024, 5, 1, 12, 30, 15, 123000, tzinfo=UTC)),
            (
                "2024-05-01T12:30:15.123456789Z",  # nanoseconds, as Go's RFC3339Nano writes
                datetime(2024, 5, 1, 12, 30, 15, 123456, tzinfo=UTC),
            ),
            (
                "2024-05-01T14:30:15.250+02:00",
                datetime(2024, 5, 1, 12, 30, 15, 250000, tzinfo=UTC),
            ),
            ("2024-05-01T07:00:15-05:30", datetime(2024, 5, 1, 12, 30, 15, tzinfo=UTC)),
            ("2024-05-01T12:30:15+00:00", datetime(2024, 5, 1, 12, 30, 15, tzinfo=UTC)),
            ("2024-05-01t12:30:15z", datetime(2024, 5, 1, 12, 30, 15, tzinfo=UTC)),
        ],
    )
    def test_rfc3339_forms_parse(self, text: str, expected: datetime) -> None:
        from_json = CloudEvent.from_dict({**BASE, "time": text}).time
        from_header = CloudEvent.from_binary(_binary_headers(**{"ce-time": text}), b"").time
        for parsed in (from_json, from_header):
            assert parsed == expected
            assert parsed is not None and parsed.tzinfo is not None

    def test_offset_is_kept_on_parse(self) -> None:
        parsed = CloudEvent.from_dict({**BASE, "time": "2024-05-01T14:30:15+02:00"}).time
        assert parsed is not None and parsed.utcoffset() == timedelta(hours=2)

    @pytest.mark.parametrize(
        "text",
        [
            "yesterday",
            "",
            "2024-05-01",
            "2024-05-01T12:30:15",  # no offset
            "2024-05-01 12:30:15Z",
            "2024-05-01T12:30Z",
            "2024-13-01T12:30:15Z",
            "2024-05-01T12:30:15+0200",
            "2024-05-01T12:30:15Z\n",
            "1714566615",
        ],
    )
    def test_bad_time_is_refused(self, text: str) -> None:
        _expect_error("time", lambda: CloudEvent.from_dict({**BASE, "time": text}))

    def test_bad_time_in_a_header_is_refused(self) -> None:
        headers = _binary_headers(**{"ce-time": "not%20a%20time"})
        _expect_error("time", lambda: CloudEvent.from_binary(headers, b""))

    def test_non_string_time_is_refused(self) -> None:
        _expect_error("time", lambda: CloudEvent.from_dict({**BASE, "time": 1714566615}))


# -- decoding errors -------------------------------------------------------------------------------


class TestErrors:
    @pytest.mark.parametrize("name", ["id", "source", "type", "specversion"])
    def test_missing_required_attribute(self, name: str) -> None:
        obj = {k: v for k, v in BASE.items() if k != name}
        _expect_error(name, lambda: CloudEvent.from_dict(obj))
        _expect_error(name, lambda: CloudEvent.from_json(json.dumps(obj)))

    @pytest.mark.parametrize("name", ["id", "source", "type", "specversion"])
    def test_missing_required_header(self, name: str) -> None:
        headers = {k: v for k, v in _binary_headers().items() if k != f"ce-{name}"}
        _expect_error(name, lambda: CloudEvent.from_binary(headers, b""))
        # from_http still sees binary mode (other ce-* headers) and names the attribute
        _expect_error(name, lambda: from_http(headers, b""))

    @pytest.mark.parametrize("name", ["id", "source", "type", "specversion"])
    def test_empty_required_attribute(self, name: str) -> None:
        _expect_error(name, lambda: CloudEvent.from_dict({**BASE, name: ""}))

    @pytest.mark.parametrize("name", ["id", "source", "type", "specversion"])
    def test_non_string_required_attribute(self, name: str) -> None:
        _expect_error(name, lambda: CloudEvent.from_dict({**BASE, name: 1}))

    @pytest.mark.parametrize("name", ["subject", "datacontenttype", "dataschema"])
    def test_empty_optional_attribute(self, name: str) -> None:
        _expect_error(name, lambda: CloudEvent.from_dict({**BASE, name: ""}))

    def test_every_missing_attribute_is_reported(self) -> None:
        error = _expect_error("id", lambda: CloudEvent.from_dict({"type": "", "x": 1}))
        assert set(_fields(error)) == {"id", "source", "type", "specversion"}

    @pytest.mark.parametrize("version", ["0.3", "1", "2.0", "1.0 "])
    def test_unsupported_specversion(self, version: str) -> None:
        _expect_error("specversion", lambda: CloudEvent.from_dict({**BASE, "specversion": version}))
        headers = _binary_headers(**{"ce-specversion": version})
        _expect_error("specversion", lambda: CloudEvent.from_binary(headers, b""))

    def test_specversion_0_3_via_create(self) -> None:
        event = CloudEvent(type="t", source="/s", id="1", specversion="0.3")
        _expect_error("specversion", event.validate)

    @pytest.mark.parametrize(
        "name",
        [
            "Tenant",  # upper case
            "TENANT",
            "a" * 21,  # too long
            "with-dash",
            "under_score",
            "dotted.name",
            "ünï",
            "tenant\n",
            "",
        ],
    )
    def test_bad_extension_name(self, name: str) -> None:
        _expect_error(name, lambda: CloudEvent.from_dict({**BASE, name: "v"}))
        _expect_error(name, lambda: _event(extensions={name: "v"}))

    def test_twenty_character_extension_name_is_fine(self) -> None:
        event = CloudEvent.from_dict({**BASE, "a" * 20: "v", "x1": 1})
        assert event.extensions == {"a" * 20: "v", "x1": 1}

    @pytest.mark.parametrize(
        "name", ["id", "source", "type", "specversion", "time", "subject", "data", "data_base64"]
    )
    def test_reserved_extension_name(self, name: str) -> None:
        _expect_error(name, lambda: _event(extensions={name: "v"}))

    @pytest.mark.parametrize("value", [1.5, [1], {"a": 1}])
    def test_bad_extension_value(self, value: Any) -> None:
        _expect_error("tenant", lambda: CloudEvent.from_dict({**BASE, "tenant": value}))

    def test_data_and_data_base64_both(self) -> None:
        obj = {**BASE, "data": {"n": 1}, "data_base64": "AAE="}
        _expect_error("data", lambda: CloudEvent.from_dict(obj))

    @pytest.mark.parametrize("encoded", ["not base64!", "AAE", "AA=E", "☃", 1234, True, [1]])
    def test_bad_base64(self, encoded: Any) -> None:
        obj = {**BASE, "datacontenttype": "application/octet-stream", "data_base64": encoded}
        _expect_error("data_base64", lambda: CloudEvent.from_dict(obj))

    def test_bytes_data_with_a_json_content_type(self) -> None:
        _expect_error(
            "datacontenttype", lambda: _event(BINARY_BLOB, datacontenttype="application/json")
        )

    def test_non_string_content_type_with_base64_data(self) -> None:
        obj = {**BASE, "datacontenttype": 5, "data_base64": "AAE="}
        _expect_error("datacontenttype", lambda: CloudEvent.from_dict(obj))

    @pytest.mark.parametrize("body", [b"[]", b"[1, 2]", b'"an event"', b"42", b"null", b"true"])
    def test_not_an_object(self, body: bytes) -> None:
        with pytest.raises(EventFormatError, match="JSON object"):
            CloudEvent.from_json(body)
        with pytest.raises(EventFormatError, match="JSON object"):
            from_http({"Content-Type": STRUCTURED_CONTENT_TYPE}, body)

    @pytest.mark.parametrize(
        "body", [b"", b"{", b"{not json}", b"<xml/>", b"\xff\xfe{}", "{'a': 1}"]
    )
    def test_not_json_at_all(self, body: bytes | str) -> None:
        with pytest.raises(EventFormatError, match="not valid JSON"):
            CloudEvent.from_json(body)
        with pytest.raises(EventFormatError, match="not valid JSON"):
            from_batch(body)

    @pytest.mark.parametrize("body", [b"{}", json.dumps(BASE).encode(), b'"x"', b"1"])
    def test_batch_not_an_array(self, body: bytes) -> None:
        with pytest.raises(EventFormatError, match="JSON array"):
            from_batch(body)
        with pytest.raises(EventFormatError, match="JSON array"):
            from_http({"Content-Type": BATCH_CONTENT_TYPE}, body)

    def test_batch_names_the_index_of_the_bad_event(self) -> None:
        body = json.dumps(
            [BASE, {k: v for k, v in BASE.items() if k != "type"}, {**BASE, "id": "evt-2"}]
        )
        error = _expect_error("[1].type", lambda: from_batch(body))
        assert _fields(error) == ["[1].type"]
        _expect_error("[1].type", lambda: from_http({"Content-Type": BATCH_CONTENT_TYPE}, body))

    def test_batch_reports_every_bad_event(self) -> None:
        body = json.dumps(
            [
                {**BASE, "time": "never"},
                BASE,
                {**BASE, "specversion": "0.3"},
                "not an object",
                {**BASE, "Bad": 1},
            ]
        )
        error = _expect_error("[0].time", lambda: from_batch(body))
        assert _fields(error) == ["[0].time", "[2].specversion", "[3]", "[4].Bad"]

    def test_unknown_content_type_without_ce_headers(self) -> None:
        _expect_error(
            "content-type", lambda: from_http({"Content-Type": "application/xml"}, b"<a/>")
        )
        _expect_error("content-type", lambda: from_http({}, json.dumps(BASE).encode()))
        _expect_error(
            "content-type",
            lambda: from_http({"Content-Type": "application/json"}, json.dumps(BASE).encode()),
        )

    @pytest.mark.parametrize(
        "content_type", ["application/json", "application/json; charset=utf-8", "text/json"]
    )
    def test_binary_json_content_type_with_a_non_json_body(self, content_type: str) -> None:
        headers = {**_binary_headers(), "Content-Type": content_type}
        _expect_error("data", lambda: CloudEvent.from_binary(headers, b"this is not JSON"))
        _expect_error("data", lambda: from_http(headers, b"{broken"))

    def test_binary_without_content_type_expects_json(self) -> None:
        assert CloudEvent.from_binary(_binary_headers(), b'{"n":1}').data == {"n": 1}
        _expect_error("data", lambda: CloudEvent.from_binary(_binary_headers(), b"\xff\x00"))


# -- JSON null (JSON format 2.2: null is the same as absent) --------------------------------------


class TestNullMembers:
    def test_spec_example_with_nulls_parses(self) -> None:
        obj = {
            **BASE,
            "subject": None,
            "time": None,
            "unsetextension": None,
            "comexampleothervalue": 5,
            "datacontenttype": "application/json",
            "data": {"appinfoA": "abc"},
        }
        event = CloudEvent.from_dict(obj)
        assert event.subject is None
        assert event.time is None
        assert event.extensions == {"comexampleothervalue": 5}
        assert event.data == {"appinfoA": "abc"}

    def test_null_data_base64_is_no_data(self) -> None:
        event = CloudEvent.from_dict({**BASE, "data_base64": None})
        assert event.data is None

    def test_null_data_beside_data_base64(self) -> None:
        event = CloudEvent.from_dict(
            {**BASE, "datacontenttype": "image/png", "data": None, "data_base64": "AAE="}
        )
        assert event.data == b"\x00\x01"

    def test_null_required_attribute_is_missing(self) -> None:
        _expect_error("id", lambda: CloudEvent.from_dict({**BASE, "id": None}))


# -- from_http mode detection ----------------------------------------------------------------------


class TestFromHttp:
    def test_structured_with_parameters_and_any_case(self) -> None:
        event = _event({"n": 1})
        for content_type in (
            "application/cloudevents+json",
            "application/cloudevents+json; charset=UTF-8",
            "Application/CloudEvents+JSON",
        ):
            assert from_http({"content-type": content_type}, event.to_json()) == [event]

    def test_structured_ignores_ce_headers(self) -> None:
        event = _event({"n": 1})
        headers = {"Content-Type": STRUCTURED_CONTENT_TYPE, "ce-id": "other", "ce-tenant": "x"}
        assert from_http(headers, event.to_json()) == [event]

    def test_batch(self) -> None:
        events = [_event({"n": 1}), _event({"n": 2}, id="evt-2")]
        headers = {"Content-Type": f"{BATCH_CONTENT_TYPE}; charset=UTF-8"}
        assert from_http(headers, to_batch(events)) == events

    def test_binary(self) -> None:
        event = _event({"n": 1}, partition_key="k")
        headers, body = event.to_binary()
        assert from_http(headers, body) == [event]
