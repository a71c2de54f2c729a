"""The reference definitions run for real: order-processing takes orders and runs their saga
across user-service, inventory, payment, shipping and notifications; the onboarding workflow
and the analytics pipeline run on the same engine. The engine is what a Runtime wires, with
the catalog loading ``examples/tanqory/definitions``; the registry is the reference one,
pointed at the services started here on loopback."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from tests.integration.tanqory.helpers import WAIT, until

from hybridmesh.core.settings import Settings
from hybridmesh.events import CloudEvent, EventBus
from hybridmesh.events.backends.memory import MemoryEventBackend
from hybridmesh.orchestration import Execution, Status, WorkflowDefinition, load_definitions
from hybridmesh.registry import ServiceRegistry
from hybridmesh.runtime import Runtime
from tanqory.apps import (
    RunningService,
    analytics_reporting,
    inventory,
    legacy_erp,
    notification_services,
    order_processing,
    payment_service,
    shipping_service,
    user_service,
)
from tanqory.functions import EventWindow, register_functions

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "tanqory"
ADA = {"email": "ada@example.com", "name": "Ada Lovelace"}
ADDRESS = {"street": "1 Analytical Way", "city": "London", "postal_code": "N1", "country": "GB"}
SAGA_STEPS = [
    "validate-user",
    "reserve-inventory",
    "process-payment",
    "create-shipment",
    "send-confirmation",
]


@dataclass
class System:
    """The reference services, order-processing on the runtime's engine, and a client."""

    runtime: Runtime
    urls: dict[str, str]
    http: aiohttp.ClientSession
    window: EventWindow

    async def call(self, method: str, service: str, path: str, body: Any = None) -> Any:
        """The JSON answer of ``service``; fails unless it is a 2xx."""
        url = self.urls[service] + path
        async with self.http.request(method, url, json=body) as resp:
            assert resp.status < 300, f"{method} {path}: {resp.status} {await resp.text()}"
            return await resp.json()

    async def customer(self, user: dict[str, str] = ADA) -> str:
        return str((await self.call("POST", user_service.NAME, "/users", user))["id"])

    async def place(self, customer_id: str, **fields: Any) -> tuple[int, dict[str, Any]]:
        order = {
            "customer_id": customer_id,
            "items": [{"sku": "SKU-1", "quantity": 2}, {"sku": "SKU-4", "quantity": 1}],
            "total": 129.5,
            "shipping_address": ADDRESS,
            **fields,
        }
        url = self.urls[order_processing.NAME] + "/orders"
        async with self.http.post(url, json=order) as resp:
            return resp.status, await resp.json()

    async def settled(self, order_id: str) -> dict[str, Any]:
        """The order, once its saga has ended."""
        await self.runtime.engine.wait(order_id, timeout=WAIT * 4)
        order: dict[str, Any] = await self.call("GET", order_processing.NAME, f"/orders/{order_id}")
        return order

    async def stock(self) -> dict[str, tuple[int, int]]:
        """SKU → (available, reserved)."""
        items = await self.call("GET", inventory.NAME, "/inventory")
        return {i["sku"]: (i["available"], i["reserved"]) for i in items}

    async def held_by_reservations(self) -> dict[str, int]:
        """SKU → the quantity that reservations not released hold."""
        held: dict[str, int] = {}
        for reservation in await self.call("GET", inventory.NAME, "/inventory/reservations"):
            if reservation["status"] == "reserved":
                for item in reservation["items"]:
                    held[item["sku"]] = held.get(item["sku"], 0) + item["quantity"]
        return held

    async def assert_stock_invariant(self) -> None:
        held = await self.held_by_reservations()
        stock = await self.stock()
        assert {sku: reserved for sku, (_, reserved) in stock.items() if reserved} == held

    async def finished(self, execution_id: str) -> Execution:
        return await self.runtime.engine.wait(execution_id, timeout=WAIT * 4)


