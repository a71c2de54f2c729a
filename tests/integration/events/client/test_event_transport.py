"""Commands between microservices go as events, with direct REST as the fallback."""

from __future__ import annotations

import pytest
from tests.integration.client.helpers import Scripted, registry_for

from hybridmesh.client import CommunicationRequest, HybridClient
from hybridmesh.core.errors import TransportError
from hybridmesh.events import CloudEvent, EventBus, EventTransport
from hybridmesh.events.backends.memory import MemoryEventBackend
from hybridmesh.observability import MeshMetrics

COMMAND = CommunicationRequest(
    type="command",
    method="POST",
    endpoint="/users",
    payload={"email": "ada@example.com"},
    event_type="user.register",
)


async def test_a_command_between_microservices_is_published_as_an_event(
    upstream: tuple[Scripted, str],
) -> None:
    scripted, url = upstream
    bus = EventBus(MemoryEventBackend())
    received: list[CloudEvent] = []

    async def handler(event: CloudEvent) -> None:
        received.append(event)

    bus.subscribe("user.*", handler, group="user-service")
    client = HybridClient(registry_for(url), metrics=MeshMetrics())
    client.add_transport(EventTransport(bus))
    async with client:
        response = await client.communicate("orders", "users", COMMAND)
        again = await client.communicate(
            "orders", "users", CommunicationRequest(**{**_fields(COMMAND), "request_id": "r-1"})
        )
    await bus.drain()
    assert response.pattern == "events" and response.status == 202
    assert not response.fallback_used and scripted.hits == 0  # REST was not needed
    assert again.pattern == "events"
    event = next(e for e in received if e.id == response.data["event_id"])
    assert event.type == "user.register" and event.source == "orders"
    assert event.subject == "users" and event.partition_key == "users"
    assert event.data == {"email": "ada@example.com"}
    assert event.traceparent is not None and event.traceparent.startswith("00-")


async def test_a_retried_command_is_the_same_event(upstream: tuple[Scripted, str]) -> None:
    _, url = upstream
    backend = MemoryEventBackend()
    bus = EventBus(backend)
    seen: list[str] = []

    async def handler(event: CloudEvent) -> None:
        seen.append(event.id)

    bus.subscribe(">", handler, group="g")
    client = HybridClient(registry_for(url), metrics=MeshMetrics())
    client.add_transport(EventTransport(bus))
    request = CommunicationRequest(**{**_fields(COMMAND), "idempotency_key": "order-7-step-2"})
    async with client:
        first = await client.communicate("orders", "users", request)
        second = await client.communicate("orders", "users", request)
    await bus.drain()
    assert first.data["event_id"] == second.data["event_id"] == "order-7-step-2"
    assert seen == ["order-7-step-2"]  # the bus dropped the duplicate


async def test_when_publishing_fails_the_command_falls_back_to_rest(
    upstream: tuple[Scripted, str],
) -> None:
    scripted, url = upstream

    class Down(MemoryEventBackend):
        async def publish(self, events: object, *, group: str | None = None) -> None:
            raise ConnectionError("broker unreachable")

    client = HybridClient(registry_for(url), metrics=MeshMetrics())
    client.add_transport(EventTransport(EventBus(Down())))
    async with client:
        response = await client.communicate("orders", "users", COMMAND)
    assert response.pattern == "rest" and response.fallback_used
    assert "broker unreachable" in response.failures[0]
    assert scripted.hits == 1
    assert scripted.seen[0]["Idempotency-Key"]


async def test_an_event_type_that_is_not_a_subject_is_refused(
    upstream: tuple[Scripted, str],
) -> None:
    _, url = upstream
    client = HybridClient(registry_for(url), metrics=MeshMetrics())
    client.add_transport(EventTransport(EventBus(MemoryEventBackend())))
    bad = CommunicationRequest(**{**_fields(COMMAND), "event_type": ""})
    async with client:
        response = await client.communicate("orders", "users", bad)
    # An empty type falls back to "<target>.command"; the command still goes as an event.
    assert response.pattern == "events"
    with pytest.raises(TransportError):
        await EventTransport(EventBus(MemoryEventBackend())).send(
            _outbound(url, event_type="has space")
        )


def _fields(request: CommunicationRequest) -> dict[str, object]:
    return {name: getattr(request, name) for name in request.__slots__}  # type: ignore[attr-defined]


def _outbound(url: str, *, event_type: str) -> object:
    from hybridmesh.transports import OutboundRequest

    return OutboundRequest(
        target="users",
        base_url=url,
        method="POST",
        payload={},
        headers={"X-Source-Service": "orders"},
        event_type=event_type,
    )
