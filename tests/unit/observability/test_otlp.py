"""Spans recorded for OTLP: what a collector receives, read back with the OTLP protobuf."""

from __future__ import annotations

import gzip
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span as OtlpSpan
from opentelemetry.proto.trace.v1.trace_pb2 import Status as OtlpStatus
from opentelemetry.trace import SpanKind

from hybridmesh.core.settings import Settings
from hybridmesh.observability import (
    configure_tracing,
    continue_trace,
    get_tracer,
    inject_headers,
    shutdown_tracing,
    start_call_span,
)
from hybridmesh.observability.otlp import OtlpHttpExporter, OtlpOptions, SpanEncoder
from hybridmesh.observability.recorded import Recorder
from hybridmesh.observability.sampling import Sampler


class Collector:
    """An OTLP/HTTP endpoint on loopback that keeps every export request it is sent."""

    def __init__(self, status: int = 200) -> None:
        self.requests: list[tuple[str, str, bytes]] = []
        self.headers: list[dict[str, str]] = []
        collector = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                collector.requests.append((self.path, self.headers["Content-Type"], body))
                collector.headers.append(dict(self.headers))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_port}/v1/traces"
        # A short poll: ``shutdown()`` waits for the serving loop to look again.
        serve = self.server.serve_forever
        threading.Thread(target=serve, kwargs={"poll_interval": 0.01}, daemon=True).start()

    def spans(self) -> list[OtlpSpan]:
        found: list[OtlpSpan] = []
        for _, _, body in self.requests:
            for resource in ExportTraceServiceRequest.FromString(body).resource_spans:
                for scope in resource.scope_spans:
                    found += scope.spans
        return found


@pytest.fixture
def collector() -> Iterator[Collector]:
    running = Collector()
    yield running
    running.server.shutdown()
    running.server.server_close()


def otlp(collector: Collector) -> None:
    configure_tracing(
        Settings(service_name="orders", otel_exporter="otlp", otlp_endpoint=collector.endpoint)
    )


def test_call_spans_reach_the_collector_as_otlp_protobuf(collector: Collector) -> None:
    otlp(collector)
    attributes = {"target": "users", "attempt": 2, "ratio": 0.5, "retried": True, "tags": ["a"]}
    with start_call_span("communicate users", attributes) as outer:
        with pytest.raises(ValueError), start_call_span("rest GET users", kind=SpanKind.SERVER):
            raise ValueError("refused")
        headers: dict[str, str] = {}
        inject_headers(headers)
    shutdown_tracing()  # sends what waits

    ((path, content_type, body),) = collector.requests
    assert (path, content_type) == ("/v1/traces", "application/x-protobuf")
    (resource,) = ExportTraceServiceRequest.FromString(body).resource_spans
    service = {kv.key: kv.value.string_value for kv in resource.resource.attributes}
    assert service["service.name"] == "orders"
    inner, root = collector.spans()
    context = outer.get_span_context()
    assert root.trace_id == inner.trace_id == context.trace_id.to_bytes(16, "big")
    assert root.span_id == inner.parent_span_id == context.span_id.to_bytes(8, "big")
    assert headers["traceparent"] == f"00-{root.trace_id.hex()}-{root.span_id.hex()}-01"
    assert not root.parent_span_id
    assert root.name == "communicate users" and root.kind == OtlpSpan.SPAN_KIND_CLIENT
    assert inner.kind == OtlpSpan.SPAN_KIND_SERVER
    assert root.start_time_unix_nano <= inner.start_time_unix_nano
    assert inner.end_time_unix_nano <= root.end_time_unix_nano
    values = {kv.key: kv.value for kv in root.attributes}
    assert values["target"].string_value == "users"
    assert values["attempt"].int_value == 2
    assert values["ratio"].double_value == 0.5
    assert values["retried"].bool_value is True
    assert [v.string_value for v in values["tags"].array_value.values] == ["a"]
    assert inner.status.code == OtlpStatus.STATUS_CODE_ERROR
    assert inner.status.message == "ValueError: refused"
    (event,) = inner.events
    fields = {kv.key: kv.value.string_value for kv in event.attributes}
    assert event.name == "exception" and fields["exception.message"] == "refused"
    assert root.status.code == OtlpStatus.STATUS_CODE_UNSET