@asynccontextmanager
async def reference_system(
    database_url: str, folder: Path, http: aiohttp.ClientSession
) -> AsyncIterator[System]:
    """Every reference service on loopback, and a Runtime on ``database_url`` whose
    registry points at them. user-service publishes to the runtime's bus, where the
    data-transformations functions collect business events; notification-services and
    analytics-reporting consume a bus of their own."""
    registry = ServiceRegistry.from_path(EXAMPLES / "services")
    async with AsyncExitStack() as stack:
        runtime = await Runtime.open(
            Settings(database_url=database_url),
            registry=registry,
            exchange_dir=folder / "exchange",
        )
        stack.push_async_callback(runtime.close)
        assert runtime.bus is not None
        window = register_functions(runtime.functions, runtime.triggers)
        await runtime.load_definitions(EXAMPLES / "definitions")
        services_bus = EventBus(MemoryEventBackend(), poll_wait=0.05)
        stack.push_async_callback(services_bus.close)

        async def serving(started: Awaitable[RunningService]) -> str:
            service = await stack.enter_async_context(await started)
            registry.with_base_url(service.name, service.url)
            return str(service.url)

        publish = runtime.bus.publish_many
        await serving(user_service.start(folder / "users.db", publish=publish))
        await serving(inventory.start(folder / "inventory.db"))
        erp_url = await serving(legacy_erp.start(folder / "erp.db"))
        await serving(payment_service.start(folder / "payments.db"))
        await serving(shipping_service.start(folder / "shipping.db"))
        await serving(notification_services.start(folder / "notes.db", bus=services_bus))
        await serving(
            analytics_reporting.start(folder / "analytics.db", bus=services_bus, erp_url=erp_url)
        )
        await serving(order_processing.start(folder / "orders.db", engine=runtime.engine))
        await runtime.bus.start()
        urls = {service.name: service.base_url for service in registry}
        yield System(runtime, urls, http, window)


@pytest.fixture
async def system(
    database_url: str, tmp_path: Path, http: aiohttp.ClientSession
) -> AsyncIterator[System]:
    """The reference system on SQLite, then on PostgreSQL."""
    async with reference_system(database_url, tmp_path, http) as started:
        yield started


@pytest.fixture
async def on_sqlite(
    sqlite_url: str, tmp_path: Path, http: aiohttp.ClientSession
) -> AsyncIterator[System]:
    async with reference_system(sqlite_url, tmp_path, http) as started:
        yield started


# --- (a) and (b), on SQLite and PostgreSQL: an order confirmed, an order cancelled ---------


async def test_an_order_runs_every_step_and_is_confirmed(system: System) -> None:
    customer = await system.customer()
    before = await system.stock()

    status, placed = await system.place(customer, order_id="O-1")

    assert status == 201
    assert placed["status"] in ("processing", "confirmed")
    assert placed["saga"]["execution_id"] == "O-1"
    order = await system.settled("O-1")
    assert order["status"] == "confirmed"
    assert order["saga"]["status"] == "completed"
    assert order["saga"]["steps"] == dict.fromkeys(SAGA_STEPS, "completed")

    after = await system.stock()
    assert after["SKU-1"] == (before["SKU-1"][0] - 2, 2)
    assert after["SKU-4"] == (before["SKU-4"][0] - 1, 1)
    await system.assert_stock_invariant()
    (charge,) = await system.call("GET", payment_service.NAME, "/payments?order_id=O-1")
    assert (charge["status"], charge["amount"], charge["customer_id"]) == (
        "charged",
        129.5,
        customer,
    )
    (shipment,) = await system.call("GET", shipping_service.NAME, "/shipments?order_id=O-1")
    assert shipment["status"] == "created"
    assert shipment["shipping_address"] == ADDRESS
    (note,) = await system.call(
        "GET", notification_services.NAME, f"/notifications?user_id={customer}"
    )
    assert (note["template"], note["event_type"], note["event_id"]) == (
        "order-confirmation",
        "order.confirmed",
        "O-1",
    )
    # Each call names the execution and the step, and carries the step's idempotency key.
    (call,) = [
        r
        for r in await system.call("GET", payment_service.NAME, "/_admin/requests")
        if r["path"] == "/operations/charge-payment"
    ]
    assert call["headers"]["X-Execution-ID"] == "O-1"
    assert call["headers"]["X-Step-ID"] == "process-payment"
    assert call["headers"]["Idempotency-Key"]
    assert call["headers"]["traceparent"]


