"""Log lines written during a call carry the call's trace and span ids, recorded or not."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import ClientSession, web
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from tests.integration.client.helpers import Scripted, registry_for
from tests.integration.loopback import serve

from hybridmesh.api._middleware import request_context
from hybridmesh.client import CommunicationRequest, HybridClient
from hybridmesh.core.clock import FakeClock
from hybridmesh.core.settings import Settings
from hybridmesh.observability import (
    JsonFormatter,
    MeshMetrics,
    configure_tracing,
    continue_trace,
    get_logger,
    shutdown_tracing,
)

QUERY = CommunicationRequest(type="query", endpoint="/users/1")
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"


@pytest.fixture(params=["unconfigured", "no exporter", "exporter"])
def tracing(request: pytest.FixtureRequest) -> Iterator[str]:
    """Tracing as a deployment may run it: not set up, set up without exporting, exporting."""
    shutdown_tracing()
    if request.param == "no exporter":
        configure_tracing(Settings(otel_exporter="none"))
    elif request.param == "exporter":
        configure_tracing(exporter=InMemorySpanExporter())
    yield str(request.param)
    shutdown_tracing()


@pytest.fixture
def written() -> Iterator[io.StringIO]:
    """What the root logger writes as JSON lines while the test runs."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield stream
    root.removeHandler(handler)
    root.setLevel(level)


def lines_about(written: io.StringIO, text: str) -> list[dict[str, Any]]:
    parsed = [json.loads(line) for line in written.getvalue().splitlines()]
    return [line for line in parsed if text in line["message"]]


async def test_a_call_in_an_incoming_trace_logs_that_trace(
    tracing: str, written: io.StringIO, upstream: tuple[Scripted, str]
) -> None:
    scripted, url = upstream
    scripted.fail(1, 503)
    async with HybridClient(registry_for(url), clock=FakeClock(), metrics=MeshMetrics()) as client:
        with continue_trace({"traceparent": TRACEPARENT}):
            await client.communicate("orders", "users", QUERY)
    (line,) = lines_about(written, "retrying")
    assert line["trace_id"] == TRACE_ID
    assert line["span_id"] is not None and line["span_id"] != PARENT_ID
    sent = {headers["traceparent"].split("-")[1] for headers in scripted.seen}
    assert sent == {TRACE_ID}


async def test_a_call_outside_a_trace_logs_the_trace_its_attempts_carry(
    tracing: str, written: io.StringIO, upstream: tuple[Scripted, str]
) -> None:
    scripted, url = upstream
    scripted.fail(1, 503)
    async with HybridClient(registry_for(url), clock=FakeClock(), metrics=MeshMetrics()) as client:
        await client.communicate("orders", "users", QUERY)
    (line,) = lines_about(written, "retrying")
    sent = {headers["traceparent"].split("-")[1] for headers in scripted.seen}
    assert sent == {line["trace_id"]}
    assert line["span_id"] is not None


async def test_a_handled_request_logs_the_trace_of_its_traceparent(
    tracing: str, written: io.StringIO
) -> None:
    log = get_logger("hybridmesh.test.handler")

    async def handler(_request: web.Request) -> web.Response:
        log.warning("handling")
        return web.json_response({})

    app = web.Application(middlewares=[request_context])
    app.router.add_get("/work", handler)
    async with serve(app) as url, ClientSession() as session:
        answer = await session.get(f"{url}/work", headers={"traceparent": TRACEPARENT})
        assert answer.status == 200
        answer.release()
    (line,) = lines_about(written, "handling")
    assert line["trace_id"] == TRACE_ID
    assert line["span_id"] is not None
    if tracing != "unconfigured":  # the server's own span, a child of the caller's
        assert line["span_id"] != PARENT_ID
