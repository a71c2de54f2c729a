"""What the Kafka backend does beyond the conformance suite: the wire, the layout, bad
input, Kafka's own tools' view of the groups, and members that go away."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.partitioner import murmur2
from tests.conformance.event_backend import bus_on, event, group_name, wait_for
from tests.integration.events.kafka.conftest import REQUIRE_SERVICES, MakeKafka

from hybridmesh.core.errors import ConfigurationError
from hybridmesh.events.backend import BackendUnavailableError, GroupSpec, Settlement
from hybridmesh.events.backends.kafka import KafkaEventBackend
from hybridmesh.events.envelope import CloudEvent
from hybridmesh.events.local_kafka import LocalKafka
from hybridmesh.observability.metrics import MeshMetrics

pytestmark = pytest.mark.kafka


async def raw_records(bootstrap: str, topic: str) -> list[Any]:
    """Every record on ``topic``, read by a plain consumer outside any group."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic)
        if partitions is None:
            await consumer.topics()
            partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        found: list[Any] = []
        async with asyncio.timeout(10):
            while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
                for records in (await consumer.getmany(timeout_ms=200)).values():
                    found += records
        return found
    finally:
        await consumer.stop()


async def test_events_travel_in_binary_mode_with_the_partition_key_as_the_record_key(
    backend: KafkaEventBackend, kafka_bootstrap: str
) -> None:
    sent = event("order.created", key="order-7", n=1)
    await backend.publish([sent])
    [record] = await raw_records(kafka_bootstrap, backend.layout.default_topic)
    headers = dict(record.headers)
    assert record.key == b"order-7"
    assert headers["ce_id"] == sent.id.encode()
    assert headers["ce_type"] == b"order.created"
    assert headers["content-type"].startswith(b"application/json")
    # Kafka's default partitioner put it where a Java or librdkafka producer would.
    assert record.partition == (murmur2(b"order-7") & 0x7FFFFFFF) % backend.layout.partitions


async def test_structured_mode_on_request(make_kafka: MakeKafka, kafka_bootstrap: str) -> None:
    backend = await make_kafka(mode="structured")
    sent = event(n=2)
    await backend.publish([sent])
    [record] = await raw_records(kafka_bootstrap, backend.layout.default_topic)
    assert dict(record.headers)["content-type"].startswith(b"application/cloudevents+json")
    assert CloudEvent.from_json(record.value) == sent


async def test_routes_put_event_types_on_their_own_topics(
    make_kafka: MakeKafka, kafka_bootstrap: str
) -> None:
    backend = await make_kafka(route="order=orders,order.payment=payments")
    orders, payments, other = (
        event("order.created", n=1),
        event("order.payment.failed", n=2),
        event("user.registered", n=3),
    )
    await backend.publish([orders, payments, other])
    prefix = backend.layout.prefix
    on = {
        topic: [r.headers for r in await raw_records(kafka_bootstrap, f"{prefix}.{topic}")]
        for topic in ("orders", "payments", "events")
    }
    assert [dict(h)["ce_id"] for h in on["orders"]] == [orders.id.encode()]
    assert [dict(h)["ce_id"] for h in on["payments"]] == [payments.id.encode()]
    assert [dict(h)["ce_id"] for h in on["events"]] == [other.id.encode()]
    # A group reads only the topics its pattern can match, and gets its events from them.
    assert backend.layout.topics_for("user.*") == [f"{prefix}.events"]
    seen: list[str] = []
    bus = bus_on(backend)

    async def handler(e: CloudEvent) -> None:
        seen.append(e.type)

    bus.subscribe("order.>", handler, group=group_name())
    await bus.drain()
    assert sorted(seen) == ["order.created", "order.payment.failed"]


