"""OpenTelemetry tracing: one configurable provider, call spans, W3C trace context headers.

The provider lives in a module-level holder rather than only in OpenTelemetry's global, which
can be set once per process: :func:`configure_tracing` may be called again (tests do) and the
newest configuration wins for :func:`get_tracer` and :func:`start_call_span`. The first
configuration is also offered to the global provider so other instrumentation can use it.

When tracing is not configured, spans are no-ops and cost almost nothing, but outbound
requests still carry a well-formed ``traceparent`` so that downstream logs can be correlated.
Configured without an exporter, call spans only carry context: log lines written inside
them carry their trace and span ids. With the OTLP exporter, call spans are recorded by
:mod:`~hybridmesh.observability.recorded` rather than by the SDK, for a fraction of the
cost; with another exporter (console, or one given to :func:`configure_tracing`), by the
SDK. Either way the sampler ``OTEL_TRACES_SAMPLER`` names decides which are recorded.
"""

from __future__ import annotations

import contextvars
import random
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from functools import lru_cache
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.trace import (
    INVALID_SPAN,
    INVALID_SPAN_CONTEXT,
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    Tracer,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from hybridmesh.core.settings import Settings
from hybridmesh.observability.otlp import (
    OtlpHttpExporter,
    OtlpOptions,
    SdkSpanForwarder,
    SpanEncoder,
)
from hybridmesh.observability.recorded import Recorder
from hybridmesh.observability.sampling import Sampler

DEFAULT_TRACER_NAME = "hybridmesh"

_PROPAGATOR = TraceContextTextMapPropagator()
_NOOP_TRACER: Tracer = trace.NoOpTracer()
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_FLAGS = (TraceFlags(TraceFlags.DEFAULT), _SAMPLED)
_getrandbits = random.getrandbits


_DEFAULT_SAMPLER = Sampler.named("parentbased_always_on")


class _TracingState:
    """The provider in force and the tracers already taken from it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.provider: TracerProvider | None = None
        self.tracers: dict[str, Tracer] = {}
        #: Whether spans go anywhere. When they do not, call spans only carry context.
        self.recording = False
        #: Records call spans for OTLP export, bypassing the SDK's spans (see ``recorded``).
        self.recorder: Recorder | None = None
        #: Which traces a trace begun here records, and says it does (its sampled flag).
        self.sampler = _DEFAULT_SAMPLER


_state = _TracingState()


def configure_tracing(
    settings: Settings | None = None, *, exporter: SpanExporter | None = None
) -> TracerProvider:
    """Build a tracer provider for this process and make it the one spans go to.

    The resource's ``service.name`` is ``settings.service_name``. Spans are exported to
    ``exporter`` when given (synchronously, which is what tests want), otherwise as
    ``settings.otel_exporter`` says: ``none`` exports nothing, ``console`` prints each span,
    ``otlp`` sends batches to ``settings.otlp_endpoint`` over HTTP (binary protobuf, from a
    thread: see :mod:`~hybridmesh.observability.otlp`), with the headers and compression
    ``OTEL_EXPORTER_OTLP_(TRACES_)HEADERS`` and ``..._COMPRESSION`` ask for. Which traces
    are recorded is ``settings.otel_traces_sampler`` (``OTEL_TRACES_SAMPLER``, with
    ``OTEL_TRACES_SAMPLER_ARG``). ``settings`` defaults to the environment.

    May be called more than once: the previous provider is flushed and shut down, and the
    new one replaces it. Returns the new provider.
    """
    settings = settings or Settings()
    sampler = Sampler.from_settings(settings)
    provider = TracerProvider(
        sampler=sampler.for_sdk(),
        resource=Resource.create({SERVICE_NAME: settings.service_name}),
    )
    recorder: Recorder | None = None
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    elif settings.otel_exporter == "console":
        # ``out`` is read now, not at import: a redirected stdout is honoured.
        provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter(out=sys.stdout)))
    elif settings.otel_exporter == "otlp":
        encoder = SpanEncoder(provider.resource.attributes, DEFAULT_TRACER_NAME)
        options = OtlpOptions.from_environment()
        otlp = OtlpHttpExporter(settings.otlp_endpoint, encoder, options=options)
        provider.add_span_processor(SdkSpanForwarder(otlp))  # shuts ``otlp`` down with it
        recorder = Recorder(sampler, otlp.add)
    recording = exporter is not None or settings.otel_exporter != "none"
    with _state.lock:
        previous, _state.provider = _state.provider, provider
        _state.tracers = {}
        _state.recording = recording
        _state.recorder = recorder
        _state.sampler = sampler
    if previous is not None:
        previous.shutdown()
    _offer_global(provider)
    return provider


def _offer_global(provider: TracerProvider) -> None:
    # OpenTelemetry lets the global provider be set once and warns on later attempts; only
    # set it while it is still the API's placeholder proxy.
    if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        trace.set_tracer_provider(provider)


def shutdown_tracing() -> None:
    """Flush and shut down the configured provider, and stop tracing. Safe when unconfigured."""
    with _state.lock:
        provider, _state.provider = _state.provider, None
        _state.tracers = {}
        _state.recording = False
        _state.recorder = None
        _state.sampler = _DEFAULT_SAMPLER
    if provider is not None:
        provider.shutdown()


def get_tracer(name: str = DEFAULT_TRACER_NAME) -> Tracer:
    """A tracer from the configured provider, or a no-op tracer when tracing is unconfigured."""
    tracer = _state.tracers.get(name)
    if tracer is not None:
        return tracer
    with _state.lock:
        provider = _state.provider
        if provider is None:
            return _NOOP_TRACER
        tracer = provider.get_tracer(name)
        _state.tracers[name] = tracer
        return tracer


class _PropagatingSpan:
    """A current span that carries ids for propagation and records nothing.

    It continues the current trace (a new one without a current span) under a new span id,
    and keeps the parent's sampled flag, so that a caller's decision not to sample travels
    on; a new trace is flagged as the sampler decides."""

    __slots__ = ("_span", "_token")

    def __init__(self) -> None:
        parent = trace.get_current_span().get_span_context()
        if parent.is_valid:
            trace_id, flags = parent.trace_id, _FLAGS[parent.trace_flags & 0x01]
        else:
            trace_id = _getrandbits(128) or 1
            flags = _FLAGS[_state.sampler.sampled(parent, trace_id)]
        self._span = NonRecordingSpan(
            SpanContext(trace_id, _getrandbits(64) or 1, False, flags, parent.trace_state)
        )
        self._token: object = None

    def __enter__(self) -> Span:
        self._token = otel_context.attach(trace.set_span_in_context(self._span))
        return self._span

    def __exit__(self, *exc_info: object) -> None:
        otel_context.detach(self._token)  # type: ignore[arg-type]


_UNTRACED = nullcontext(INVALID_SPAN)


def tracing_records() -> bool:
    """Whether spans are recorded (tracing configured with an exporter). Hot loops use it to
    skip building spans nobody will read."""
    return _state.recording


def start_context_span() -> AbstractContextManager[Span]:
    """Run the ``with`` block under a new span id in the current trace (a new trace when
    there is none), recording nothing: log lines written inside carry its trace and span
    ids, and :func:`inject_child_headers` writes children of it. Whether or not tracing is
    configured; a call that would make an unrecorded :func:`start_call_span` uses it."""
    return _PropagatingSpan()


def start_call_span(
    name: str,
    attributes: Mapping[str, Any] | None = None,
    kind: SpanKind = SpanKind.CLIENT,
) -> AbstractContextManager[Span]:
    """Run the ``with`` block inside a new span, made current, and end the span on exit.

    When the block raises, the exception is recorded on the span as an event, the span's
    status is set to ERROR, and the exception propagates unchanged. When tracing is not
    configured this yields an invalid, non-recording span and does nothing else. When it is
    configured without an exporter, nobody could read a recorded span: the span is made
    current for context propagation only (logs and ``traceparent`` carry its ids), and
    nothing is recorded.
    """
    if _state.provider is None:
        return _UNTRACED
    if not _state.recording:
        return _PropagatingSpan()
    recorder = _state.recorder
    if recorder is not None:
        return recorder.call(name, attributes, kind)
    return _recorded_span(name, attributes, kind)


@contextmanager
def _recorded_span(
    name: str, attributes: Mapping[str, Any] | None, kind: SpanKind
) -> Iterator[Span]:
    tracer = get_tracer()
    with tracer.start_as_current_span(
        name,
        kind=kind,
        attributes=dict(attributes) if attributes else None,
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        try:
            yield span
        except BaseException as error:
            span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
            raise


def inject_headers(headers: dict[str, str], span: Span | None = None) -> None:
    """Write the W3C ``traceparent`` (and ``tracestate`` when present) into ``headers``.

    The values describe ``span`` (by default the current span). Without a valid span
    (tracing not configured and no incoming context) a fresh random trace id and span id are
    written, so every outbound request carries a well-formed ``traceparent``.
    """
    span_context = (span or trace.get_current_span()).get_span_context()
    if not span_context.is_valid:
        headers["traceparent"] = _new_trace_header()
        return
    # Written by hand rather than by the SDK's propagator: recent SDKs also set the Trace
    # Context level 2 "random" flag (0x02), which strict level 1 receivers reject. Only the
    # sampled flag is carried.
    flags = span_context.trace_flags & trace.TraceFlags.SAMPLED
    headers["traceparent"] = (
        f"00-{span_context.trace_id:032x}-{span_context.span_id:016x}-{flags:02x}"
    )
    if span_context.trace_state:
        headers["tracestate"] = span_context.trace_state.to_header()


def inject_child_headers(headers: dict[str, str]) -> None:
    """Write the ``traceparent`` (and ``tracestate``) that a child of the current span would
    carry, without making that span: the current trace id (a fresh one without a current
    span) and a fresh span id. This is what an unrecorded call span propagates, for less:
    hot paths use it when :func:`tracing_records` is false."""
    parent = trace.get_current_span().get_span_context()
    if not parent.is_valid:
        headers["traceparent"] = _new_trace_header()
        return
    flags = parent.trace_flags & 0x01
    headers["traceparent"] = f"00-{parent.trace_id:032x}-{_getrandbits(64) or 1:016x}-0{flags}"
    if parent.trace_state:
        headers["tracestate"] = parent.trace_state.to_header()


def _new_trace_header() -> str:
    """A ``traceparent`` that begins a trace, flagged sampled as the sampler decides."""
    trace_id = _getrandbits(128) or 1
    sampled = _state.sampler.sampled(INVALID_SPAN_CONTEXT, trace_id)
    return f"00-{trace_id:032x}-{_getrandbits(64) or 1:016x}-0{int(sampled)}"


def extract_context(headers: Mapping[str, str]) -> Context:
    """The trace context carried by incoming ``headers`` (names matched case-insensitively).

    Pass the result as ``context=`` when starting the server span, or attach it, so that
    spans started while handling the request are children of the caller's span. Headers
    without a valid ``traceparent`` give a context with no parent.
    """
    carrier = {key.lower(): value for key, value in headers.items()}
    return _PROPAGATOR.extract(carrier)


class continue_trace:
    """Make the trace context in ``carrier`` (``traceparent``/``tracestate``) current for
    the ``with`` block, so spans started inside are its children. A carrier without a valid
    ``traceparent`` changes nothing. Cheap: consumers run it for every event."""

    __slots__ = ("_carrier", "_token")

    def __init__(self, carrier: Mapping[str, str]) -> None:
        self._carrier = carrier
        self._token: object = None

    def __enter__(self) -> None:
        carrier = self._carrier
        value = carrier.get("traceparent")
        if not value:
            return
        context = extract_context(carrier) if carrier.get("tracestate") else _remote_context(value)
        if context is not None:
            self._token = otel_context.attach(context)

    def __exit__(self, *exc_info: object) -> None:
        if self._token is not None:
            otel_context.detach(self._token)  # type: ignore[arg-type]
            self._token = None


def context_in_trace(carrier: Mapping[str, str]) -> contextvars.Context:
    """A copy of the current context in which the trace context of ``carrier`` is current,
    as inside ``with continue_trace(carrier)``: give it (or copies of it) to
    ``asyncio.create_task(..., context=...)``, rather than entering and leaving the trace in
    each of many tasks."""
    context = contextvars.copy_context()
    context.run(continue_trace(carrier).__enter__)
    return context


@lru_cache(maxsize=1024)
def _remote_context(traceparent: str) -> Context | None:
    """The context whose current span is the remote parent ``traceparent`` names. Cached:
    events published together share one, and contexts are immutable."""
    parent = _parse_traceparent(traceparent)
    if parent is None:
        return None
    return trace.set_span_in_context(NonRecordingSpan(parent))


def _parse_traceparent(value: str) -> SpanContext | None:
    """A remote span context from a W3C ``traceparent`` (version 00 layout), or None."""
    parts = value.strip().split("-")
    if len(parts) < 4 or len(parts[1]) != 32 or len(parts[2]) != 16 or len(parts[3]) != 2:
        return None
    try:
        trace_id, span_id, flags = int(parts[1], 16), int(parts[2], 16), int(parts[3], 16)
    except ValueError:
        return None
    if not trace_id or not span_id or parts[0] == "ff":
        return None
    return SpanContext(trace_id, span_id, True, TraceFlags(flags & 0x01))


def current_trace_id() -> str | None:
    """The current span's trace id as 32 lowercase hex characters, or ``None`` if none."""
    span_context = trace.get_current_span().get_span_context()
    if not span_context.is_valid:
        return None
    return format(span_context.trace_id, "032x")


__all__ = [
    "DEFAULT_TRACER_NAME",
    "configure_tracing",
    "context_in_trace",
    "current_trace_id",
    "extract_context",
    "get_tracer",
    "inject_child_headers",
    "inject_headers",
    "shutdown_tracing",
    "start_call_span",
    "start_context_span",
]