async def test_a_declined_payment_cancels_the_order_and_gives_the_stock_back(
    system: System,
) -> None:
    customer = await system.customer()
    await system.call("POST", payment_service.NAME, "/_admin/declines", {"max_amount": 100})
    before = await system.stock()

    status, _ = await system.place(customer, order_id="O-2", total=250)

    assert status == 201
    order = await system.settled("O-2")
    assert order["status"] == "cancelled"
    assert order["saga"]["status"] == "compensated"
    assert order["saga"]["steps"] == {
        "validate-user": "completed",
        "reserve-inventory": "completed",
        "process-payment": "failed",
        "create-shipment": "skipped",
        "send-confirmation": "skipped",
    }
    assert "402" in order["saga"]["error"]
    execution = await system.runtime.engine.get("O-2")
    assert execution.step("reserve-inventory").compensation == "compensated"
    # The declined charge was a definite failure: nothing to refund, so no refund was sent.
    assert execution.step("process-payment").compensation == "none"

    assert await system.stock() == before
    (reservation,) = await system.call(
        "GET", inventory.NAME, "/inventory/reservations?order_id=O-2"
    )
    assert reservation["status"] == "released"
    await system.assert_stock_invariant()
    assert await system.call("GET", payment_service.NAME, "/payments?order_id=O-2") == []
    assert await system.call("GET", shipping_service.NAME, "/shipments?order_id=O-2") == []
    assert await system.call("GET", notification_services.NAME, "/notifications") == []


# --- more orders, on SQLite --------------------------------------------------------------


async def test_a_payment_that_may_have_happened_is_refunded_by_order_and_bars_a_late_charge(
    on_sqlite: System,
) -> None:
    """Two 503s: the charge may have been made, so the saga refunds it too, by the order
    id (no charge id came back). The service never charged, so the refund voids the order
    and a charge arriving late is refused. (Takes the step's 5 s backoff.)"""
    customer = await on_sqlite.customer()
    before = await on_sqlite.stock()
    outage = {"mode": "error", "status": 503, "count": 2, "paths": ["/operations/charge-pay"]}
    await on_sqlite.call("POST", payment_service.NAME, "/_admin/faults", outage)

    await on_sqlite.place(customer, order_id="O-8")

    order = await on_sqlite.settled("O-8")
    assert (order["status"], order["saga"]["status"]) == ("cancelled", "compensated")
    execution = await on_sqlite.runtime.engine.get("O-8")
    payment = execution.step("process-payment")
    assert (payment.status, payment.attempt, payment.compensation) == ("failed", 2, "compensated")
    assert await on_sqlite.stock() == before
    (voided,) = await on_sqlite.call("GET", payment_service.NAME, "/payments?order_id=O-8")
    assert (voided["status"], voided["amount"]) == ("voided", 0)
    late = {"order_id": "O-8", "customer_id": customer, "amount": 129.5, "payment_method": "card"}
    url = on_sqlite.urls[payment_service.NAME] + "/operations/charge-payment"
    async with on_sqlite.http.post(url, json=late) as resp:
        assert resp.status == 409


async def test_the_same_order_posted_twice_runs_one_saga(on_sqlite: System) -> None:
    customer = await on_sqlite.customer()

    first = await on_sqlite.place(customer, order_id="O-3")
    again = await on_sqlite.place(customer, order_id="O-3")

    assert (first[0], again[0]) == (201, 200)
    assert again[1]["order_id"] == "O-3"
    assert (await on_sqlite.settled("O-3"))["status"] == "confirmed"
    sagas = await on_sqlite.runtime.engine.executions(name="order-processing")
    assert [saga.id for saga in sagas] == ["O-3"]
    assert len(await on_sqlite.call("GET", payment_service.NAME, "/payments?order_id=O-3")) == 1
    conflict = await on_sqlite.place(customer, order_id="O-3", total=1)
    assert conflict[0] == 409


async def test_a_retried_post_with_an_idempotency_key_runs_one_saga(on_sqlite: System) -> None:
    customer = await on_sqlite.customer()
    url = on_sqlite.urls[order_processing.NAME] + "/orders"
    body = {"customer_id": customer, "items": [{"sku": "SKU-2", "quantity": 1}], "total": 20}
    body["shipping_address"] = ADDRESS
    answers = []
    for _ in range(2):
        async with on_sqlite.http.post(url, json=body, headers={"Idempotency-Key": "k"}) as resp:
            answers.append((resp.status, (await resp.json())["order_id"]))

    (status, order_id), replayed = answers
    assert status == 201
    assert replayed == (201, order_id)
    assert (await on_sqlite.settled(order_id))["status"] == "confirmed"
    assert len(await on_sqlite.runtime.engine.executions(name="order-processing")) == 1