async def test_a_malformed_record_is_dead_lettered_with_its_reason_and_the_group_goes_on(
    backend: KafkaEventBackend, kafka_bootstrap: str
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(
            backend.layout.default_topic, b"not an event", key=b"k", headers=[("ce_id", b"1")]
        )
    finally:
        await producer.stop()
    after = event(key="k", n=2)
    await backend.publish([after])
    handled: list[str] = []
    bus = bus_on(backend)

    async def handler(e: CloudEvent) -> None:
        handled.append(e.id)

    group = group_name()
    bus.subscribe(">", handler, group=group)
    await bus.drain()
    assert handled == [after.id]
    [letter] = await backend.dead_letters(group=group)
    assert letter.event is None and letter.body == b"not an event"
    assert letter.reason.startswith("malformed event")
    assert letter.extra["origin"].startswith(backend.layout.default_topic + "/")


async def test_groups_are_kafka_consumer_groups_with_their_offsets_committed(
    backend: KafkaEventBackend, kafka_bootstrap: str
) -> None:
    await backend.publish([event(key="a", n=i) for i in range(5)])
    group = group_name()
    bus = bus_on(backend)
    handled: list[int] = []

    async def handler(e: CloudEvent) -> None:
        handled.append(e.data["n"])

    bus.subscribe(">", handler, group=group)
    await bus.drain()
    assert handled == [0, 1, 2, 3, 4]
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        partition = (murmur2(b"a") & 0x7FFFFFFF) % backend.layout.partitions
        tp = TopicPartition(backend.layout.default_topic, partition)
        offsets = await admin.list_consumer_group_offsets(
            backend.layout.group_id(group), partitions=[tp]
        )
    finally:
        await admin.close()
    assert offsets[tp].offset == 5  # what Kafka's tools show: everything handled


async def test_consumer_lag_is_a_metric(make_kafka: MakeKafka) -> None:
    backend = await make_kafka(partitions="1")
    metrics = MeshMetrics()
    backend.metrics = metrics
    await backend.publish([event(n=i) for i in range(30)])
    spec = GroupSpec(group_name())
    await backend.ensure_group(spec)
    batches: list[Any] = []
    async with asyncio.timeout(10):
        while not batches:
            batches = await backend.fetch(spec, "c", max_events=10, wait=1.0)
    taken = sum(len(b.deliveries) for b in batches)
    lag = metrics.registry.get_sample_value(
        "hybridmesh_event_consumer_lag",
        {"group": spec.name, "partition": f"{backend.layout.default_topic}/0"},
    )
    assert lag == 30 - taken
    for batch in batches:
        await backend.settle(batch, Settlement(len(batch.deliveries)))


async def test_events_a_member_held_go_to_the_member_that_takes_its_partitions(
    make_kafka: MakeKafka,
) -> None:
    first = await make_kafka()
    spec = GroupSpec(group_name())
    await first.publish([event(key=f"k{i}", n=i) for i in range(20)])
    await first.ensure_group(spec)
    held: list[Any] = []
    async with asyncio.timeout(10):
        while not held:
            held = await first.fetch(spec, "dies", max_events=100, wait=1.0)
    await first.close()  # leaves the group with its batches unsettled, as a crash would
    second = await make_kafka()
    bus = bus_on(second)
    seen: list[int] = []

    async def handler(e: CloudEvent) -> None:
        seen.append(e.data["n"])

    bus.subscribe(">", handler, group=spec.name)
    async with bus:
        await wait_for(lambda: len(set(seen)) == 20, 20)
    assert sorted(set(seen)) == list(range(20))


async def test_a_latest_group_made_after_a_batched_publish_skips_all_of_it(
    backend: KafkaEventBackend,
) -> None:
    """Where the log ends is taken from a fetch's high watermark as well as ListOffsets,
    which some brokers (Tansu) answer short of the end after a batch of several records."""
    await backend.publish([event(key="k", n=i) for i in range(20)])  # one batch
    ends = await backend.partition_ends([backend.layout.default_topic])
    assert sum(ends.values()) == 20
    seen: list[int] = []
    bus = bus_on(backend)

    async def handler(e: CloudEvent) -> None:
        seen.append(e.data["n"])

    bus.subscribe(">", handler, group=group_name(), start="latest")
    await bus.drain()
    await bus.publish(event(key="k", n=99))
    await bus.drain()
    assert seen == [99]


def test_bad_urls_are_refused_with_the_option_named() -> None:
    with pytest.raises(ConfigurationError, match="unknown option"):
        KafkaEventBackend("kafka://127.0.0.1:9092?partition=3")
    with pytest.raises(ConfigurationError, match="partitions"):
        KafkaEventBackend("kafka://127.0.0.1:9092?partitions=lots")
    with pytest.raises(ConfigurationError, match="route"):
        KafkaEventBackend("kafka://127.0.0.1:9092?route=orders")
    with pytest.raises(ConfigurationError, match="host:port"):
        KafkaEventBackend("kafka://broker")


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@contextlib.contextmanager
def silent_listener() -> Iterator[int]:
    """A port that accepts connections and never answers, as a broker that hangs."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            with contextlib.suppress(OSError):
                held.append(server.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        server.close()


async def test_an_unreachable_broker_fails_the_start_clearly() -> None:
    backend = KafkaEventBackend(f"kafka://127.0.0.1:{_closed_port()}?connect_timeout=5")
    with pytest.raises(BackendUnavailableError, match="unreachable"):
        await backend.start()


async def test_a_broker_that_never_answers_fails_the_start_after_the_connect_timeout() -> None:
    with silent_listener() as port:
        backend = KafkaEventBackend(f"kafka://127.0.0.1:{port}?connect_timeout=1")
        with pytest.raises(BackendUnavailableError, match="no answer within 1 s"):
            await backend.start()


async def test_the_health_check_fails_while_the_broker_is_away() -> None:
    try:  # a broker of its own, to stop
        broker = LocalKafka().start()
    except ConfigurationError as error:
        if REQUIRE_SERVICES:
            raise
        pytest.skip(f"no local Kafka-protocol broker: {error}")
    backend = KafkaEventBackend(f"{broker.url}?prefix=h&session_timeout=2")
    try:
        await backend.start()
        await backend.check()
        broker.stop()
        with pytest.raises(BackendUnavailableError):
            await backend.check()
    finally:
        broker.stop()
        await backend.close()
