"""Exporting recorded spans over OTLP/HTTP (binary protobuf), in batches, from a thread.

The OpenTelemetry SDK's exporter builds a protobuf object per span, per attribute and per
value before serialising; that costs several times the call it describes. Spans are
written here straight into the protobuf wire format instead (the message layout of
``opentelemetry/proto/trace/v1/trace.proto``), which a collector reads like any other
``application/x-protobuf`` export request.

Finished spans wait in a bounded queue; one daemon thread sends them every
``interval`` seconds, or as soon as a batch is full. When the collector cannot keep up,
the oldest waiting spans are dropped (and counted) rather than slowing the calls down.
"""

from __future__ import annotations

import gzip
import http.client
import logging
import os
import struct
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.trace import StatusCode

log = logging.getLogger("hybridmesh.observability")

_FIXED64 = struct.Struct("<Q").pack
_LOW_64 = (1 << 64) - 1
# Span fields 1 and 2 (trace id, span id, big-endian bytes), 4 (parent span id), and 6 to 8
# (kind, start and end times: fixed64 is little-endian).
_IDS = struct.Struct(">2sQQ2sQ").pack
_PARENT = struct.Struct(">2sQ").pack
_TIMES = struct.Struct("<BBBQBQ").pack
_DOUBLE = struct.Struct("<d").pack
#: Encoded key/value pairs by (key, value): most attributes repeat (names, targets, methods).
_PAIRS_KEPT = 4096
_STATUS_CODES = {StatusCode.UNSET: 0, StatusCode.OK: 1, StatusCode.ERROR: 2}


class FinishedSpan(Protocol):
    """What the encoder reads from a recorded span. ``kind`` is the OTLP number (1 internal,
    2 server, 3 client, 4 producer, 5 consumer), ``status_code`` too (0 unset, 1 ok, 2
    error); times are nanoseconds since the epoch."""

    @property
    def trace_id(self) -> int: ...
    @property
    def span_id(self) -> int: ...
    @property
    def parent_id(self) -> int: ...
    @property
    def trace_state(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def kind(self) -> int: ...
    @property
    def start_time(self) -> int: ...
    @property
    def end_time(self) -> int: ...
    @property
    def attributes(self) -> Mapping[str, Any]: ...
    @property
    def events(self) -> Sequence[tuple[str, Mapping[str, Any], int]]: ...
    @property
    def status_code(self) -> int: ...
    @property
    def status_message(self) -> str: ...


def _varint(value: int) -> bytes:
    if value < 0:
        value += 1 << 64
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(tag: int, payload: bytes) -> bytes:
    """A length-delimited field (``tag`` is the field number and wire type, one byte)."""
    size = len(payload)
    return bytes((tag, size)) + payload if size < 0x80 else bytes((tag,)) + _varint(size) + payload


def _any_value(value: Any) -> bytes:
    # AnyValue: string 1, bool 2, int 3, double 4, array 5 (ArrayValue: values 1).
    if isinstance(value, str):
        return _field(0x0A, value.encode())
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, int):
        return b"\x18" + _varint(value)
    if isinstance(value, float):
        return b"\x21" + _DOUBLE(value)
    if isinstance(value, (list, tuple)):
        return _field(0x2A, b"".join(_field(0x0A, _any_value(item)) for item in value))
    return _field(0x0A, str(value).encode())


class SpanEncoder:
    """Writes export requests: ``ExportTraceServiceRequest`` with one resource and scope."""

    def __init__(self, resource: Mapping[str, Any], scope: str) -> None:
        self._pairs: dict[tuple[str, Any], bytes] = {}
        self._names: dict[str, bytes] = {}
        resource_bytes = self._attributes(resource, 0x0A)  # Resource.attributes
        self._head = _field(0x0A, resource_bytes)  # ResourceSpans.resource
        self._scope = _field(0x0A, _field(0x0A, scope.encode()))  # ScopeSpans.scope.name

    def _pair(self, key: str, value: Any) -> bytes:
        """A ``Span.attributes`` field; kept for strings and booleans, which repeat."""
        cacheable = type(value) is str or type(value) is bool
        if cacheable:
            found = self._pairs.get((key, value))
            if found is not None:
                return found
        pair = _field(0x4A, _field(0x0A, key.encode()) + _field(0x12, _any_value(value)))
        if cacheable:
            if len(self._pairs) >= _PAIRS_KEPT:
                self._pairs.clear()
            self._pairs[(key, value)] = pair
        return pair

    @staticmethod
    def _attributes(attributes: Mapping[str, Any], tag: int) -> bytes:
        """``KeyValue`` fields numbered ``tag`` (resource and event attributes)."""
        return b"".join(
            _field(tag, _field(0x0A, k.encode()) + _field(0x12, _any_value(v)))
            for k, v in attributes.items()
        )

    def span(self, span: FinishedSpan) -> bytes:
        """One ``Span`` message, as a ``ScopeSpans.spans`` field."""
        trace_id = span.trace_id
        head = _IDS(b"\x0a\x10", trace_id >> 64, trace_id & _LOW_64, b"\x12\x08", span.span_id)
        parts = [head]
        if span.trace_state:
            parts.append(_field(0x1A, span.trace_state.encode()))
        if span.parent_id:
            parts.append(_PARENT(b"\x22\x08", span.parent_id))
        name = self._names.get(span.name)
        if name is None:
            if len(self._names) >= _PAIRS_KEPT:
                self._names.clear()
            name = self._names[span.name] = _field(0x2A, span.name.encode())
        parts.append(name)
        parts.append(_TIMES(0x30, span.kind, 0x39, span.start_time, 0x41, span.end_time))
        if span.attributes:
            pair = self._pair
            parts += [pair(k, v) for k, v in span.attributes.items()]
        for event_name, attributes, at in span.events:
            event = b"\x09" + _FIXED64(at) + _field(0x12, event_name.encode())
            parts.append(_field(0x5A, event + self._attributes(attributes, 0x1A)))
        if span.status_code:
            status = _field(0x12, span.status_message.encode()) if span.status_message else b""
            parts.append(_field(0x7A, status + bytes((0x18, span.status_code))))
        return _field(0x12, b"".join(parts))

    def request(self, spans: Iterable[bytes]) -> bytes:
        """An ``ExportTraceServiceRequest`` holding ``spans`` (as :meth:`span` wrote them)."""
        scope_spans = _field(0x12, self._scope + b"".join(spans))
        return _field(0x0A, self._head + scope_spans)