async def test_an_order_of_a_deactivated_customer_is_cancelled_before_any_stock_is_held(
    on_sqlite: System,
) -> None:
    customer = await on_sqlite.customer()
    await on_sqlite.call("PATCH", user_service.NAME, f"/users/{customer}", {"status": "inactive"})
    before = await on_sqlite.stock()

    await on_sqlite.place(customer, order_id="O-4")

    order = await on_sqlite.settled("O-4")
    assert order["status"] == "cancelled"
    assert order["saga"]["steps"]["validate-user"] == "failed"
    assert order["saga"]["steps"]["reserve-inventory"] == "skipped"
    assert "409" in order["saga"]["error"]
    assert await on_sqlite.stock() == before
    unknown = await on_sqlite.place("U-404", order_id="O-5")
    assert unknown[0] == 201
    assert (await on_sqlite.settled("O-5"))["status"] == "cancelled"


async def test_a_bad_order_is_refused_naming_each_bad_field(on_sqlite: System) -> None:
    url = on_sqlite.urls[order_processing.NAME] + "/orders"
    bad = {
        "customer_id": "U-1",
        "items": [{"sku": "SKU-1", "quantity": 0}],
        "total": -1,
        "shipping_address": {"street": "1 Way", "city": "London", "country": "GB"},
    }
    async with on_sqlite.http.post(url, json=bad) as resp:
        assert resp.status == 422
        assert resp.content_type == "application/problem+json"
        problem = await resp.json()
    assert {e["field"] for e in problem["errors"]} == {
        "items[0].quantity",
        "total",
        "shipping_address.postal_code",
    }
    async with on_sqlite.http.post(url, data=b"{not json") as resp:
        assert resp.status == 400
    assert await on_sqlite.runtime.engine.executions(name="order-processing") == []


