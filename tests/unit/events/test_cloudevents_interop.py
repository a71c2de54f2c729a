"""Interop with the official CloudEvents Python SDK, in both directions.

Two SDK APIs are exercised:

- the 1.x API (``cloudevents.http`` / ``cloudevents.conversion``; in cloudevents 2.x it
  lives on as ``cloudevents.v1.http`` / ``cloudevents.v1.conversion``);
- the 2.x core API (``cloudevents.core``), skipped when the installed SDK is 1.x.

Neither SDK API has a batch reader or writer, so batch interop splits/joins the JSON array
and hands each element to the SDK's single-event JSON functions.

Known SDK 1.x-API quirks the tests steer around (they are not ours):
it neither percent-encodes nor percent-decodes ``ce-*`` header values, puts non-string
extension values into the header dict as they are, and JSON-encodes ``str`` data in binary
mode whatever the content type.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from tests.cloudevents_sdk import (
    CoreCloudEvent,
    JSONFormat,
    core_http,
    needs_core,
    sdk_conversion,
    sdk_http,
)

from hybridmesh.events.envelope import (
    BATCH_CONTENT_TYPE,
    STRUCTURED_CONTENT_TYPE,
    CloudEvent,
    from_http,
    to_batch,
)

TIME = datetime(2024, 5, 1, 12, 30, 15, 123456, tzinfo=UTC)
BLOB = b"\x00\x01\x02\xfe\xff binary \x80"  # neither JSON nor UTF-8
JSON_DATA: dict[str, Any] = {"order": 42, "items": [{"sku": "a-1", "qty": 2}], "note": "naïve ✓"}
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
TYPED_EXTENSIONS: dict[str, Any] = {
    "traceparent": TRACEPARENT,
    "tenant": "acme",
    "retries": 3,
    "replay": True,
}


def _ours(data: Any = None, **kwargs: Any) -> CloudEvent:
    kwargs.setdefault("time", TIME)
    kwargs.setdefault("subject", "order-42")
    return CloudEvent.create("order.created", "/orders", data, **kwargs)


def _parse_time(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def _sdk_attributes(event: Any) -> dict[str, Any]:
    """Attributes of a 1.x-API SDK event, ``time`` as a datetime."""
    attrs = dict(event.get_attributes())
    if "time" in attrs:
        attrs["time"] = _parse_time(attrs["time"])
    return attrs


def _core_attributes(event: Any) -> dict[str, Any]:
    return dict(event.get_attributes())


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


def _stringify_headers(headers: dict[str, Any]) -> dict[str, str]:
    """What an HTTP client does to a header dict before sending it."""
    return {name: str(value) for name, value in headers.items()}


# -- ours -> SDK 1.x API -------------------------------------------------------------------


class TestOursReadBySdk:
    @pytest.mark.parametrize(
        "event",
        [
            pytest.param(_ours(JSON_DATA, extensions=TYPED_EXTENSIONS), id="json"),
            pytest.param(_ours(BLOB, partition_key="customer-7"), id="bytes"),
            pytest.param(
                _ours(BLOB, datacontenttype="application/vnd.apache.thrift.binary"),
                id="bytes-custom-type",
            ),
            pytest.param(_ours(None, dataschema="https://example.com/o.json"), id="no-data"),
            pytest.param(_ours("hello ✓", datacontenttype="text/plain"), id="text"),
        ],
    )
    def test_structured(self, event: CloudEvent) -> None:
        body = event.to_json()
        for sdk_event in (
            sdk_http.from_http({"content-type": STRUCTURED_CONTENT_TYPE}, body),
            sdk_http.from_json(body),
        ):
            assert _sdk_attributes(sdk_event) == _our_attributes(event)
            assert sdk_event.get_data() == event.data
            assert type(sdk_event.get_data()) is type(event.data)

    def test_structured_extension_types(self) -> None:
        sdk_event = sdk_http.from_json(_ours(JSON_DATA, extensions=TYPED_EXTENSIONS).to_json())
        assert sdk_event["retries"] == 3
        assert sdk_event["replay"] is True
        assert sdk_event["traceparent"] == TRACEPARENT

    @pytest.mark.parametrize(
        ("event", "expected_data"),
        [
            pytest.param(_ours(JSON_DATA, extensions=TYPED_EXTENSIONS), JSON_DATA, id="json"),
            pytest.param(_ours(BLOB, partition_key="customer-7"), BLOB, id="bytes"),
            pytest.param(_ours(None), None, id="no-data"),
            # the 1.x API hands non-JSON bodies over as bytes
            pytest.param(_ours("hello", datacontenttype="text/plain"), b"hello", id="text"),
        ],
    )
    def test_binary(self, event: CloudEvent, expected_data: Any) -> None:
        headers, body = event.to_binary()
        sdk_event = sdk_http.from_http(headers, body)
        # headers carry no types: extensions arrive as their canonical strings
        assert _sdk_attributes(sdk_event) == _our_attributes(event, as_strings=True)
        assert sdk_event.get_data() == expected_data

    def test_batch(self) -> None:
        events = [
            _ours(JSON_DATA, extensions=TYPED_EXTENSIONS),
            _ours(BLOB, id="evt-2", partition_key="p"),
            _ours(None, id="evt-3"),
        ]
        items = json.loads(to_batch(events))
        assert isinstance(items, list)
        sdk_events = [sdk_http.from_json(json.dumps(item)) for item in items]
        assert [_sdk_attributes(e) for e in sdk_events] == [_our_attributes(e) for e in events]
        assert [e.get_data() for e in sdk_events] == [e.data for e in events]


# -- SDK 1.x API -> ours ---------------------------------------------------------------------


def _sdk_event(data: Any = None, **attributes: Any) -> Any:
    attributes = {"type": "order.created", "source": "/orders", "subject": "order-42", **attributes}
    return sdk_http.CloudEvent(attributes, data)


def _assert_same(ours: CloudEvent, sdk_event: Any, *, as_strings: bool = False) -> None:
    expected = _sdk_attributes(sdk_event)
    if as_strings:
        expected = {
            k: v if k == "time" or isinstance(v, str) else str(v) for k, v in expected.items()
        }
    assert _our_attributes(ours) == expected
    assert ours.time is not None and ours.time.tzinfo is not None


class TestSdkReadByOurs:
    @pytest.mark.parametrize(
        ("data", "attributes"),
        [
            pytest.param(JSON_DATA, {"datacontenttype": "application/json"}, id="json"),
            pytest.param(JSON_DATA, {}, id="json-no-type"),
            pytest.param(BLOB, {"datacontenttype": "application/octet-stream"}, id="bytes"),
            pytest.param(BLOB, {}, id="bytes-no-type"),
            pytest.param("héllo", {"datacontenttype": "text/plain"}, id="text"),
            pytest.param(None, {"dataschema": "https://example.com/o.json"}, id="no-data"),
        ],
    )
    def test_structured(self, data: Any, attributes: dict[str, Any]) -> None:
        sdk_event = _sdk_event(data, **attributes, **TYPED_EXTENSIONS)
        headers, body = sdk_conversion.to_structured(sdk_event)
        [ours] = from_http(headers, body)
        assert ours == CloudEvent.from_json(body)
        _assert_same(ours, sdk_event)
        assert ours.data == data
        assert type(ours.data) is type(data)
        assert ours.extensions == TYPED_EXTENSIONS
        assert ours.traceparent == TRACEPARENT

    def test_structured_sdk_defaults(self) -> None:
        sdk_event = sdk_http.CloudEvent({"type": "order.created", "source": "/orders"}, {"a": 1})
        headers, body = sdk_conversion.to_structured(sdk_event)
        [ours] = from_http(headers, body)
        assert ours.id == sdk_event["id"]
        assert ours.time == _parse_time(sdk_event["time"])
        assert ours.specversion == "1.0"
        assert ours.data == {"a": 1}

    @pytest.mark.parametrize(
        ("data", "attributes"),
        [
            pytest.param(JSON_DATA, {"datacontenttype": "application/json"}, id="json"),
            pytest.param(JSON_DATA, {}, id="json-no-type"),
            pytest.param(BLOB, {"datacontenttype": "application/octet-stream"}, id="bytes"),
            pytest.param(None, {}, id="no-data"),
        ],
    )
    def test_binary(self, data: Any, attributes: dict[str, Any]) -> None:
        # str and int extensions only: the 1.x API writes a bool header as "True"
        extensions = {"traceparent": TRACEPARENT, "tenant": "acme", "retries": 3}
        sdk_event = _sdk_event(data, **attributes, **extensions)
        headers, body = sdk_conversion.to_binary(sdk_event)
        [ours] = from_http(_stringify_headers(headers), body)
        _assert_same(ours, sdk_event, as_strings=True)
        assert ours.data == data
        assert ours.extensions == {"traceparent": TRACEPARENT, "tenant": "acme", "retries": "3"}

    def test_batch(self) -> None:
        sdk_events = [
            _sdk_event(JSON_DATA, datacontenttype="application/json", **TYPED_EXTENSIONS),
            _sdk_event(BLOB, datacontenttype="application/octet-stream", partitionkey="p"),
            _sdk_event(None),
        ]
        body = "[" + ",".join(sdk_conversion.to_json(e).decode() for e in sdk_events) + "]"
        ours = from_http({"Content-Type": BATCH_CONTENT_TYPE}, body.encode())
        assert len(ours) == 3
        for mine, theirs in zip(ours, sdk_events, strict=True):
            _assert_same(mine, theirs)
            assert mine.data == theirs.get_data()
        assert ours[0].extensions == TYPED_EXTENSIONS
        assert ours[1].partition_key == "p"


# -- 2.x core API, both directions -----------------------------------------------------------------

NASTY = 'hello world "quoted" 100% ünïcödé ✓ 😀'


@needs_core
class TestCoreApi:
    @pytest.mark.parametrize(
        "event",
        [
            pytest.param(_ours(JSON_DATA, extensions=TYPED_EXTENSIONS), id="json"),
            pytest.param(_ours(BLOB, partition_key="customer-7"), id="bytes"),
            pytest.param(_ours("héllo ✓", datacontenttype="text/plain"), id="text"),
            pytest.param(_ours(None), id="no-data"),
        ],
    )
    def test_ours_structured_read_by_core(self, event: CloudEvent) -> None:
        message = core_http.HTTPMessage({"content-type": STRUCTURED_CONTENT_TYPE}, event.to_json())
        core_event = core_http.from_http(message, JSONFormat())
        assert _core_attributes(core_event) == _our_attributes(event)
        assert core_event.get_data() == event.data

    @pytest.mark.parametrize(
        "event",
        [
            pytest.param(_ours(JSON_DATA, extensions=TYPED_EXTENSIONS), id="json"),
            pytest.param(_ours(BLOB, partition_key="customer-7"), id="bytes"),
            pytest.param(_ours("héllo ✓", datacontenttype="text/plain"), id="text"),
            pytest.param(_ours(None), id="no-data"),
            pytest.param(
                _ours({"n": 1}, subject=NASTY, extensions={"note": NASTY}), id="percent-encoded"
            ),
        ],
    )
    def test_ours_binary_read_by_core(self, event: CloudEvent) -> None:
        headers, body = event.to_binary()
        core_event = core_http.from_http(core_http.HTTPMessage(headers, body), JSONFormat())
        assert _core_attributes(core_event) == _our_attributes(event, as_strings=True)
        assert core_event.get_data() == event.data

    def test_ours_batch_read_by_core(self) -> None:
        events = [_ours(JSON_DATA, extensions=TYPED_EXTENSIONS), _ours(BLOB, id="evt-2")]
        items = json.loads(to_batch(events))
        core_events = [JSONFormat().read(None, json.dumps(item)) for item in items]
        assert [_core_attributes(e) for e in core_events] == [_our_attributes(e) for e in events]
        assert [e.get_data() for e in core_events] == [e.data for e in events]

    @staticmethod
    def _core_event(data: Any, **attributes: Any) -> Any:
        return CoreCloudEvent(
            {"type": "order.created", "source": "/orders", "time": TIME, **attributes}, data
        )

    @pytest.mark.parametrize(
        ("data", "attributes"),
        [
            pytest.param(JSON_DATA, {"datacontenttype": "application/json"}, id="json"),
            pytest.param(BLOB, {"datacontenttype": "application/octet-stream"}, id="bytes"),
            pytest.param("héllo ✓", {"datacontenttype": "text/plain"}, id="text"),
            pytest.param(None, {}, id="no-data"),
        ],
    )
    def test_core_structured_read_by_ours(self, data: Any, attributes: dict[str, Any]) -> None:
        core_event = self._core_event(data, subject=NASTY, **attributes, **TYPED_EXTENSIONS)
        message = core_http.to_structured(core_event, JSONFormat())
        [ours] = from_http(message.headers, message.body)
        assert _our_attributes(ours) == _core_attributes(core_event)
        assert ours.data == data
        assert ours.extensions == TYPED_EXTENSIONS

    @pytest.mark.parametrize(
        ("data", "attributes"),
        [
            pytest.param(JSON_DATA, {"datacontenttype": "application/json"}, id="json"),
            pytest.param(JSON_DATA, {}, id="json-no-type"),
            pytest.param(BLOB, {"datacontenttype": "application/octet-stream"}, id="bytes"),
            pytest.param("héllo ✓", {"datacontenttype": "text/plain"}, id="text"),
            pytest.param(None, {}, id="no-data"),
        ],
    )
    def test_core_binary_read_by_ours(self, data: Any, attributes: dict[str, Any]) -> None:
        # str and int extensions only: core writes a bool header as "True"
        extensions = {"traceparent": TRACEPARENT, "note": NASTY, "retries": 3}
        core_event = self._core_event(data, subject=NASTY, **attributes, **extensions)
        message = core_http.to_binary(core_event, JSONFormat())
        assert " " not in message.headers["ce-subject"]  # core percent-encodes too
        [ours] = from_http(message.headers, message.body)
        expected = {
            k: v if isinstance(v, str | datetime) else str(v)
            for k, v in _core_attributes(core_event).items()
        }
        assert _our_attributes(ours) == expected
        assert ours.subject == NASTY
        assert ours.data == data
        assert ours.extensions == {"traceparent": TRACEPARENT, "note": NASTY, "retries": "3"}

    def test_core_batch_read_by_ours(self) -> None:
        core_events = [
            self._core_event(JSON_DATA, datacontenttype="application/json", **TYPED_EXTENSIONS),
            self._core_event(BLOB, datacontenttype="application/octet-stream"),
        ]
        fmt = JSONFormat()
        body = b"[" + b",".join(fmt.write(e) for e in core_events) + b"]"
        ours = from_http({"Content-Type": BATCH_CONTENT_TYPE}, body)
        assert [_our_attributes(e) for e in ours] == [_core_attributes(e) for e in core_events]
        assert [e.data for e in ours] == [e.get_data() for e in core_events]
