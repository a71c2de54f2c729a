"""The CloudEvents SDK's Kafka binding and the bus, through a real broker, both ways: a
producer using the official SDK publishes to the bus's topic and a bus group handles the
event; the bus publishes and a consumer using the SDK reads the event."""

from __future__ import annotations

from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from tests.cloudevents_sdk import sdk_http, sdk_kafka
from tests.conformance.event_backend import bus_on, group_name
from tests.integration.events.kafka.conftest import MakeKafka

from hybridmesh.events.envelope import CloudEvent

pytestmark = pytest.mark.kafka


async def _records(bootstrap: str, topic: str, count: int) -> list[Any]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer.topics()
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        found: list[Any] = []
        while len(found) < count:
            for records in (await consumer.getmany(timeout_ms=1000)).values():
                found += records
        return found
    finally:
        await consumer.stop()


@pytest.mark.parametrize("mode", ["binary", "structured"])
async def test_events_published_by_the_bus_read_with_the_sdk(
    make_kafka: MakeKafka, kafka_bootstrap: str, mode: str
) -> None:
    backend = await make_kafka(mode=mode)
    sent = CloudEvent.create(
        "order.created", "/orders", {"order_id": "O-7", "total": 12.5},
        subject="orders/O-7", partition_key="O-7",
    )  # fmt: skip
    await backend.publish([sent])
    [record] = await _records(kafka_bootstrap, backend.layout.default_topic, 1)
    message = sdk_kafka.KafkaMessage(dict(record.headers), record.key, record.value)
    read = (
        sdk_kafka.from_binary(message) if mode == "binary" else sdk_kafka.from_structured(message)
    )
    assert read["id"] == sent.id and read["type"] == "order.created"
    assert read["source"] == "/orders" and read["subject"] == "orders/O-7"
    # The SDK's 1.x API takes the record key as the client gives it: bytes, from aiokafka.
    assert read["partitionkey"] in ("O-7", b"O-7")
    assert read.get_data() == {"order_id": "O-7", "total": 12.5}


async def test_events_produced_with_the_sdk_handled_by_a_bus_group(
    make_kafka: MakeKafka, kafka_bootstrap: str
) -> None:
    backend = await make_kafka()
    sdk_event = sdk_http.CloudEvent(
        {
            "type": "payment.captured",
            "source": "/payments-java",
            "subject": "payments/P-1",
            "datacontenttype": "application/json",
            "partitionkey": "P-1",
        },
        {"payment_id": "P-1", "amount": 30},
    )
    message = sdk_kafka.to_binary(sdk_event)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(
            backend.layout.default_topic,
            message.value,
            key=message.key.encode() if isinstance(message.key, str) else message.key,
            headers=list(message.headers.items()),
        )
    finally:
        await producer.stop()
    handled: list[CloudEvent] = []
    bus = bus_on(backend)

    async def handler(e: CloudEvent) -> None:
        handled.append(e)

    bus.subscribe("payment.*", handler, group=group_name())
    await bus.drain()
    [event] = handled
    assert event.id == sdk_event["id"] and event.source == "/payments-java"
    assert event.subject == "payments/P-1" and event.partition_key == "P-1"
    assert event.data == {"payment_id": "P-1", "amount": 30}