@dataclass(frozen=True, slots=True)
class OtlpOptions:
    """What the standard ``OTEL_EXPORTER_OTLP_*`` variables ask of the export: extra request
    headers (``OTEL_EXPORTER_OTLP_TRACES_HEADERS``, else ``OTEL_EXPORTER_OTLP_HEADERS``:
    ``key=value`` pairs separated by commas, values URL-encoded; an API key, say) and gzip
    compression (``OTEL_EXPORTER_OTLP_TRACES_COMPRESSION``, else
    ``OTEL_EXPORTER_OTLP_COMPRESSION``: ``gzip`` or ``none``)."""

    headers: Mapping[str, str] = field(default_factory=dict)
    gzip: bool = False

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> OtlpOptions:
        """The options the variables in ``environ`` (default ``os.environ``) set."""
        env = os.environ if environ is None else environ

        def read(name: str) -> str:
            traces = env.get(f"OTEL_EXPORTER_OTLP_TRACES_{name}")
            return (
                traces if traces is not None else env.get(f"OTEL_EXPORTER_OTLP_{name}", "")
            ).strip()

        headers: dict[str, str] = {}
        for pair in read("HEADERS").split(","):
            key, equals, value = pair.partition("=")
            if equals and key.strip():
                headers[key.strip()] = unquote(value.strip())
            elif pair.strip():
                log.warning("OTEL_EXPORTER_OTLP_HEADERS: %r is not key=value; ignored", pair)
        compression = read("COMPRESSION").lower()
        if compression not in ("", "none", "gzip"):
            log.warning(
                "OTLP compression %r is not gzip or none; sending uncompressed", compression
            )
        return cls(headers, compression == "gzip")


