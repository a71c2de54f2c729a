"""Processes killed with SIGKILL at any point lose nothing.

A relay is killed repeatedly while it moves the outbox to the log; a consumer is killed in
the middle of a batch. Both run as real child processes on a real SQLite file (shared with
this test through WAL), so the kill is as abrupt as it gets.
"""

from __future__ import annotations

import random
import textwrap
from collections.abc import Awaitable
from pathlib import Path

from tests.children import kill, spawn
from tests.waiting import eventually

from hybridmesh.events import CloudEvent, EventBus, IdempotentConsumer, Outbox
from hybridmesh.events.backends.sql import SqlEventBackend
from hybridmesh.store import Store, open_store

RELAY = textwrap.dedent(
    """
    import asyncio, sys
    from hybridmesh.events import EventBus, OutboxRelay
    from hybridmesh.events.backends.sql import SqlEventBackend
    from hybridmesh.store import open_store

    async def main(url):
        store = await open_store(url)
        bus = EventBus(SqlEventBackend(store), owns_backend=False)
        relay = OutboxRelay(store, bus, batch_size=37, poll_interval=0.01)
        print("ready", flush=True)
        await relay.run()

    asyncio.run(main(sys.argv[1]))
    """
)

CONSUMER = textwrap.dedent(
    """
    import asyncio, sys
    from hybridmesh.events import EventBus, IdempotentConsumer
    from hybridmesh.events.backends.sql import SqlEventBackend
    from hybridmesh.store import open_store

    async def main(url):
        store = await open_store(url)
        receipts = IdempotentConsumer(store, "ledger")
        bus = EventBus(SqlEventBackend(store), owns_backend=False, poll_wait=0.05)

        async def handle(event):
            async with receipts.claim(event) as tx:
                if tx is not None:
                    await tx.execute("INSERT INTO ledger (event_id) VALUES (?)", event.id)
            await asyncio.sleep(0.004)  # slow enough to be killed mid-batch

        bus.subscribe(">", handle, group="ledger", ack_wait=1.0, batch_size=50)
        print("ready", flush=True)
        async with bus:
            await asyncio.Event().wait()

    asyncio.run(main(sys.argv[1]))
    """
)


async def _at_most(count: Awaitable[int], most: int) -> bool:
    return await count <= most


async def _ledger_has(store: Store, count: int) -> bool:
    return int(await store.fetch_value("SELECT COUNT(*) FROM ledger")) >= count


async def _all_settled(store: Store, group: str) -> bool:
    """Whether ``group`` has dealt with every event in the log (and has started at all)."""
    partitions = await store.fetch_value(
        "SELECT COUNT(*) FROM event_positions WHERE group_name = ?", group
    )
    behind = await store.fetch_value(
        "SELECT COUNT(*) FROM event_log l JOIN event_positions p ON p.partition = l.partition"
        " WHERE p.group_name = ? AND l.seq > p.position",
        group,
    )
    return int(partitions) > 0 and int(behind) == 0


async def test_a_relay_killed_at_any_point_loses_nothing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'mesh.db'}"
    store = await open_store(url)
    await store.upgrade()
    outbox = Outbox(store)
    total = 3000
    for start in range(0, total, 100):
        async with store.transaction() as tx:
            await outbox.add(
                tx,
                [
                    CloudEvent.create("order.created", "/orders", {"n": n})
                    for n in range(start, start + 100)
                ],
            )
    rng = random.Random(7)
    for _ in range(4):  # each relay is killed once it has sent a random share
        child = spawn(RELAY, url)
        # (On a busy machine a relay may get far before it is killed, even to the end.)
        left = max(await outbox.pending() - rng.randint(50, 500), 0)
        await eventually(lambda n=left: _at_most(outbox.pending(), n), 60, "the relay's progress")
        kill(child)
    child = spawn(RELAY, url)
    await eventually(lambda: _at_most(outbox.pending(), 0), 60, "an empty outbox")
    kill(child)

    seen: list[int] = []
    bus = EventBus(SqlEventBackend(store), owns_backend=False)

    async def handler(e: CloudEvent) -> None:
        seen.append(e.data["n"])

    bus.subscribe(">", handler, group="check", batch_size=1000)
    await bus.drain(max_seconds=60)
    assert sorted(seen) == list(range(total))  # every event, each once
    await store.close()


async def test_a_consumer_killed_mid_batch_loses_nothing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'mesh.db'}"
    store = await open_store(url)
    await store.upgrade()
    await store.execute("CREATE TABLE ledger (event_id TEXT NOT NULL)")
    total = 600
    backend = SqlEventBackend(store)
    bus = EventBus(backend, owns_backend=False)
    events = [CloudEvent.create("payment.captured", "/payments", {"n": n}) for n in range(total)]
    await bus.publish_many(events)

    child = spawn(CONSUMER, url)
    await eventually(lambda: _ledger_has(store, 100), 30, "100 handled")
    kill(child)  # with a batch in hand: its lease must expire and the batch come again
    handled_before = await store.fetch_value("SELECT COUNT(*) FROM ledger")
    assert handled_before < total

    child = spawn(CONSUMER, url)
    # Until the group has settled every event, a batch the first consumer held may still
    # come again (after its lease ends): a late duplicate would show up by then.
    await eventually(lambda: _all_settled(store, "ledger"), 60, "every event settled")
    kill(child)
    rows = await store.fetch_all("SELECT event_id FROM ledger")
    ids = [r["event_id"] for r in rows]
    assert len(ids) == total and set(ids) == {e.id for e in events}
    receipts = IdempotentConsumer(store, "ledger")
    assert all([await receipts.seen(e) for e in events[:5]])
    await store.close()
