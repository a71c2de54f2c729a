from __future__ import annotations

import io
import json
import logging
import sys
from datetime import datetime
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from hybridmesh.core.settings import Settings
from hybridmesh.observability import (
    JsonFormatter,
    bind_context,
    configure_logging,
    get_logger,
    start_call_span,
)


def record(
    message: str = "hello %s",
    args: tuple[object, ...] = ("world",),
    exc_info: Any = None,
    **extra: object,
) -> logging.LogRecord:
    made = logging.LogRecord(
        "hybridmesh.test", logging.WARNING, __file__, 1, message, args, exc_info
    )
    made.__dict__.update(extra)
    return made


def formatted(made: logging.LogRecord) -> dict[str, Any]:
    line = JsonFormatter().format(made)
    assert "\n" not in line
    parsed: dict[str, Any] = json.loads(line)
    return parsed


def test_json_line_has_the_standard_fields() -> None:
    line = formatted(record())
    assert line["level"] == "WARNING"
    assert line["logger"] == "hybridmesh.test"
    assert line["message"] == "hello world"
    assert line["time"].endswith("Z")
    assert datetime.fromisoformat(line["time"]).utcoffset() is not None
    for key in ("request_id", "source_service", "trace_id", "span_id"):
        assert line[key] is None
    assert "exception" not in line


def test_json_line_carries_the_bound_request_context() -> None:
    with bind_context(request_id="r-42", source_service="orders", tenant="acme"):
        line = formatted(record())
    assert line["request_id"] == "r-42"
    assert line["source_service"] == "orders"
    assert line["tenant"] == "acme"


def test_json_line_carries_the_current_trace_and_span_ids(spans: InMemorySpanExporter) -> None:
    with start_call_span("work"), bind_context(request_id="r-7"):
        line = formatted(record())
    (span,) = spans.get_finished_spans()
    assert span.context is not None
    assert line["trace_id"] == format(span.context.trace_id, "032x")
    assert line["span_id"] == format(span.context.span_id, "016x")
    assert line["request_id"] == "r-7"


def test_json_line_includes_the_exception_text() -> None:
    try:
        raise ValueError("bad input")
    except ValueError:
        line = formatted(record(exc_info=sys.exc_info()))
    assert "Traceback" in line["exception"]
    assert "ValueError: bad input" in line["exception"]


def test_json_line_includes_extra_fields_and_stringifies_the_unserialisable() -> None:
    class Opaque:
        def __str__(self) -> str:
            return "opaque!"

    line = formatted(record(attempt=2, target="users", thing=Opaque()))
    assert line["attempt"] == 2
    assert line["target"] == "users"
    assert line["thing"] == "opaque!"


def test_extra_request_id_overrides_the_bound_one() -> None:
    with bind_context(request_id="bound"):
        line = formatted(record(request_id="explicit"))
    assert line["request_id"] == "explicit"


def test_configure_logging_writes_json_lines_through_get_logger(
    root_logger: logging.Logger,
) -> None:
    stream = io.StringIO()
    configure_logging(Settings(log_level="info", log_format="json"), stream=stream)
    log = get_logger("hybridmesh.unit")
    with bind_context(request_id="r-1"):
        log.debug("hidden")
        log.info("shown %d", 1, extra={"target": "users"})
    (line,) = stream.getvalue().splitlines()
    parsed = json.loads(line)
    assert parsed["message"] == "shown 1"
    assert parsed["request_id"] == "r-1"
    assert parsed["target"] == "users"
    assert root_logger.level == logging.INFO


def test_configure_logging_is_idempotent_and_the_last_call_wins(
    root_logger: logging.Logger,
) -> None:
    first, second = io.StringIO(), io.StringIO()
    configure_logging(Settings(log_format="json"), stream=first)
    configure_logging(Settings(log_format="text", log_level="DEBUG"), stream=second)
    ours = [h for h in root_logger.handlers if type(h).__name__ == "_MeshHandler"]
    assert len(ours) == 1
    with bind_context(request_id="r-9"):
        get_logger("hybridmesh.unit").debug("plain")
    assert first.getvalue() == ""
    text = second.getvalue()
    assert "DEBUG" in text and "hybridmesh.unit: plain" in text and "request_id=r-9" in text
    assert not text.startswith("{")


def test_configure_logging_rejects_an_unknown_level(root_logger: logging.Logger) -> None:
    with pytest.raises(ValueError, match="loud"):
        configure_logging(Settings(log_level="loud"), stream=io.StringIO())
