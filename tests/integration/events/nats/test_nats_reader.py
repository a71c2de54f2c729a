"""A read without a group on JetStream: an ephemeral consumer that the reader deletes when
it closes, and that the server deletes by itself when the reader's process is gone."""

from __future__ import annotations

from nats.js.api import AckPolicy

from hybridmesh.events.backends._nats_reader import READER_INACTIVE
from hybridmesh.events.backends.nats import NatsEventBackend
from hybridmesh.events.envelope import CloudEvent


async def consumer_names(backend: NatsEventBackend) -> set[str]:
    js = backend._connected().js
    return {info.name for info in await js.consumers_info(backend.layout.events_stream)}


async def test_a_reader_creates_no_durable_consumer_and_leaves_nothing_behind(
    backend: NatsEventBackend,
) -> None:
    before = await consumer_names(backend)
    reader = await backend.open_reader("needle.*", start="earliest")
    [name] = await consumer_names(backend) - before
    info = await backend._connected().js.consumer_info(backend.layout.events_stream, name)
    # Not durable, acknowledges nothing, and expires on the server once no one pulls it.
    assert info.config.durable_name is None
    assert info.config.ack_policy == AckPolicy.NONE
    assert info.config.inactive_threshold == READER_INACTIVE

    await backend.publish([CloudEvent.create("noise.x", "/t", {}) for _ in range(50)])
    needle = CloudEvent.create("needle.found", "/t", {})
    await backend.publish([needle])
    [delivery] = await reader.read(1, wait=5.0)
    assert delivery.event is not None and delivery.event.id == needle.id

    await reader.close()
    assert await consumer_names(backend) == before
