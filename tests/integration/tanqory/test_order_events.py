"""How an order ended reaches the customer: order-processing announces ``order.confirmed``
or ``order.cancelled`` when the order's saga completes or is compensated, and
notification-services, consuming the same bus, tells the customer (and pushes it live).

The services the saga calls run on loopback; the engine, order-processing and
notification-services share the runtime's bus (the SQL log in the state store), as in the
demo."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from tests.integration.tanqory.helpers import (
    FAST_CONSUMER,
    FAST_RELAY,
    WAIT,
    Sink,
    getter,
    next_event,
    send,
    until,
)

from hybridmesh.core.settings import Settings
from hybridmesh.events import CloudEvent, EventBus
from hybridmesh.registry import ServiceRegistry
from hybridmesh.runtime import Runtime
from tanqory.apps import (
    inventory,
    notification_services,
    order_processing,
    payment_service,
    shipping_service,
    user_service,
)

SERVICES = Path(__file__).resolve().parents[3] / "examples" / "tanqory" / "services"
ADDRESS = {"street": "1 Analytical Way", "city": "London", "postal_code": "N1", "country": "GB"}
ITEMS = [{"sku": "SKU-1", "quantity": 2}]


@dataclass
class Shop:
    """The services an order's saga calls, order-processing on the runtime's engine, and
    every event published on the bus (``seen``)."""

    runtime: Runtime
    bus: EventBus
    urls: dict[str, str]
    http: aiohttp.ClientSession
    seen: Sink

    async def call(self, method: str, service: str, path: str, body: Any = None) -> Any:
        async with self.http.request(method, self.urls[service] + path, json=body) as resp:
            assert resp.status < 300, f"{method} {path}: {resp.status} {await resp.text()}"
            return await resp.json()

    async def customer(self) -> str:
        user = {"email": "ada@example.com", "name": "Ada Lovelace"}
        return str((await self.call("POST", user_service.NAME, "/users", user))["id"])

    async def order(self, order_id: str, customer_id: str, total: float) -> str:
        order = {
            "order_id": order_id,
            "customer_id": customer_id,
            "items": ITEMS,
            "total": total,
            "shipping_address": ADDRESS,
        }
        await self.call("POST", order_processing.NAME, "/orders", order)
        ended = await self.runtime.engine.wait(order_id, timeout=WAIT * 4)
        return ended.status.value

    async def order_event(self, order_id: str) -> CloudEvent:
        """The order event published for ``order_id`` (waits for it)."""
        events = await until(self._order_events_of(order_id), lambda found: len(found) > 0)
        (event,) = events
        return event

    def _order_events_of(self, order_id: str) -> Any:
        async def fetch() -> list[CloudEvent]:
            return [
                e for e in self.seen.events if e.type.startswith("order.") and e.subject == order_id
            ]

        return fetch

    async def notifications(self, customer_id: str, template: str) -> list[dict[str, Any]]:
        """The customer's notifications from ``template`` (waits for one)."""
        url = f"{self.urls[notification_services.NAME]}/notifications?user_id={customer_id}"

        def of_template(found: list[dict[str, Any]]) -> list[dict[str, Any]]:
            return [n for n in found if n["template"] == template]

        found = await until(getter(self.http, url), lambda found: bool(of_template(found)))
        return of_template(found)


@pytest.fixture
async def shop(database_url: str, tmp_path: Path) -> AsyncIterator[Shop]:
    registry = ServiceRegistry.from_path(SERVICES)
    async with AsyncExitStack() as stack:
        http = await stack.enter_async_context(
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        )
        runtime = await Runtime.open(Settings(database_url=database_url), registry=registry)
        stack.push_async_callback(runtime.close)
        bus = runtime.bus
        assert bus is not None
        seen = Sink()
        bus.subscribe(">", seen, group="order-events-test")
        starts = [
            user_service.start(tmp_path / "users.db"),
            inventory.start(tmp_path / "inventory.db"),
            payment_service.start(tmp_path / "payments.db"),
            shipping_service.start(tmp_path / "shipping.db"),
            notification_services.start(tmp_path / "notes.db", bus=bus, consumer=FAST_CONSUMER),
            order_processing.start(
                tmp_path / "orders.db",
                engine=runtime.engine,
                consumer=FAST_CONSUMER,
                relay=FAST_RELAY,
            ),
        ]
        for start in starts:
            service = await stack.enter_async_context(await start)
            registry.with_base_url(service.name, service.url)
        await bus.start()
        urls = {service.name: service.base_url for service in registry}
        yield Shop(runtime, bus, urls, http, seen)


