"""Logging: one root handler, JSON or text lines that carry the request id and trace id.

Named ``logs`` rather than ``logging`` so that it never shadows the standard library module.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from opentelemetry import trace

from hybridmesh.core.settings import Settings
from hybridmesh.observability.context import current_context

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_BLANK_RECORD = logging.LogRecord("", logging.INFO, "", 0, "", None, None)
_RECORD_ATTRIBUTES = frozenset(vars(_BLANK_RECORD)) | {"message", "asctime", "taskName"}

_CONTEXT_FIELDS = ("request_id", "source_service", "trace_id", "span_id")


def _correlation(record: logging.LogRecord) -> dict[str, Any]:
    """The record's request and trace fields: from ``extra=`` if set there, else current.

    "Current" is read when the record is formatted; the handler :func:`configure_logging`
    installs formats in the logging call itself, so that is the caller's context.
    """
    context = current_context()
    span_context = trace.get_current_span().get_span_context()
    valid = span_context.is_valid
    fields: dict[str, Any] = {
        "request_id": context.request_id,
        "source_service": context.source_service,
        "trace_id": format(span_context.trace_id, "032x") if valid else None,
        "span_id": format(span_context.span_id, "016x") if valid else None,
    }
    for name in _CONTEXT_FIELDS:
        if name in record.__dict__:
            fields[name] = record.__dict__[name]
    for key, value in context.extra.items():
        fields.setdefault(key, value)
    return fields


class JsonFormatter(logging.Formatter):
    """Formats each record as one JSON object on one line.

    Keys: ``time`` (ISO-8601, UTC, milliseconds), ``level``, ``logger``, ``message``,
    ``request_id``, ``source_service`` (from :func:`bind_context`), ``trace_id`` and
    ``span_id`` (from the current OpenTelemetry span, ``null`` outside one), then
    ``exception`` and ``stack`` when present, then extra context fields and any fields
    passed with ``extra=``. Values JSON cannot hold are written with ``str()``.
    """

    def format(self, record: logging.LogRecord) -> str:
        """The record as a JSON line (without the trailing newline)."""
        created = datetime.fromtimestamp(record.created, UTC)
        payload: dict[str, Any] = {
            "time": created.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        correlation = _correlation(record)
        for name in _CONTEXT_FIELDS:
            payload[name] = correlation.pop(name)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            payload["exception"] = record.exc_text
        if record.stack_info:
            payload["stack"] = self.formatStack(record.stack_info)
        payload.update(correlation)
        for key, value in record.__dict__.items():
            if key not in _RECORD_ATTRIBUTES and key not in payload:
                payload[key] = value
        return json.dumps(payload, default=str, ensure_ascii=False)


class _TextFormatter(logging.Formatter):
    """Human-readable lines with the request id and trace id appended when known."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-8s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        correlation = _correlation(record)
        tags = [
            f"{name}={correlation[name]}"
            for name in ("request_id", "trace_id")
            if correlation[name] is not None
        ]
        if not tags:
            return line
        first, newline, rest = line.partition("\n")
        return f"{first} [{' '.join(tags)}]{newline}{rest}"


class _MeshHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler :func:`configure_logging` installs; its type marks it for replacement."""


def configure_logging(settings: Settings | None = None, *, stream: TextIO | None = None) -> None:
    """Send all logging to ``stream`` (default ``sys.stderr``) as ``settings`` says.

    Lines are JSON (:class:`JsonFormatter`) or text by ``settings.log_format``; the root level
    is ``settings.log_level``. ``settings`` defaults to the environment. Idempotent: a later
    call replaces the handler an earlier one installed, so the root logger has exactly one
    handler of ours. Handlers installed by others are left alone. Raises ``ValueError`` for
    an unknown level name.
    """
    settings = settings or Settings()
    level = logging.getLevelName(settings.log_level.upper())
    if not isinstance(level, int):
        raise ValueError(f"unknown log level {settings.log_level!r}")
    handler = _MeshHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if settings.log_format == "json" else _TextFormatter())
    root = logging.getLogger()
    for existing in [h for h in root.handlers if isinstance(h, _MeshHandler)]:
        root.removeHandler(existing)
        existing.close()
    root.addHandler(handler)
    root.setLevel(level)


def get_logger(name: str) -> logging.Logger:
    """The standard library logger ``name``; its lines carry the request and trace context."""
    return logging.getLogger(name)


__all__ = ["JsonFormatter", "configure_logging", "get_logger"]