class OtlpHttpExporter:
    """Sends finished spans to an OTLP/HTTP traces endpoint from a thread of its own.

    :meth:`add` is what a span calls when it ends: it encodes the span and queues it. The
    encoding is done there, a few microseconds on each call, rather than by the thread a
    batch at a time: the thread would hold the interpreter lock for a whole batch, and every
    call waiting to resume would wait that long. The thread only joins and sends (the
    network waits release the lock). Batches are large (``batch_size`` spans, about 1.5 MB
    at 4,096) because each send hands the interpreter lock back and forth between the
    thread and the event loop a few times, and on a busy machine each handover can cost the
    loop a scheduling slice: a few large sends cost the calls less than many small ones.
    :meth:`flush` sends what waits now; :meth:`shutdown` sends it and stops the thread.
    """

    def __init__(
        self,
        endpoint: str,
        encoder: SpanEncoder,
        *,
        interval: float = 1.0,
        batch_size: int = 4096,
        queue_size: int = 32_768,
        timeout: float = 10.0,
        options: OtlpOptions | None = None,
    ) -> None:
        url = urlsplit(endpoint)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"OTLP endpoint {endpoint!r} is not an http(s) URL")
        self.endpoint = endpoint
        self._url = url
        self._path = (url.path or "/v1/traces") + (f"?{url.query}" if url.query else "")
        self._encoder = encoder
        self._interval = interval
        self._batch_size = batch_size
        self._timeout = timeout
        options = options or OtlpOptions()
        self._headers = {"Content-Type": "application/x-protobuf", **options.headers}
        self._gzip = options.gzip
        if options.gzip:
            self._headers["Content-Encoding"] = "gzip"
        self._queue: deque[bytes] = deque(maxlen=queue_size)
        self._queue_size = queue_size
        self._wake = threading.Event()
        self._idle = threading.Condition()
        self._stopping = False
        self._connection: http.client.HTTPConnection | None = None
        #: Spans sent and accepted, and spans lost (queue full, or the collector refused).
        self.sent = 0
        self.dropped = 0
        self._sending = 0
        self._flushing = 0
        self._thread = threading.Thread(target=self._run, name="hybridmesh-otlp", daemon=True)
        self._thread.start()

    def add(self, span: FinishedSpan) -> None:
        """Encode and queue a finished span; wake the thread when a batch is ready."""
        queue = self._queue
        size = len(queue)
        if size >= self._queue_size:
            self.dropped += 1  # the deque drops its oldest span to take this one
        queue.append(self._encoder.span(span))
        if size + 1 == self._batch_size:
            self._wake.set()

    def flush(self, timeout: float = 10.0) -> bool:
        """Send every span queued so far; True when they were all handed to the collector
        (accepted or refused) within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._idle:
            self._flushing += 1
            try:
                while self._queue or self._sending:
                    self._wake.set()
                    left = deadline - time.monotonic()
                    if left <= 0 or not self._thread.is_alive():
                        return False
                    self._idle.wait(left)
            finally:
                self._flushing -= 1
        return True

    def shutdown(self, timeout: float = 10.0) -> None:
        """Send what waits and stop the thread."""
        self.flush(timeout)
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        queue = self._queue
        while not self._stopping:
            woken = self._wake.wait(self._interval)
            self._wake.clear()
            # Woken for a full batch, send full batches only: the rest waits to fill one.
            # At the interval, on flush and at shutdown, everything goes.
            while len(queue) >= (self._batch_size if woken and not self._flushing else 1):
                count = min(len(queue), self._batch_size)
                with self._idle:
                    self._sending = count
                batch = [queue.popleft() for _ in range(count)]
                try:
                    body = self._encoder.request(batch)
                    self._send(gzip.compress(body, 5) if self._gzip else body, count)
                except Exception:  # the thread must outlive any one bad batch
                    log.exception("exporting %d spans failed", count)
                    self.dropped += count
                with self._idle:
                    self._sending = 0
            with self._idle:
                self._idle.notify_all()
        if self._connection is not None:
            self._connection.close()

    def _send(self, body: bytes, count: int) -> None:
        for attempt in (1, 2):  # a kept-alive connection the collector closed: once more
            connection = self._connection or self._connect()
            try:
                connection.request("POST", self._path, body, self._headers)
                answer = connection.getresponse()
                answer.read()
            except (OSError, http.client.HTTPException) as error:
                connection.close()
                self._connection = None
                if attempt == 2:
                    log.warning("OTLP endpoint %s unreachable: %s", self.endpoint, error)
                    self.dropped += count
                continue
            if 200 <= answer.status < 300:
                self.sent += count
            else:
                log.warning("OTLP endpoint %s answered %d", self.endpoint, answer.status)
                self.dropped += count
            return

    def _connect(self) -> http.client.HTTPConnection:
        url = self._url
        kind = http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
        self._connection = kind(url.hostname or "", url.port, timeout=self._timeout)
        return self._connection


@dataclass(frozen=True, slots=True)
class _SdkSpan:
    """A span the OpenTelemetry SDK made, as the encoder reads it."""

    trace_id: int
    span_id: int
    parent_id: int
    trace_state: str
    name: str
    kind: int
    start_time: int
    end_time: int
    attributes: Mapping[str, Any]
    events: Sequence[tuple[str, Mapping[str, Any], int]]
    status_code: int
    status_message: str


class SdkSpanForwarder(SpanProcessor):
    """Hands spans made through the SDK (``get_tracer()``: other instrumentation) to the
    same exporter as the call spans, and shuts the exporter down with the provider."""

    def __init__(self, exporter: OtlpHttpExporter) -> None:
        self.exporter = exporter

    def on_end(self, span: ReadableSpan) -> None:
        context = span.context
        if context is None or not context.trace_flags.sampled:
            return
        status = span.status
        self.exporter.add(
            _SdkSpan(
                context.trace_id,
                context.span_id,
                span.parent.span_id if span.parent is not None else 0,
                context.trace_state.to_header() if context.trace_state else "",
                span.name,
                span.kind.value + 1,
                span.start_time or 0,
                span.end_time or 0,
                dict(span.attributes or {}),
                [(e.name, dict(e.attributes or {}), e.timestamp) for e in span.events],
                _STATUS_CODES[status.status_code],
                status.description or "",
            )
        )

    def shutdown(self) -> None:
        self.exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self.exporter.flush(timeout_millis / 1000)


__all__ = ["FinishedSpan", "OtlpHttpExporter", "OtlpOptions", "SdkSpanForwarder", "SpanEncoder"]
