"""The event bridge: legacy changes as CloudEvents on the bus, in order per row, none lost,
the same id for the same change after a restart."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hybridmesh.data.bridge import EventBridge
from hybridmesh.data.config import BridgeSpec, parse_data
from hybridmesh.events import CloudEvent, EventBus
from hybridmesh.events.backends.sql import SqlEventBackend
from hybridmesh.store import Store, open_store


@pytest.fixture
async def bus(tmp_path: Path) -> AsyncIterator[EventBus]:
    store = await open_store(f"sqlite:///{tmp_path / 'mesh.db'}")
    await store.upgrade()
    bus = EventBus(SqlEventBackend(store), owns_backend=False)
    try:
        yield bus
    finally:
        await bus.close()
        await store.close()


def bridge_spec(legacy: Store) -> BridgeSpec:
    text = f"""
bridges:
  - name: erp-events
    source: {{url: "{legacy.url}", system: legacy-erp}}
    prefix: erp
    tables: [customers, orders]
"""
    return parse_data(text, "bridges.yaml").bridges["erp-events"]


async def make_tables(db: Store) -> None:
    await db.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
    await db.execute(
        "CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER, total INTEGER)"
    )
    await db.execute("CREATE TABLE audit (id INTEGER PRIMARY KEY, note TEXT)")


def collect(bus: EventBus, into: list[CloudEvent]) -> None:
    async def handle(event: CloudEvent) -> None:
        into.append(event)

    bus.subscribe("erp.>", handle, group="analytics")


async def test_changes_become_cloudevents_in_order_per_row(legacy: Store, bus: EventBus) -> None:
    await make_tables(legacy)
    seen: list[CloudEvent] = []
    collect(bus, seen)
    bridge = EventBridge(bridge_spec(legacy), legacy, bus)
    await bridge.prepare()
    await legacy.execute("INSERT INTO customers VALUES (1, 'Ada')")
    await legacy.execute("INSERT INTO orders VALUES (10, 1, 250)")
    await legacy.execute("UPDATE orders SET total = 300 WHERE id = 10")
    await legacy.execute("INSERT INTO audit VALUES (1, 'not bridged')")
    await legacy.execute("DELETE FROM orders WHERE id = 10")

    await bridge.run(until_caught_up=True)
    await bus.drain()

    assert [e.type for e in seen] == [
        "erp.customers.created",
        "erp.orders.created",
        "erp.orders.updated",
        "erp.orders.deleted",
    ]
    assert {e.source for e in seen} == {"legacy-erp"}
    orders = [e for e in seen if e.type.startswith("erp.orders")]
    assert {e.partition_key for e in orders} == {"orders:[10]"}
    updated = orders[1].data
    assert updated["key"] == {"id": 10}
    assert updated["before"]["total"] == 250 and updated["after"]["total"] == 300
    assert orders[2].data["after"] is None
    assert bridge.published == 4


async def test_a_restarted_bridge_publishes_what_was_not_confirmed_with_the_same_ids(
    legacy: Store, bus: EventBus
) -> None:
    await make_tables(legacy)
    spec = bridge_spec(legacy)
    first = EventBridge(spec, legacy, bus)
    await first.prepare()
    for n in range(5):
        await legacy.execute("INSERT INTO customers VALUES (?, 'c')", n)
    published: list[CloudEvent] = []
    publish_many = bus.publish_many

    async def publish_then_crash(events: list[CloudEvent]) -> list[CloudEvent]:
        published.extend(await publish_many(events))
        raise ConnectionResetError("the bridge died before saving its position")

    bus.publish_many = publish_then_crash  # type: ignore[method-assign]
    with pytest.raises(ConnectionResetError):
        await first.step()
    bus.publish_many = publish_many  # type: ignore[method-assign]

    second = EventBridge(spec, legacy, bus)
    await second.prepare()
    again: list[CloudEvent] = []
    second_publish = bus.publish_many

    async def record(events: list[CloudEvent]) -> list[CloudEvent]:
        again.extend(events)
        return await second_publish(events)

    bus.publish_many = record  # type: ignore[method-assign]
    await second.run(until_caught_up=True)

    assert [e.id for e in again] == [e.id for e in published]
    assert len(again) == 5
    await legacy.execute("INSERT INTO customers VALUES (99, 'new')")
    await second.run(until_caught_up=True)
    assert [e.data["key"] for e in again[5:]] == [{"id": 99}]
