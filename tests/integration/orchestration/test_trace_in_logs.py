"""Log lines written while an engine step runs carry the execution's trace id."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from tests.integration.orchestration.conftest import Rig
from tests.integration.orchestration.test_engine import run_order

from hybridmesh.core.settings import Settings
from hybridmesh.observability import JsonFormatter, configure_tracing, shutdown_tracing


@pytest.fixture(params=["no exporter", "exporter"])
def tracing(request: pytest.FixtureRequest) -> Iterator[None]:
    if request.param == "exporter":
        configure_tracing(exporter=InMemorySpanExporter())
    else:
        configure_tracing(Settings(otel_exporter="none"))
    yield
    shutdown_tracing()


@pytest.fixture
def written() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    log = logging.getLogger("hybridmesh")
    level = log.level
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    yield stream
    log.removeHandler(handler)
    log.setLevel(level)


async def test_a_steps_log_lines_carry_the_executions_trace(
    rig: Rig, tracing: None, written: io.StringIO
) -> None:
    rig.ops.fail("/operations/charge", 503)
    execution = await run_order(rig, "o-1")
    assert execution.trace_context is not None
    trace_id = execution.trace_context.split("-")[1]
    lines = [json.loads(line) for line in written.getvalue().splitlines()]
    about_charge = [line for line in lines if "step charge attempt 1 failed" in line["message"]]
    assert about_charge, lines
    assert {line["trace_id"] for line in about_charge} == {trace_id}
    assert all(line["span_id"] is not None for line in about_charge)
