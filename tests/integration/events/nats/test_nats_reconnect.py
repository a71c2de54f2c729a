"""The JetStream backend after losing its connection: closed by the server for a protocol
error, or dropped by a server restart. Publishing and consuming go on; a publish made while
the server is away is stored once it is back, or refused with BackendUnavailableError, never
acknowledged and lost."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from nats import errors as nats_errors
from tests.integration.events.nats.conftest import MakeNats, PrivateNats, hang_up
from tests.waiting import eventually

from hybridmesh.events.backend import BackendUnavailableError, GroupSpec, Settlement
from hybridmesh.events.backends._nats_layout import group_token
from hybridmesh.events.backends.nats import NatsEventBackend
from hybridmesh.events.bus import EventBus
from hybridmesh.events.envelope import CloudEvent, EventFormatError

pytestmark = pytest.mark.nats


def event(n: int) -> CloudEvent:
    return CloudEvent.create("user.registered", "/tests", {"n": n})


async def fetch_numbers(backend: NatsEventBackend, group: GroupSpec) -> list[int]:
    """Everything the group has now, settled."""
    seen: list[int] = []
    while batches := await backend.fetch(group, "c", max_events=100, wait=0.5):
        for batch in batches:
            seen += [d.event.data["n"] for d in batch.deliveries if d.event is not None]
            await backend.settle(batch, Settlement(len(batch.deliveries)))
    return seen


async def test_a_connection_the_server_closed_is_opened_again(make_nats: MakeNats) -> None:
    backend = await make_nats()
    group = GroupSpec(f"g{uuid.uuid4().hex[:8]}")
    await backend.ensure_group(group)
    await backend.publish([event(1)])
    await hang_up(backend)
    await backend.publish([event(2)])
    assert sorted(await fetch_numbers(backend, group)) == [1, 2]
    await backend.check()
    assert not backend._connected().nc.is_closed


async def test_the_bus_keeps_consuming_after_the_server_closed_its_connection(
    make_nats: MakeNats,
) -> None:
    backend = await make_nats()
    seen: list[int] = []

    async def handler(e: CloudEvent) -> None:
        seen.append(e.data["n"])

    bus = EventBus(backend, poll_wait=0.2, owns_backend=False)
    # A fetch whose pulls were in flight when the connection closed cannot know what the
    # server delivered: those leases come back after ack_wait.
    bus.subscribe(">", handler, group=f"g{uuid.uuid4().hex[:8]}", ack_wait=2.0)
    async with bus:
        await bus.publish(event(1))
        await eventually(lambda: seen == [1], what="the first event")
        await hang_up(backend)
        await bus.publish(event(2))
        await eventually(lambda: seen == [1, 2], what="the event after the reconnect")


async def test_publishing_and_consuming_go_on_after_a_server_restart(
    private_nats: PrivateNats, tmp_path: Any
) -> None:
    backend = NatsEventBackend(private_nats.url, prefix="restart", request_timeout=30)
    await backend.start()
    try:
        group = GroupSpec("g")
        await backend.ensure_group(group)
        await backend.publish([event(1)])
        private_nats.stop()
        await eventually(lambda: not backend._connected().nc.is_connected, what="a disconnect")
        with pytest.raises(BackendUnavailableError):
            await backend.check()
        # Made while the server is down, this publish waits for it within its deadline.
        pending = asyncio.create_task(backend.publish([event(2)]))
        private_nats.start()
        await pending
        await backend.publish([event(3)])
        await eventually(_checks(backend), what="the health check passing again")
        assert sorted(await fetch_numbers(backend, group)) == [1, 2, 3]
    finally:
        await backend.close()


async def test_a_publish_while_the_server_stays_down_is_refused_not_acknowledged(
    private_nats: PrivateNats,
) -> None:
    backend = NatsEventBackend(private_nats.url, prefix="down", request_timeout=1)
    await backend.start()
    try:
        group = GroupSpec("g")
        await backend.ensure_group(group)
        private_nats.stop()
        await eventually(lambda: not backend._connected().nc.is_connected, what="a disconnect")
        with pytest.raises(BackendUnavailableError, match="did not store the events in time"):
            await backend.publish([event(1)])
        private_nats.start()
        await eventually(lambda: backend._connected().nc.is_connected, what="a reconnect")
        await backend.publish([event(2)])
        # The refused event may or may not have reached the stream (the client may have
        # flushed it on reconnecting); the acknowledged one is there.
        assert 2 in await fetch_numbers(backend, group)
    finally:
        await backend.close()


def _checks(backend: NatsEventBackend) -> Callable[[], Any]:
    async def passes() -> bool:
        try:
            await backend.check()
        except BackendUnavailableError:
            return False
        return True

    return passes


@pytest.mark.parametrize("private_nats", ["max_payload: 4096"], indirect=True)
async def test_an_event_over_the_servers_max_payload_is_400_material_and_harms_nothing(
    private_nats: PrivateNats,
) -> None:
    """A server set to take less than the envelope's limits: the event that does not fit is
    refused before it is sent (the server would close the connection on it)."""
    backend = NatsEventBackend(private_nats.url, prefix="small")
    await backend.start()
    try:
        group = GroupSpec("g")
        await backend.ensure_group(group)
        big = CloudEvent.create("user.registered", "/tests", {"text": "x" * 4000})
        with pytest.raises(EventFormatError) as info:
            await backend.publish([event(1), big])
        [problem] = info.value.problems
        assert problem.field == "[1].data"
        assert problem.message.endswith("this NATS server takes at most 4096 (its max_payload)")
        await backend.publish([event(2)])
        assert await fetch_numbers(backend, group) == [2]
        assert not backend._connected().nc.is_closed
    finally:
        await backend.close()


#: A correctness bound, far below the default ack_wait (30 s): a batch fetched on a
#: connection the server closed must be settled on the new one, not wait for ack_wait.
WELL_BEFORE_ACK_WAIT = 10.0


async def test_a_batch_held_when_the_server_closed_the_connection_is_settled_on_the_new_one(
    make_nats: MakeNats,
) -> None:
    backend = await make_nats()
    seen: list[int] = []
    reached, go_on = asyncio.Event(), asyncio.Event()

    async def handler(e: CloudEvent) -> None:
        n = e.data["n"]
        if n == 40 and not go_on.is_set():  # hold the batch (and its lease) here
            reached.set()
            await go_on.wait()
        seen.append(n)

    bus = EventBus(backend, poll_wait=0.2, owns_backend=False)
    bus.subscribe(">", handler, group=f"g{uuid.uuid4().hex[:8]}")  # ack_wait: 30 s
    # One key: one partition, so the held batch is all the bus has in hand.
    events = [
        CloudEvent.create("user.registered", "/tests", {"n": n}, partition_key="k")
        for n in range(200)
    ]
    async with bus:
        await bus.publish_many(events)
        await asyncio.wait_for(reached.wait(), WELL_BEFORE_ACK_WAIT)
        await hang_up(backend)
        go_on.set()
        await eventually(
            lambda: sorted(set(seen)) == list(range(200)),
            WELL_BEFORE_ACK_WAIT,
            "every event handled",
        )


async def test_leases_a_closed_connection_refused_to_release_are_released_on_the_next(
    make_nats: MakeNats,
) -> None:
    backend = await make_nats()
    group = GroupSpec(f"g{uuid.uuid4().hex[:8]}")  # ack_wait: 30 s
    await backend.ensure_group(group)
    await backend.publish([event(1)])
    # Hold every lease token, as a fetch does, and lose the connection before handing them
    # back: the closed connection refuses the naks (nothing is sent).
    conn, layout = backend._connected(), backend.layout
    tokens = await conn.pull.pull(
        layout.leases_stream, layout.lease_consumer(group_token(group.name)), layout.partitions
    )
    assert len(tokens) == layout.partitions
    await conn.nc.close()
    with pytest.raises(nats_errors.ConnectionClosedError):
        await conn.reader._nak_all(tokens)
    [batch] = await asyncio.wait_for(
        backend.fetch(group, "c", max_events=10, wait=WELL_BEFORE_ACK_WAIT), WELL_BEFORE_ACK_WAIT
    )
    assert [d.event.data["n"] for d in batch.deliveries if d.event is not None] == [1]