async def test_an_order_stored_without_its_saga_gets_one_when_the_service_starts_again(
    on_sqlite: System, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    customer = await on_sqlite.customer()
    engine = on_sqlite.runtime.engine
    db = tmp_path / "orders-again.db"
    order = {"order_id": "O-6", "customer_id": customer, "total": 9.99}
    order |= {"items": [{"sku": "SKU-3", "quantity": 1}], "shipping_address": ADDRESS}

    async def unreachable(*args: Any, **kwargs: Any) -> str:
        raise ConnectionError("the engine's store is unreachable")

    async with await order_processing.start(db, engine=engine) as first:
        with monkeypatch.context() as patched:
            patched.setattr(engine, "start_saga", unreachable)
            async with on_sqlite.http.post(f"{first.url}/orders", json=order) as resp:
                assert resp.status == 500
        async with on_sqlite.http.get(f"{first.url}/orders/O-6") as resp:
            assert (await resp.json())["status"] == "received"

    async with await order_processing.start(db, engine=engine) as again:
        execution = await on_sqlite.finished("O-6")
        async with on_sqlite.http.get(f"{again.url}/orders/O-6") as resp:
            assert (await resp.json())["status"] == "confirmed"
    assert execution.status is Status.COMPLETED


# --- (d) the onboarding workflow -----------------------------------------------------------


async def test_onboarding_runs_as_the_integration_guide_gives_it_with_steps_fed_from_the_context(
    on_sqlite: System,
) -> None:
    """The integration guide's definition leaves payloads empty ("populated from context"):
    each step gets the workflow context (the input, and each completed step's answer under
    its id)."""
    runtime = on_sqlite.runtime
    execution = await on_sqlite.finished(
        await runtime.engine.start_workflow("user-onboarding", ADA)
    )

    assert execution.status is Status.COMPLETED, execution.error
    assert {step.step_id: step.status for step in execution.steps} == {
        "create-user-account": "completed",
        "send-welcome-email": "completed",
        "track-user-registration": "completed",
        "sync-to-erp": "completed",
    }
    user = execution.step("create-user-account").result
    assert user["email"] == ADA["email"]
    (welcome,) = await on_sqlite.call("GET", notification_services.NAME, "/notifications")
    assert (welcome["template"], welcome["address"]) == ("welcome", ADA["email"])
    (record,) = await runtime.batch.records(target=legacy_erp.NAME)
    assert record.operation == "customer-sync"
    assert record.payload["email"] == ADA["email"]


def onboarding_with_payloads() -> WorkflowDefinition:
    """``user-onboarding.yaml`` with its payloads filled from the input and the account."""
    (loaded,) = load_definitions(EXAMPLES / "definitions" / "user-onboarding.yaml").definitions
    workflow = loaded.definition
    assert isinstance(workflow, WorkflowDefinition)
    account = "context.create-user-account"
    payloads: dict[str, dict[str, Any]] = {
        "create-user-account": {"email": "{{ input.email }}", "name": "{{ input.name }}"},
        "send-welcome-email": {
            "user_id": f"{{{{ {account}.id }}}}",
            "email": f"{{{{ {account}.email }}}}",
        },
        "track-user-registration": {"user_id": f"{{{{ {account}.id }}}}"},
        "sync-to-erp": {
            "customer_id": f"{{{{ {account}.id }}}}",
            "name": f"{{{{ {account}.name }}}}",
            "email": f"{{{{ {account}.email }}}}",
        },
    }
    steps = tuple(
        dataclasses.replace(
            step,
            operation=dataclasses.replace(
                step.operation, payload={**step.operation.payload, **payloads[step.step_id]}
            ),
        )
        for step in workflow.steps
    )
    return dataclasses.replace(workflow, steps=steps)


async def test_onboarding_creates_the_account_then_runs_its_optional_steps(
    on_sqlite: System,
) -> None:
    runtime = on_sqlite.runtime
    await runtime.catalog.register_definition(onboarding_with_payloads(), registry=runtime.registry)
    # analytics-reporting is down: its step is optional, so the workflow completes anyway.
    fault = {"mode": "error", "status": 503, "paths": ["/analytics/events"]}
    await on_sqlite.call("POST", analytics_reporting.NAME, "/_admin/faults", fault)

    execution = await on_sqlite.finished(
        await runtime.engine.start_workflow("user-onboarding", ADA)
    )

    assert execution.status is Status.COMPLETED
    assert {step.step_id: step.status for step in execution.steps} == {
        "create-user-account": "completed",
        "send-welcome-email": "completed",
        "track-user-registration": "failed",
        "sync-to-erp": "completed",
    }
    user = execution.step("create-user-account").result
    assert (user["id"], user["email"]) == ("U-1", ADA["email"])
    (welcome,) = await on_sqlite.call("GET", notification_services.NAME, "/notifications")
    assert (welcome["user_id"], welcome["template"], welcome["address"]) == (
        "U-1",
        "welcome",
        ADA["email"],
    )
    # The legacy ERP gets the customer in its next batch: queued now, as a record.
    (record,) = await runtime.batch.records(target=legacy_erp.NAME)
    assert (record.operation, record.status.value) == ("customer-sync", "queued")
    assert record.payload == {"customer_id": "U-1", "name": ADA["name"], "email": ADA["email"]}
    assert execution.step("sync-to-erp").result == {
        "queued": record.id,
        "operation": "customer-sync",
    }

    await on_sqlite.call("POST", analytics_reporting.NAME, "/_admin/faults", {"mode": "off"})
    tracked = await on_sqlite.finished(
        await runtime.engine.start_workflow(
            "user-onboarding", {"email": "grace@example.com", "name": "Grace"}
        )
    )
    assert tracked.step("track-user-registration").status == "completed"
    summary = await on_sqlite.call("GET", analytics_reporting.NAME, "/reports/summary")
    assert summary["users"]["registered"] == 1


# --- (e) the data analytics pipeline -------------------------------------------------------


async def test_the_analytics_pipeline_transforms_ingests_and_correlates(on_sqlite: System) -> None:
    runtime = on_sqlite.runtime
    assert runtime.bus is not None
    today = datetime.now(UTC).date().isoformat()
    # Business events on the mesh's bus: user-service's own, and an order's, as its
    # producer would publish it; plus the order as the legacy ERP recorded it.
    await on_sqlite.customer()
    await runtime.bus.publish(
        CloudEvent.create("order.created", "/order-processing", {"order_id": "O-9", "total": 5})
    )
    erp_order = {"customer_id": "C-1", "items": [{"sku": "SKU-1"}], "total": 5}
    await on_sqlite.call("POST", legacy_erp.NAME, "/erp/orders", erp_order)
    await until(_counter(on_sqlite.window), lambda collected: collected >= 2)

    pipeline = await runtime.engine.start_workflow("data-analytics-pipeline", {"since": today})
    execution = await on_sqlite.finished(pipeline)

    assert execution.status is Status.COMPLETED, execution.error
    transformed = execution.step("transform-events").result
    assert transformed["count"] == 2
    assert [e["type"] for e in transformed["events"]] == ["user.registered", "order.created"]
    assert transformed["events"][0]["user_id"] == "U-1"
    assert transformed["events"][1]["amount"] == 5
    assert execution.step("ingest-events").result == {
        "received": 2,
        "ingested": 2,
        "duplicates": 0,
    }
    (record,) = await runtime.batch.records(target=legacy_erp.NAME)
    assert (record.operation, record.payload) == ("order-export", {"since": today})
    correlation = execution.step("correlate-sources").result
    assert correlation["days"] == [
        {"day": today, "orders": {"events": 1, "erp": 1}, "erp_revenue": 5.0, "matched": True}
    ]
    assert correlation["matched"] is True
    summary = await on_sqlite.call("GET", analytics_reporting.NAME, "/reports/summary")
    assert summary["events"]["by_type"] == {"order.created": 1, "user.registered": 1}

    again = await on_sqlite.finished(
        await runtime.engine.start_workflow("data-analytics-pipeline", {"since": today})
    )
    assert again.step("ingest-events").result == {"received": 2, "ingested": 0, "duplicates": 2}


def _counter(window: EventWindow) -> Callable[[], Awaitable[int]]:
    async def count() -> int:
        return len(window)

    return count


# --- the endpoints the workflows call, at their edges ---------------------------------------


async def test_an_order_confirmation_is_sent_once_and_an_email_needs_a_recipient(
    on_sqlite: System,
) -> None:
    notes = on_sqlite.urls[notification_services.NAME]
    confirm = {"customer_id": "U-1", "order_id": "O-1"}
    async with on_sqlite.http.post(
        f"{notes}/operations/send-order-confirmation", json=confirm
    ) as r:
        assert r.status == 201
        first = await r.json()
    async with on_sqlite.http.post(
        f"{notes}/operations/send-order-confirmation", json=confirm
    ) as r:
        assert (r.status, await r.json()) == (200, first)

    email = f"{notes}/notifications/email"
    # The integration guide's own payload names no recipient.
    async with on_sqlite.http.post(email, json={"template": "welcome", "channel": "email"}) as r:
        assert r.status == 422
        assert [e["field"] for e in (await r.json())["errors"]] == ["user_id"]
    async with on_sqlite.http.post(email, json={"template": "nope", "user_id": "U-1"}) as r:
        assert [e["field"] for e in (await r.json())["errors"]] == ["template"]
    for _ in range(2):
        welcome = {"template": "welcome", "user_id": "U-2"}
        async with on_sqlite.http.post(email, json=welcome, headers={"Idempotency-Key": "k"}) as r:
            assert r.status == 201
    sent = await on_sqlite.call("GET", notification_services.NAME, "/notifications?user_id=U-2")
    assert [n["template"] for n in sent] == ["welcome"]


async def test_analytics_refuses_what_it_cannot_count_or_correlate(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    bus = EventBus(MemoryEventBackend(), poll_wait=0.05)
    down = "http://127.0.0.1:9"  # the discard port: nothing answers there
    async with (
        await analytics_reporting.start(tmp_path / "a.db", bus=bus) as alone,
        await analytics_reporting.start(tmp_path / "b.db", bus=bus, erp_url=down) as cut_off,
    ):

        async def post(service: RunningService, path: str, body: Any) -> tuple[int, Any]:
            async with http.post(service.url + path, json=body) as resp:
                return resp.status, await resp.json(content_type=None)

        status, problem = await post(alone, "/analytics/events", {"eventType": "user.*"})
        assert (status, problem["errors"][0]["field"]) == (422, "eventType")
        status, problem = await post(alone, "/analytics/events", {})
        assert (status, problem["errors"][0]["field"]) == (422, "event_type")
        bad = {"events": [{"event_id": "e", "source": "/s", "type": "a.b", "occurred_at": "x"}]}
        status, problem = await post(alone, "/analytics/events/ingest", bad)
        assert (status, problem["errors"][0]["field"]) == (422, "events[0].occurred_at")
        status, problem = await post(alone, "/analytics/correlations", {"sources": ["erp"]})
        assert (status, problem["errors"][0]["field"]) == (422, "sources")
        status, answer = await post(alone, "/analytics/correlations", {"sources": ["events"]})
        assert (status, answer["days"], answer["matched"]) == (200, [], True)
        status, problem = await post(cut_off, "/analytics/correlations", {})
        assert status == 502
        assert problem["type"].endswith("/source-failed")
    await bus.close()
