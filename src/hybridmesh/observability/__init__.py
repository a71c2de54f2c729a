"""Observability: JSON logs with request and trace ids, Prometheus metrics, OpenTelemetry.

- :mod:`~hybridmesh.observability.context`: the request context bound through contextvars.
- :mod:`~hybridmesh.observability.logs`: one root handler writing JSON or text lines.
- :mod:`~hybridmesh.observability.metrics`: :class:`MeshMetrics`, the mesh's counters.
- :mod:`~hybridmesh.observability.tracing`: the tracer provider, call spans, ``traceparent``.
- :mod:`~hybridmesh.observability.sampling`: which traces are recorded (``OTEL_TRACES_SAMPLER``).
- :mod:`~hybridmesh.observability.recorded`: the light call spans recorded for OTLP export.
- :mod:`~hybridmesh.observability.otlp`: their OTLP/HTTP protobuf encoding and batch exporter.
- :mod:`~hybridmesh.observability.rollup`: the durable per-minute call counts, for SLOs.
- :mod:`~hybridmesh.observability.slo`: the SLOs measured from the store (``slo_report``).
- :mod:`~hybridmesh.observability.slo_rules`: their Prometheus recording and alerting rules.
"""

from hybridmesh.observability.context import (
    RequestContext,
    bind_context,
    current_context,
    current_request_id,
)
from hybridmesh.observability.logs import JsonFormatter, configure_logging, get_logger
from hybridmesh.observability.metrics import MeshMetrics
from hybridmesh.observability.tracing import (
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

__all__ = [
    "JsonFormatter",
    "MeshMetrics",
    "RequestContext",
    "bind_context",
    "configure_logging",
    "configure_tracing",
    "continue_trace",
    "current_context",
    "current_request_id",
    "current_trace_id",
    "extract_context",
    "get_logger",
    "get_tracer",
    "inject_child_headers",
    "inject_headers",
    "shutdown_tracing",
    "start_call_span",
    "start_context_span",
    "tracing_records",
]