async def test_a_completed_order_is_announced_as_confirmed_and_the_customer_told(
    shop: Shop,
) -> None:
    customer = await shop.customer()
    notes = shop.urls[notification_services.NAME].replace("http://", "ws://")
    async with shop.http.ws_connect(f"{notes}/ws/notifications?token={customer}") as ws:
        await ws.receive_json(timeout=WAIT)
        await send(ws, {"action": "join", "room": f"user:{customer}"})

        assert await shop.order("O-1", customer, 129.5) == "completed"

        event = await shop.order_event("O-1")
        assert (event.type, event.source, event.partition_key) == (
            "order.confirmed",
            "/order-processing",
            "O-1",
        )
        assert event.data == {
            "order_id": "O-1",
            "user_id": customer,
            "customer_id": customer,
            "total": 129.5,
            "items": ITEMS,
            "status": "confirmed",
        }
        (note,) = await shop.notifications(customer, "order-confirmed")
        assert (note["channel"], note["event_type"], note["event_id"]) == (
            "push",
            "order.confirmed",
            event.id,
        )
        # The saga's own e-mail came first; the push of the event follows it live.
        pushed = [(await next_event(ws))["event"]["data"] for _ in range(2)]
        assert [p["template"] for p in pushed] == ["order-confirmation", "order-confirmed"]
    order = await shop.call("GET", order_processing.NAME, "/orders/O-1")
    assert order["status"] == "confirmed"


async def test_a_compensated_order_is_announced_as_cancelled_and_the_customer_told(
    shop: Shop,
) -> None:
    customer = await shop.customer()
    await shop.call("POST", payment_service.NAME, "/_admin/declines", {"max_amount": 100})

    assert await shop.order("O-2", customer, 250) == "compensated"

    event = await shop.order_event("O-2")
    assert (event.type, event.subject) == ("order.cancelled", "O-2")
    assert event.data["status"] == "cancelled"
    assert event.data["user_id"] == customer
    assert "402" in event.data["reason"]
    (note,) = await shop.notifications(customer, "order-cancelled")
    assert (note["channel"], note["event_type"], note["event_id"]) == (
        "push",
        "order.cancelled",
        event.id,
    )
    url = f"{shop.urls[notification_services.NAME]}/notifications?user_id={customer}"
    assert [n["template"] for n in await getter(shop.http, url)()] == ["order-cancelled"]


async def test_a_saga_ending_delivered_again_announces_nothing_more(shop: Shop) -> None:
    customer = await shop.customer()
    assert await shop.order("O-3", customer, 129.5) == "completed"
    announced = await shop.order_event("O-3")
    (ending,) = [e for e in shop.seen.events if e.type == "saga.completed"]

    # As the bus does after a consumer died holding the event: deliver it to the group again.
    await shop.bus.backend.publish([ending], group=order_processing.NAME)
    consumer = getter(shop.http, f"{shop.urls[order_processing.NAME]}/_admin/consumer")
    status = await until(consumer, lambda s: s["duplicates"] == 1)

    assert status["dead_letters"] == []
    outbox = await getter(shop.http, f"{shop.urls[order_processing.NAME]}/_admin/outbox")()
    assert (outbox["published"], outbox["pending"]) == (1, [])
    assert [e.id for e in shop.seen.events if e.type.startswith("order.")] == [announced.id]
