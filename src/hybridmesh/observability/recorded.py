"""Call spans recorded for OTLP export: a light span, and the ``with`` block that makes it.

The OpenTelemetry SDK's span takes locks, validates and copies its attributes, and goes
through span processors; on a call that takes a few hundred microseconds that is felt. A
:class:`RecordedSpan` keeps what an OTLP span holds in plain slots and, when it ends,
hands itself to the exporter's queue (:class:`~hybridmesh.observability.otlp.OtlpHttpExporter`).
It is an OpenTelemetry API span, so it can be current: logs, ``traceparent`` headers and
child spans read it as they read any other.
"""

from __future__ import annotations

import random
import traceback
from collections.abc import Callable, Mapping
from time import time_ns
from types import TracebackType
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import (
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
)
from opentelemetry.util import types

from hybridmesh.observability.sampling import Sampler

_getrandbits = random.getrandbits
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_UNSAMPLED = TraceFlags(TraceFlags.DEFAULT)
_STATUS_CODES = {StatusCode.UNSET: 0, StatusCode.OK: 1, StatusCode.ERROR: 2}
#: Shared by every span without events until one is added (most have none): never mutated.
_NO_EVENTS: list[tuple[str, Mapping[str, Any], int]] = []


class RecordedSpan(Span):
    """A span that records its name, times, attributes, events and status until it ends,
    then is handed to ``sink`` (once). Its ``with`` block makes it current; an exception
    that escapes the block is recorded (an ``exception`` event and ERROR status) and the
    span ends on exit."""

    __slots__ = (
        "_context",
        "_sink",
        "_token",
        "attributes",
        "end_time",
        "events",
        "kind",
        "name",
        "parent_id",
        "span_id",
        "start_time",
        "status_code",
        "status_message",
        "trace_id",
        "trace_state",
    )

    def __init__(
        self,
        sink: Callable[[RecordedSpan], None],
        name: str,
        context: SpanContext,
        parent_id: int,
        kind: SpanKind,
        attributes: dict[str, Any],
    ) -> None:
        self._sink: Callable[[RecordedSpan], None] | None = sink
        self._context = context
        self.trace_id = context.trace_id
        self.span_id = context.span_id
        self.trace_state = context.trace_state.to_header() if context.trace_state else ""
        self.parent_id = parent_id
        self.name = name
        self.kind = kind.value + 1  # OTLP numbers kinds from 1 (0 is "unspecified")
        self.attributes = attributes
        self.events: list[tuple[str, Mapping[str, Any], int]] = _NO_EVENTS
        self.status_code = 0
        self.status_message = ""
        self.start_time = time_ns()
        self.end_time = 0
        self._token: object = None

    def __enter__(self) -> RecordedSpan:
        self._token = otel_context.attach(trace.set_span_in_context(self))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        otel_context.detach(self._token)  # type: ignore[arg-type]
        if error is not None and self._sink is not None:
            self.record_exception(error, escaped=True)
            self.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
        self.end()

    def get_span_context(self) -> SpanContext:
        return self._context

    def is_recording(self) -> bool:
        return self._sink is not None

    def set_attribute(self, key: str, value: types.AttributeValue) -> None:
        if self._sink is not None:
            self.attributes[key] = value

    def set_attributes(self, attributes: Mapping[str, types.AttributeValue]) -> None:
        if self._sink is not None:
            self.attributes.update(attributes)

    def add_event(
        self, name: str, attributes: types.Attributes = None, timestamp: int | None = None
    ) -> None:
        if self._sink is not None:
            if self.events is _NO_EVENTS:
                self.events = []
            self.events.append((name, dict(attributes or {}), timestamp or time_ns()))

    def update_name(self, name: str) -> None:
        if self._sink is not None:
            self.name = name

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        if self._sink is None:
            return
        code = status.status_code if isinstance(status, Status) else status
        if isinstance(status, Status):
            description = status.description
        self.status_code = _STATUS_CODES[code]
        self.status_message = (description or "") if code is StatusCode.ERROR else ""

    def record_exception(
        self,
        exception: BaseException,
        attributes: types.Attributes = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        fields: dict[str, Any] = {
            "exception.type": type(exception).__qualname__,
            "exception.message": str(exception),
            "exception.stacktrace": "".join(traceback.format_exception(exception)),
            "exception.escaped": str(escaped),
        }
        fields.update(attributes or {})
        self.add_event("exception", fields, timestamp)

    def end(self, end_time: int | None = None) -> None:
        sink, self._sink = self._sink, None
        if sink is not None:
            self.end_time = end_time or time_ns()
            sink(self)


class _Unsampled:
    """The ``with`` block of a call span the sampler left out: it carries ids, with the
    sampled flag off, and records nothing."""

    __slots__ = ("_span", "_token")

    def __init__(self, context: SpanContext) -> None:
        self._span = NonRecordingSpan(context)
        self._token: object = None

    def __enter__(self) -> Span:
        self._token = otel_context.attach(trace.set_span_in_context(self._span))
        return self._span

    def __exit__(self, *exc_info: object) -> None:
        otel_context.detach(self._token)  # type: ignore[arg-type]


class Recorder:
    """Where recorded spans go (``sink``, called with each span as it ends) and which are
    recorded (``sampler``)."""

    __slots__ = ("sampler", "sink")

    def __init__(self, sampler: Sampler, sink: Callable[[RecordedSpan], None]) -> None:
        self.sampler = sampler
        self.sink = sink

    def call(
        self, name: str, attributes: Mapping[str, Any] | None, kind: SpanKind
    ) -> RecordedSpan | _Unsampled:
        """A call span, started now as a child of the current span (a new trace without
        one); its ``with`` block makes it current, and ends it."""
        parent = trace.get_current_span().get_span_context()
        if parent.is_valid:
            trace_id, state, parent_id = parent.trace_id, parent.trace_state, parent.span_id
        else:
            trace_id, state, parent_id = _getrandbits(128) or 1, None, 0
        span_id = _getrandbits(64) or 1
        if not self.sampler.sampled(parent, trace_id):
            return _Unsampled(SpanContext(trace_id, span_id, False, _UNSAMPLED, state))
        return RecordedSpan(
            self.sink,
            name,
            SpanContext(trace_id, span_id, False, _SAMPLED, state),
            parent_id,
            kind,
            dict(attributes) if attributes else {},
        )


__all__ = ["RecordedSpan", "Recorder"]
