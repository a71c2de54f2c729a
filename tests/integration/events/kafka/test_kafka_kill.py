"""A Kafka group member killed with SIGKILL mid-batch loses nothing.

The member runs as a real child process. Killed, it does not leave the group: Kafka notices
only when its session times out, then gives its partitions to the next member, which starts
at the committed offsets. Events the dead member handled but had not committed come again;
an idempotent consumer's receipts (in SQLite, shared with this test) keep the ledger exact.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from tests.children import kill, spawn
from tests.integration.events.kafka.conftest import MakeKafka
from tests.waiting import eventually

from hybridmesh.events import CloudEvent, EventBus
from hybridmesh.events.backends.kafka import KafkaEventBackend
from hybridmesh.store import Store, open_store

pytestmark = pytest.mark.kafka

CONSUMER = textwrap.dedent(
    """
    import asyncio, sys
    from hybridmesh.events import EventBus, IdempotentConsumer
    from hybridmesh.events.backends.kafka import KafkaEventBackend
    from hybridmesh.store import open_store

    async def main(store_url, kafka_url):
        store = await open_store(store_url)
        receipts = IdempotentConsumer(store, "ledger")
        bus = EventBus(KafkaEventBackend(kafka_url), poll_wait=0.05)

        async def handle(event):
            async with receipts.claim(event) as tx:
                if tx is not None:
                    await tx.execute("INSERT INTO ledger (event_id) VALUES (?)", event.id)
            await asyncio.sleep(0.004)  # slow enough to be killed mid-batch

        bus.subscribe(">", handle, group="ledger", batch_size=50)
        print("ready", flush=True)
        async with bus:
            await asyncio.Event().wait()

    asyncio.run(main(sys.argv[1], sys.argv[2]))
    """
)


async def _ledger_has(store: Store, count: int) -> bool:
    return int(await store.fetch_value("SELECT COUNT(*) FROM ledger")) >= count


async def _committed_everything(backend: KafkaEventBackend, bootstrap: str) -> bool:
    """Whether the group's committed offsets reach the end of every partition."""
    topic = backend.layout.default_topic
    tps = [TopicPartition(topic, p) for p in range(backend.layout.partitions)]
    ends = await backend.partition_ends([topic])
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        committed = await admin.list_consumer_group_offsets(
            backend.layout.group_id("ledger"), partitions=tps
        )
    finally:
        await admin.close()
    return all(committed[tp].offset == ends[tp] for tp in tps)


async def test_a_member_killed_mid_batch_loses_nothing(
    make_kafka: MakeKafka, kafka_bootstrap: str, tmp_path: Path
) -> None:
    store_url = f"sqlite:///{tmp_path / 'mesh.db'}"
    store = await open_store(store_url)
    await store.upgrade()
    await store.execute("CREATE TABLE ledger (event_id TEXT NOT NULL)")
    backend = await make_kafka()
    total = 600
    events = [CloudEvent.create("payment.captured", "/payments", {"n": n}) for n in range(total)]
    await EventBus(backend, owns_backend=False).publish_many(events)

    child = spawn(CONSUMER, store_url, backend.url)
    await eventually(lambda: _ledger_has(store, 100), 30, "100 handled")
    kill(child)  # with batches in hand and offsets not yet committed
    assert int(await store.fetch_value("SELECT COUNT(*) FROM ledger")) < total

    child = spawn(CONSUMER, store_url, backend.url)
    # Once the group has committed to the end of every partition, nothing more can come.
    await eventually(lambda: _committed_everything(backend, kafka_bootstrap), 60, "all committed")
    kill(child)
    ids = [r["event_id"] for r in await store.fetch_all("SELECT event_id FROM ledger")]
    assert len(ids) == total and set(ids) == {e.id for e in events}
    await store.close()
