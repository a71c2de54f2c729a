"""HTTP functions against a real function endpoint on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from hybridmesh.core.errors import CallTimeoutError, TransportError, ValidationError
from hybridmesh.functions import FunctionRegistry
from hybridmesh.observability import (
    MeshMetrics,
    bind_context,
    configure_tracing,
    shutdown_tracing,
)
from hybridmesh.resilience.retry import RetryPolicy

TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-0[01]$")


@dataclass
class Endpoint:
    """The function endpoint: what it received, and how many requests ran at once."""

    url: str
    requests: list[tuple[dict[str, str], Any]] = field(default_factory=list)
    running: int = 0
    peak: int = 0
    closing: asyncio.Event = field(default_factory=asyncio.Event)


@pytest.fixture
async def endpoint() -> AsyncIterator[Endpoint]:
    state = Endpoint(url="")

    async def echo(request: web.Request) -> web.Response:
        body = await request.json()
        state.requests.append((dict(request.headers), body))
        return web.json_response({"received": body})

    async def text(request: web.Request) -> web.Response:
        return web.Response(text="plain words")

    async def empty(request: web.Request) -> web.Response:
        return web.Response(status=204)

    async def broken(request: web.Request) -> web.Response:
        return web.Response(status=500, text="boom: the function crashed")

    async def rejects(request: web.Request) -> web.Response:
        return web.json_response({"detail": "amount is required"}, status=400)

    async def busy(request: web.Request) -> web.Response:
        return web.Response(status=429, headers={"Retry-After": "3"})

    async def moved(request: web.Request) -> web.Response:
        raise web.HTTPFound("/echo")

    async def slow(request: web.Request) -> web.Response:
        state.running += 1
        state.peak = max(state.peak, state.running)
        try:
            with contextlib.suppress(TimeoutError):  # or until the test ends
                await asyncio.wait_for(state.closing.wait(), float(request.query["seconds"]))
        finally:
            state.running -= 1
        return web.json_response({"slept": True})

    app = web.Application()
    for path, handler in {
        "/echo": echo,
        "/text": text,
        "/empty": empty,
        "/broken": broken,
        "/rejects": rejects,
        "/busy": busy,
        "/moved": moved,
        "/slow": slow,
    }.items():
        app.router.add_post(path, handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    state.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield state
    finally:
        state.closing.set()
        await runner.cleanup()


@pytest.fixture
async def registry() -> AsyncIterator[FunctionRegistry]:
    functions = FunctionRegistry(metrics=MeshMetrics())
    yield functions
    await functions.close()


async def test_the_payload_and_headers_arrive_and_the_json_answer_comes_back(
    endpoint: Endpoint, registry: FunctionRegistry
) -> None:
    registry.register_http(
        "echo",
        f"{endpoint.url}/echo",
        headers={"Authorization": "Bearer s3cret", "Idempotency-Key": "not-this-one"},
    )
    payload = {"order": 7, "items": ["a", "b"], "note": "héllo"}
    with bind_context(request_id="req-7"):
        result = await registry.invoke("echo", payload, idempotency_key="order-7-charge")
    assert result == {"received": payload}
    [(headers, body)] = endpoint.requests
    assert body == payload
    assert headers["Content-Type"] == "application/json"
    assert headers["Idempotency-Key"] == "order-7-charge"  # the call's key, not the default
    assert headers["X-Request-ID"] == "req-7"
    assert headers["Authorization"] == "Bearer s3cret"
    assert TRACEPARENT.match(headers["traceparent"])
    definition = registry.get("echo")
    assert (definition.kind, definition.url) == ("http", f"{endpoint.url}/echo")


async def test_traceparent_names_the_invocation_span(
    endpoint: Endpoint, registry: FunctionRegistry
) -> None:
    exporter = InMemorySpanExporter()
    configure_tracing(exporter=exporter)
    try:
        registry.register_http("echo", f"{endpoint.url}/echo")
        await registry.invoke("echo", {})
    finally:
        shutdown_tracing()
    [span] = [s for s in exporter.get_finished_spans() if s.name == "invoke echo"]
    match = TRACEPARENT.match(endpoint.requests[0][0]["traceparent"])
    assert match is not None and span.context is not None
    assert match.groups() == (format(span.context.trace_id, "032x"), f"{span.context.span_id:016x}")


async def test_text_and_empty_answers(endpoint: Endpoint, registry: FunctionRegistry) -> None:
    registry.register_http("text", f"{endpoint.url}/text")
    registry.register_http("empty", f"{endpoint.url}/empty")
    assert await registry.invoke("text", None) == "plain words"
    assert await registry.invoke("empty", [1, 2]) is None


async def test_a_500_is_a_retryable_transport_error(
    endpoint: Endpoint, registry: FunctionRegistry
) -> None:
    registry.register_http("broken", f"{endpoint.url}/broken")
    with pytest.raises(TransportError) as caught:
        await registry.invoke("broken", {})
    error = caught.value
    assert (error.status, error.target, error.pattern) == (500, "broken", "function")
    assert "boom: the function crashed" in error.body
    assert not error.is_client_error  # a workflow step retries it


async def test_a_400_is_a_transport_error_that_is_not_retried(
    endpoint: Endpoint, registry: FunctionRegistry
) -> None:
    registry.register_http("rejects", f"{endpoint.url}/rejects")
    with pytest.raises(TransportError) as caught:
        await registry.invoke("rejects", {})
    assert caught.value.status == 400
    assert "amount is required" in caught.value.body
    assert caught.value.is_client_error
    assert not RetryPolicy().is_retryable(caught.value)


async def test_a_429_carries_retry_after_and_may_be_retried(
    endpoint: Endpoint, registry: FunctionRegistry
) -> None:
    registry.register_http("busy", f"{endpoint.url}/busy")
    with pytest.raises(TransportError) as caught:
        await registry.invoke("busy", {})
    assert (caught.value.status, caught.value.retry_after) == (429, 3.0)
    assert not caught.value.is_client_error


async def test_a_redirect_is_not_followed(endpoint: Endpoint, registry: FunctionRegistry) -> None:
    registry.register_http("moved", f"{endpoint.url}/moved")
    with pytest.raises(TransportError) as caught:
        await registry.invoke("moved", {})
    assert caught.value.status == 302
    assert endpoint.requests == []


async def test_a_slow_endpoint_raises_call_timeout(
    endpoint: Endpoint, registry: FunctionRegistry
) -> None:
    registry.register_http("slow", f"{endpoint.url}/slow?seconds=5", timeout=0.1)
    with pytest.raises(CallTimeoutError) as caught:
        await registry.invoke("slow", {})
    assert (caught.value.name, caught.value.timeout) == ("slow", 0.1)


async def test_the_concurrency_limit_holds_for_http_functions(
    endpoint: Endpoint, registry: FunctionRegistry
) -> None:
    registry.register_http("slow", f"{endpoint.url}/slow?seconds=0.05", concurrency=2)
    results = await asyncio.gather(*(registry.invoke("slow", {}) for _ in range(6)))
    assert results == [{"slept": True}] * 6
    assert endpoint.peak == 2


async def test_no_answer_at_all_is_a_transport_error_without_status(
    registry: FunctionRegistry,
) -> None:
    with socket.socket() as probe:  # a port nobody listens on once the probe closes
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    registry.register_http("gone", f"http://127.0.0.1:{port}/fn")
    with pytest.raises(TransportError) as caught:
        await registry.invoke("gone", {})
    assert caught.value.status is None and caught.value.target == "gone"
    assert RetryPolicy().is_retryable(caught.value)


async def test_a_payload_that_is_not_json_is_a_validation_error(
    endpoint: Endpoint, registry: FunctionRegistry
) -> None:
    registry.register_http("echo", f"{endpoint.url}/echo")
    with pytest.raises(ValidationError, match="payload is not JSON"):
        await registry.invoke("echo", {"when": object()})
    assert endpoint.requests == []
