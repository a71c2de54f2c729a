from __future__ import annotations

import re

import pytest
from opentelemetry import context as otel_context
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from hybridmesh.core.settings import Settings
from hybridmesh.observability import (
    configure_tracing,
    continue_trace,
    current_trace_id,
    extract_context,
    get_tracer,
    inject_child_headers,
    inject_headers,
    shutdown_tracing,
    start_call_span,
    start_context_span,
    tracing_records,
)

TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-(0[01])$")


def parse(headers: dict[str, str]) -> tuple[str, str, str]:
    match = TRACEPARENT.match(headers["traceparent"])
    assert match is not None, headers["traceparent"]
    trace_id, span_id, flags = match.groups()
    return trace_id, span_id, flags


def test_call_span_is_exported_with_its_attributes(spans: InMemorySpanExporter) -> None:
    with start_call_span("rest GET users", attributes={"hybridmesh.target": "users"}):
        pass
    (span,) = spans.get_finished_spans()
    assert span.name == "rest GET users"
    assert span.kind is SpanKind.CLIENT
    assert span.attributes == {"hybridmesh.target": "users"}
    assert span.status.status_code is StatusCode.UNSET
    assert span.resource.attributes["service.name"] == "test-service"


def test_call_span_records_the_exception_and_error_status(spans: InMemorySpanExporter) -> None:
    with pytest.raises(ConnectionError, match="refused"), start_call_span("rest GET users"):
        raise ConnectionError("refused")
    (span,) = spans.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "ConnectionError: refused"
    (event,) = span.events
    assert event.name == "exception"
    assert event.attributes is not None
    assert event.attributes["exception.type"] == "ConnectionError"


def test_nested_call_spans_are_parent_and_child(spans: InMemorySpanExporter) -> None:
    with (
        start_call_span("communicate users", kind=SpanKind.INTERNAL),
        start_call_span("attempt"),
    ):
        pass
    child, parent = spans.get_finished_spans()
    assert parent.kind is SpanKind.INTERNAL
    assert child.parent is not None and parent.context is not None
    assert child.parent.span_id == parent.context.span_id


def test_injected_traceparent_names_the_active_span(spans: InMemorySpanExporter) -> None:
    headers: dict[str, str] = {}
    with start_call_span("call") as span:
        inject_headers(headers)
        active = span.get_span_context()
        assert current_trace_id() == format(active.trace_id, "032x")
    trace_id, span_id, flags = parse(headers)
    assert trace_id == format(active.trace_id, "032x")
    assert span_id == format(active.span_id, "016x")
    assert flags == "01"
    assert "tracestate" not in headers


def test_traceparent_is_written_even_without_tracing() -> None:
    first: dict[str, str] = {}
    second: dict[str, str] = {}
    with start_call_span("untraced") as span:
        assert not span.is_recording()
        inject_headers(first)
    inject_headers(second)
    first_trace, _, _ = parse(first)
    second_trace, _, _ = parse(second)
    assert first_trace != "0" * 32
    assert first_trace != second_trace
    assert current_trace_id() is None


def test_untraced_call_span_still_propagates_exceptions() -> None:
    with pytest.raises(KeyError), start_call_span("untraced"):
        raise KeyError("x")


def test_extracted_context_makes_the_next_span_a_child(spans: InMemorySpanExporter) -> None:
    headers: dict[str, str] = {}
    with start_call_span("client") as client:
        inject_headers(headers)
    incoming = {"TraceParent": headers["traceparent"], "X-Request-ID": "r-1"}
    token = otel_context.attach(extract_context(incoming))
    try:
        with start_call_span("server", kind=SpanKind.SERVER) as server:
            assert current_trace_id() == format(client.get_span_context().trace_id, "032x")
    finally:
        otel_context.detach(token)
    assert server.get_span_context().trace_id == client.get_span_context().trace_id
    finished = {span.name: span for span in spans.get_finished_spans()}
    parent = finished["server"].parent
    assert parent is not None and parent.is_remote
    assert parent.span_id == client.get_span_context().span_id


