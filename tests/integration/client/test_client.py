"""The hybrid client against a real HTTP service on loopback."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from tests.integration.client.helpers import Scripted, registry_for, service
from tests.waiting import eventually

from hybridmesh.client import CommunicationRequest, HybridClient, PatternNotAllowedError
from hybridmesh.core.clock import FakeClock
from hybridmesh.core.errors import (
    BulkheadFullError,
    CallTimeoutError,
    CircuitOpenError,
    RetriesExhaustedError,
    TransportError,
    TransportNotConfiguredError,
    UnknownServiceError,
)
from hybridmesh.observability import MeshMetrics, configure_tracing
from hybridmesh.transports import OutboundRequest, TransportResponse
from hybridmesh.transports.mock import MockTransport

TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-0[01]$")
QUERY = CommunicationRequest(type="query", endpoint="/users/1")


def make_client(base_url: str, clock: FakeClock | None = None, **resilience: Any) -> HybridClient:
    return HybridClient(
        registry_for(base_url, **resilience), clock=clock or FakeClock(), metrics=MeshMetrics()
    )


async def test_query_carries_request_id_source_and_traceparent(
    upstream: tuple[Scripted, str],
) -> None:
    scripted, url = upstream
    async with make_client(url) as client:
        response = await client.communicate("orders", "users", QUERY)
    assert response.status == 200
    assert response.data["path"] == "/users/1"
    assert (response.pattern, response.strategy) == ("rest", "micro-to-micro-query")
    headers = scripted.seen[0]
    assert headers["X-Request-ID"] == response.request_id
    assert headers["X-Source-Service"] == "orders"
    assert TRACEPARENT.match(headers["traceparent"])
    assert "Idempotency-Key" not in headers


async def test_command_idempotency_key_is_the_same_on_every_retry(
    upstream: tuple[Scripted, str],
) -> None:
    scripted, url = upstream
    scripted.fail(1, 503)
    async with make_client(url) as client:
        response = await client.communicate(
            "orders",
            "inventory",
            CommunicationRequest(
                type="command", method="POST", endpoint="/reserve", payload={"q": 1}
            ),
        )
    assert response.attempts == 2
    keys = {h["Idempotency-Key"] for h in scripted.seen}
    assert len(keys) == 1 and keys != {""}
    assert scripted.bodies == [{"q": 1}, {"q": 1}]


async def test_retries_a_503_with_backoff_then_succeeds(upstream: tuple[Scripted, str]) -> None:
    scripted, url = upstream
    scripted.fail(2, 503)
    clock = FakeClock()
    async with make_client(url, clock) as client:
        response = await client.communicate("orders", "users", QUERY)
    assert response.status == 200 and response.attempts == 3
    assert scripted.hits == 3
    assert len(clock.sleeps) >= 2 and all(s > 0 for s in clock.sleeps[:2])


async def test_honours_retry_after(upstream: tuple[Scripted, str]) -> None:
    scripted, url = upstream
    scripted.fail(1, 503, {"Retry-After": "2"})
    clock = FakeClock()
    async with make_client(url, clock) as client:
        await client.communicate("orders", "users", QUERY)
    assert 2.0 in clock.sleeps


async def test_a_validation_error_is_not_retried_and_not_served_from_cache(
    upstream: tuple[Scripted, str],
) -> None:
    scripted, url = upstream
    async with make_client(url) as client:
        await client.communicate("orders", "users", QUERY)  # caches an answer
        scripted.fail(1, 422)
        with pytest.raises(TransportError) as caught:
            await client.communicate("orders", "users", QUERY)
    assert caught.value.status == 422
    assert scripted.hits == 2


async def test_retries_exhausted_lists_every_attempt(upstream: tuple[Scripted, str]) -> None:
    scripted, url = upstream
    scripted.fail(10, 502)
    async with make_client(url, retries=2) as client:
        with pytest.raises(RetriesExhaustedError) as caught:
            await client.communicate("orders", "users", QUERY)
    assert len(caught.value.attempts) == 3
    assert all(
        isinstance(a.error, TransportError) and a.error.status == 502 for a in caught.value.attempts
    )


async def test_query_falls_back_to_the_last_good_answer(upstream: tuple[Scripted, str]) -> None:
    scripted, url = upstream
    async with make_client(url, retries=0) as client:
        fresh = await client.communicate("orders", "users", QUERY)
        scripted.fail(1, 500)
        stale = await client.communicate("orders", "users", QUERY)
    assert stale.from_cache and stale.fallback_used and stale.pattern == "cache"
    assert stale.data == fresh.data
    assert any("500" in f for f in stale.failures)


async def test_breaker_opens_rejects_without_calling_then_closes(
    upstream: tuple[Scripted, str],
) -> None:
    scripted, url = upstream
    clock = FakeClock()
    scripted.fail(4, 503)
    async with make_client(
        url,
        clock,
        retries=0,
        minimum_calls=4,
        window_size=4,
        wait_in_open=10,
        permitted_calls_in_half_open=1,
    ) as client:
        for _ in range(4):
            with pytest.raises(TransportError):
                await client.communicate("orders", "users", QUERY)
        hits = scripted.hits
        with pytest.raises(CircuitOpenError):
            await client.communicate("orders", "users", QUERY)
        assert scripted.hits == hits  # rejected before the wire
        clock.advance(11)
        response = await client.communicate("orders", "users", QUERY)
        assert response.status == 200
        states = [(old, new) for _, _, old, new in client.breaker_transitions]
    assert ("closed", "open") in states
    assert states[-1] == ("half_open", "closed")


async def test_one_attempt_that_hangs_times_out(upstream: tuple[Scripted, str]) -> None:
    scripted, url = upstream
    scripted.delay = 1.0
    async with make_client(url, retries=0, timeout=0.1) as client:
        with pytest.raises(CallTimeoutError):
            await client.communicate("orders", "users", QUERY)


async def test_a_call_cancelled_from_outside_is_cancelled_not_timed_out(
    upstream: tuple[Scripted, str],
) -> None:
    scripted, url = upstream
    scripted.delay = 3.0
    async with make_client(url, retries=0, timeout=2.0) as client:
        call = asyncio.create_task(client.communicate("orders", "users", QUERY))
        await eventually(lambda: scripted.hits == 1, what="the call reaching the upstream")
        call.cancel()  # long before its timeout
        with pytest.raises(asyncio.CancelledError):
            await call
        scripted.delay = 0.0
        assert (await client.communicate("orders", "users", QUERY)).status == 200


async def test_bulkhead_rejects_calls_beyond_its_limit(upstream: tuple[Scripted, str]) -> None:
    scripted, url = upstream
    scripted.delay = 0.3
    async with make_client(url, retries=0, max_concurrent=1, max_wait=0) as client:
        results = await asyncio.gather(
            client.communicate("orders", "users", QUERY),
            client.communicate("orders", "users", QUERY),
            return_exceptions=True,
        )
    assert sum(isinstance(r, BulkheadFullError) for r in results) == 1
    assert scripted.hits == 1


async def test_command_between_microservices_falls_back_to_rest_without_events(
    upstream: tuple[Scripted, str],
) -> None:
    _scripted, url = upstream
    async with make_client(url) as client:
        response = await client.communicate(
            "orders",
            "users",
            CommunicationRequest(type="command", method="POST", endpoint="/users", payload={}),
        )
    assert response.pattern == "rest" and response.fallback_used
    assert "events" in response.failures[0]


async def test_missing_transport_is_never_reported_as_success(
    upstream: tuple[Scripted, str],
) -> None:
    _, url = upstream
    async with make_client(url) as client:
        with pytest.raises(TransportNotConfiguredError) as caught:
            await client.communicate(
                "orders", "erp", CommunicationRequest(type="batch", operation="order-export")
            )
    assert caught.value.pattern == "batch"


async def test_a_target_without_bulk_operations_refuses_a_batch_call_before_sending(
    upstream: tuple[Scripted, str],
) -> None:
    scripted, url = upstream
    client = make_client(url)
    client.registry.register(service("erp", "traditional-monolith", url, capabilities={}))
    batch = MockTransport("batch", _never_called)
    client.add_transport(batch)
    async with client:
        with pytest.raises(PatternNotAllowedError) as caught:
            await client.communicate(
                "orders", "erp", CommunicationRequest(type="batch", operation="order-export")
            )
    assert (caught.value.service, caught.value.ruled_out) == ("erp", ("batch",))
    assert batch.sent == [] and scripted.hits == 0


async def _never_called(request: OutboundRequest) -> TransportResponse:
    raise AssertionError(f"sent {request}")


async def test_unknown_target(upstream: tuple[Scripted, str]) -> None:
    _, url = upstream
    async with make_client(url) as client:
        with pytest.raises(UnknownServiceError):
            await client.communicate("orders", "nobody", QUERY)


async def test_graphql_query_between_microservices(upstream: tuple[Scripted, str]) -> None:
    scripted, url = upstream
    async with make_client(url) as client:
        response = await client.communicate(
            "orders",
            "users",
            CommunicationRequest(
                type="query",
                query="query($id: ID!) { user(id: $id) { name } }",
                variables={"id": "7"},
            ),
        )
    assert response.pattern == "graphql"
    assert response.data == {"user": {"id": "7", "name": "Ada"}}
    assert scripted.bodies[0]["variables"] == {"id": "7"}


async def test_legacy_timeout_is_capped_at_sixty_seconds(upstream: tuple[Scripted, str]) -> None:
    _, url = upstream
    async with make_client(url) as client:
        policy = client._policy(
            client.registry.get("erp"),
            client_request_type("query"),
            select_first_step(client, "erp"),
            CommunicationRequest(timeout=600),
        )
    assert policy.timeout == 60.0
    assert policy.retry.max_attempts == 2


async def test_metrics_and_spans_follow_each_call(upstream: tuple[Scripted, str]) -> None:
    scripted, url = upstream
    exporter = InMemorySpanExporter()
    configure_tracing(exporter=exporter)
    scripted.fail(1, 503)
    async with make_client(url) as client:
        await client.communicate("orders", "users", QUERY)
        value = client.metrics.registry.get_sample_value(
            "hybridmesh_calls_total",
            {"source": "orders", "target": "users", "pattern": "rest", "outcome": "success"},
        )
        retries = client.metrics.registry.get_sample_value(
            "hybridmesh_call_retries_total", {"target": "users"}
        )
    assert value == 1 and retries == 1
    spans = exporter.get_finished_spans()
    root = next(s for s in spans if s.name == "communicate users")
    attempts = [s for s in spans if s.name.startswith("rest GET users")]
    assert len(attempts) == 2
    assert all(s.parent is not None and s.parent.span_id == root.context.span_id for s in attempts)
    trace_ids = {TRACEPARENT.match(h["traceparent"]).group(1) for h in scripted.seen}  # type: ignore[union-attr]
    assert trace_ids == {format(root.context.trace_id, "032x")}


def client_request_type(value: str) -> Any:
    from hybridmesh.client import RequestType

    return RequestType(value)


def select_first_step(client: HybridClient, target: str) -> Any:
    from hybridmesh.client import select_strategy

    return select_strategy("microservice", client.registry.get(target).architecture, "query").steps[
        0
    ]
