"""The outbox and idempotent consumers, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest

from hybridmesh.events import CloudEvent, EventBus, IdempotentConsumer, Outbox, OutboxRelay
from hybridmesh.events.backends.sql import SqlEventBackend
from hybridmesh.store import Store


def user_event(n: int) -> CloudEvent:
    return CloudEvent.create("user.registered", "/user-service", {"n": n})


async def test_business_rows_and_events_commit_together_or_not_at_all(store: Store) -> None:
    await store.execute("CREATE TABLE accounts (id INTEGER PRIMARY KEY, name TEXT)")
    outbox = Outbox(store)
    async with store.transaction() as tx:
        await tx.execute("INSERT INTO accounts (id, name) VALUES (?, ?)", 1, "ada")
        await outbox.add(tx, [user_event(1)])
    with pytest.raises(RuntimeError):
        async with store.transaction() as tx:
            await tx.execute("INSERT INTO accounts (id, name) VALUES (?, ?)", 2, "bob")
            await outbox.add(tx, [user_event(2)])
            raise RuntimeError("the business rule failed")
    assert await store.fetch_value("SELECT COUNT(*) FROM accounts") == 1
    assert await outbox.pending() == 1


async def test_the_relay_publishes_in_order_and_empties_the_outbox(store: Store) -> None:
    outbox = Outbox(store)
    events = [user_event(n) for n in range(25)]
    async with store.transaction() as tx:
        await outbox.add(tx, events)
    seen: list[int] = []
    bus = EventBus(SqlEventBackend(store), owns_backend=False)

    async def handler(e: CloudEvent) -> None:
        seen.append(e.data["n"])

    bus.subscribe("user.*", handler, group="audit")
    relay = OutboxRelay(store, bus, batch_size=10)
    while await relay.relay_once():
        pass
    await bus.drain()
    assert sorted(seen) == list(range(25))
    assert await outbox.pending() == 0


async def test_a_row_published_twice_reaches_handlers_once(store: Store) -> None:
    """A relay killed after publishing but before deleting publishes the row again."""
    outbox = Outbox(store)
    event = user_event(7)
    bus = EventBus(SqlEventBackend(store), owns_backend=False)
    seen: list[str] = []

    async def handler(e: CloudEvent) -> None:
        seen.append(e.id)

    bus.subscribe(">", handler, group="g")
    for _ in range(2):
        async with store.transaction() as tx:
            await outbox.add(tx, [event])
        await OutboxRelay(store, bus).relay_once()
    await bus.drain()
    assert seen == [event.id]


async def test_an_idempotent_consumer_handles_each_event_once(store: Store) -> None:
    receipts = IdempotentConsumer(store, "mailer")
    calls: list[str] = []

    async def send_mail(e: CloudEvent) -> None:
        calls.append(e.id)

    handler = receipts.wrap(send_mail)
    event = user_event(1)
    await handler(event)
    await handler(event)
    assert calls == [event.id]
    assert await receipts.seen(event)
    other = IdempotentConsumer(store, "analytics")
    assert not await other.seen(event)  # receipts are per consumer


async def test_claim_commits_effects_and_receipt_together(store: Store) -> None:
    await store.execute("CREATE TABLE totals (name TEXT PRIMARY KEY, n INTEGER)")
    await store.execute("INSERT INTO totals (name, n) VALUES ('users', 0)")
    receipts = IdempotentConsumer(store, "analytics")
    event = user_event(1)

    async def count(e: CloudEvent, fail: bool = False) -> Any:
        async with receipts.claim(e) as tx:
            if tx is None:
                return "duplicate"
            await tx.execute("UPDATE totals SET n = n + 1 WHERE name = 'users'")
            if fail:
                raise RuntimeError("crashed before commit")
        return "counted"

    with pytest.raises(RuntimeError):
        await count(event, fail=True)
    assert await store.fetch_value("SELECT n FROM totals") == 0
    assert not await receipts.seen(event)  # rolled back with the effect
    assert await count(event) == "counted"
    assert await count(event) == "duplicate"
    assert await store.fetch_value("SELECT n FROM totals") == 1