def test_extracted_context_can_be_passed_to_a_tracer(spans: InMemorySpanExporter) -> None:
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    incoming = {"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01", "tracestate": "vendor=x"}
    with get_tracer().start_as_current_span("server", context=extract_context(incoming)):
        outgoing: dict[str, str] = {}
        inject_headers(outgoing)
    assert parse(outgoing)[0] == trace_id
    assert outgoing["tracestate"] == "vendor=x"


def test_headers_without_traceparent_extract_to_no_parent(spans: InMemorySpanExporter) -> None:
    token = otel_context.attach(extract_context({"traceparent": "garbage"}))
    try:
        with start_call_span("server"):
            pass
    finally:
        otel_context.detach(token)
    (span,) = spans.get_finished_spans()
    assert span.parent is None


def test_without_tracing_an_incoming_trace_is_passed_on() -> None:
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    token = otel_context.attach(
        extract_context({"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"})
    )
    try:
        outgoing: dict[str, str] = {}
        inject_headers(outgoing)
    finally:
        otel_context.detach(token)
    assert parse(outgoing) == (trace_id, "00f067aa0ba902b7", "01")


def test_configure_tracing_twice_sends_spans_to_the_newest_exporter() -> None:
    first, second = InMemorySpanExporter(), InMemorySpanExporter()
    provider_one = configure_tracing(Settings(service_name="one"), exporter=first)
    with start_call_span("to first"):
        pass
    provider_two = configure_tracing(Settings(service_name="two"), exporter=second)
    with start_call_span("to second"):
        pass
    assert provider_one is not provider_two
    assert [s.name for s in first.get_finished_spans()] == ["to first"]
    assert [s.name for s in second.get_finished_spans()] == ["to second"]
    assert second.get_finished_spans()[0].resource.attributes["service.name"] == "two"


def test_shutdown_tracing_turns_spans_into_no_ops(spans: InMemorySpanExporter) -> None:
    shutdown_tracing()
    with start_call_span("after shutdown") as span:
        assert not span.is_recording()
    assert not get_tracer().start_span("direct").is_recording()
    assert spans.get_finished_spans() == ()
    assert not tracing_records()
    shutdown_tracing()  # a second call is harmless


def test_context_span_carries_ids_for_logs_and_children_without_tracing() -> None:
    with start_context_span() as outer:
        trace_id = current_trace_id()
        assert trace_id is not None and not outer.is_recording()
        with start_context_span() as inner:
            assert current_trace_id() == trace_id
            assert inner.get_span_context().span_id != outer.get_span_context().span_id
            child: dict[str, str] = {}
            inject_child_headers(child)
    assert current_trace_id() is None
    assert parse(child)[0] == trace_id and parse(child)[2] == "01"


def test_an_unsampled_parent_stays_unsampled_in_unrecorded_children() -> None:
    configure_tracing(Settings(otel_exporter="none"))
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    with continue_trace({"traceparent": f"00-{trace_id}-00f067aa0ba902b7-00"}):
        child: dict[str, str] = {}
        inject_child_headers(child)
        with start_call_span("unrecorded"):
            grandchild: dict[str, str] = {}
            inject_headers(grandchild)
    assert parse(child)[0] == parse(grandchild)[0] == trace_id
    assert parse(child)[2] == parse(grandchild)[2] == "00"


def test_console_exporter_prints_spans(capsys: pytest.CaptureFixture[str]) -> None:
    configure_tracing(Settings(service_name="printer", otel_exporter="console"))
    with start_call_span("printed span"):
        pass
    out = capsys.readouterr().out
    assert "printed span" in out and "printer" in out


def test_none_exporter_propagates_context_without_recording() -> None:
    configure_tracing(Settings(otel_exporter="none"))
    with start_call_span("outer") as outer:
        assert not outer.is_recording()
        trace_id = current_trace_id()
        assert trace_id is not None
        with start_call_span("inner") as inner:
            assert current_trace_id() == trace_id
            assert inner.get_span_context().span_id != outer.get_span_context().span_id
            headers: dict[str, str] = {}
            inject_headers(headers)
            assert headers["traceparent"].split("-")[1] == trace_id


def test_otlp_exporter_is_configured_without_sending_anything() -> None:
    provider = configure_tracing(
        Settings(otel_exporter="otlp", otlp_endpoint="http://127.0.0.1:9/v1/traces")
    )
    assert provider.resource.attributes["service.name"] == "hybridmesh"
    shutdown_tracing()