def test_spans_of_other_instrumentation_are_exported_too(collector: Collector) -> None:
    otlp(collector)
    with start_call_span("ours"), get_tracer("other").start_as_current_span("theirs"):
        pass
    shutdown_tracing()
    theirs, ours = collector.spans()
    assert theirs.name == "theirs" and theirs.parent_span_id == ours.span_id


def test_an_incoming_trace_state_is_exported_and_passed_on(collector: Collector) -> None:
    otlp(collector)
    carrier = {
        "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "tracestate": "vendor=value",
    }
    with continue_trace(carrier), start_call_span("handle"):
        headers: dict[str, str] = {}
        inject_headers(headers)
    shutdown_tracing()
    (span,) = collector.spans()
    assert span.trace_id.hex() == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert span.parent_span_id.hex() == "00f067aa0ba902b7"
    assert span.trace_state == headers["tracestate"] == "vendor=value"


def send_one(endpoint: str, options: OtlpOptions | None = None) -> OtlpHttpExporter:
    exporter = OtlpHttpExporter(endpoint, SpanEncoder({}, "test"), options=options)
    recorder = Recorder(Sampler.named("always_on"), exporter.add)
    with recorder.call("lost", None, SpanKind.CLIENT):
        pass
    assert exporter.flush()
    exporter.shutdown()
    return exporter


def test_spans_a_collector_refuses_are_counted_as_lost() -> None:
    refusing = Collector(status=503)
    try:
        exporter = send_one(refusing.endpoint)
    finally:
        refusing.server.shutdown()
        refusing.server.server_close()
    assert len(refusing.requests) == 1
    assert (exporter.sent, exporter.dropped) == (0, 1)


def test_spans_an_unreachable_collector_misses_are_counted_as_lost() -> None:
    free = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    endpoint = f"http://127.0.0.1:{free.server_port}/v1/traces"
    free.server_close()  # nothing listens there now
    exporter = send_one(endpoint)
    assert (exporter.sent, exporter.dropped) == (0, 1)


def test_an_accepted_export_counts_its_spans_as_sent(collector: Collector) -> None:
    exporter = send_one(collector.endpoint)
    assert (exporter.sent, exporter.dropped) == (1, 0)
    assert [span.name for span in collector.spans()] == ["lost"]


def test_an_endpoint_that_is_not_a_url_is_refused() -> None:
    with pytest.raises(ValueError, match="not an http"):
        OtlpHttpExporter("127.0.0.1:4318", SpanEncoder({}, "test"))


def test_headers_and_gzip_from_the_standard_variables_reach_the_collector(
    collector: Collector, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-api-key=general")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "x-api-key=s%3Dcret, x-team = ops")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")
    options = OtlpOptions.from_environment()
    assert options == OtlpOptions({"x-api-key": "s=cret", "x-team": "ops"}, gzip=True)
    send_one(collector.endpoint, options)
    (headers,) = collector.headers
    assert headers["x-api-key"] == "s=cret" and headers["Content-Encoding"] == "gzip"
    (_, _, body) = collector.requests[0]
    exported = ExportTraceServiceRequest.FromString(gzip.decompress(body))
    assert exported.resource_spans[0].scope_spans[0].spans[0].name == "lost"


def test_without_the_variables_nothing_is_added() -> None:
    assert OtlpOptions.from_environment({}) == OtlpOptions({}, gzip=False)
    assert OtlpOptions.from_environment({"OTEL_EXPORTER_OTLP_HEADERS": "broken"}).headers == {}
