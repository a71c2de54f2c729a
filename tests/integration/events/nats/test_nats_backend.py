"""What the JetStream backend does beyond the conformance suite: dedupe by ``Nats-Msg-Id``,
leases across processes, nak with delay, redelivery after ``ack_wait``, raw bytes on an
event subject, and the dead-letter stream."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import nats
import pytest

from hybridmesh.core.errors import NotFoundError, ValidationError
from hybridmesh.events.backend import Delivery, GroupSpec, PartitionBatch, Settlement
from hybridmesh.events.backends._nats_wire import JetStreamError
from hybridmesh.events.backends.nats import NatsEventBackend
from hybridmesh.events.envelope import CloudEvent

pytestmark = pytest.mark.nats

MakeNats = Callable[..., Awaitable[NatsEventBackend]]


def event(type_: str = "user.registered", key: str | None = None, **data: Any) -> CloudEvent:
    return CloudEvent.create(type_, "/tests", data or {"n": 0}, partition_key=key)


def spec(**options: Any) -> GroupSpec:
    return GroupSpec(f"g{uuid.uuid4().hex[:10]}", **options)


def deliveries(batches: list[PartitionBatch]) -> list[Delivery]:
    return [d for b in batches for d in b.deliveries]


def numbers(batches: list[PartitionBatch]) -> list[int]:
    return [d.event.data["n"] for d in deliveries(batches) if d.event is not None]


async def settle_all(backend: NatsEventBackend, batches: list[PartitionBatch]) -> None:
    for batch in batches:
        await backend.settle(batch, Settlement(len(batch.deliveries)))


async def consume_all(backend: NatsEventBackend, group: GroupSpec, wait: float = 0.3) -> list[int]:
    seen: list[int] = []
    while batches := await backend.fetch(group, "c", max_events=100, wait=wait):
        seen += numbers(batches)
        await settle_all(backend, batches)
    return seen


async def test_the_same_source_and_id_is_stored_once(backend: NatsEventBackend) -> None:
    group = spec()
    await backend.ensure_group(group)
    first = event(n=1)
    same_id_other_source = CloudEvent.create("user.registered", "/elsewhere", {"n": 2}, id=first.id)
    await backend.publish([first, first])
    await backend.publish([first, same_id_other_source])
    assert sorted(await consume_all(backend, group)) == [1, 2]
    async with await nats.connect(backend.url) as nc:
        info = await nc.jetstream().stream_info(backend.layout.events_stream)
    assert info.state.messages == 2


async def test_every_group_receives_every_event(backend: NatsEventBackend) -> None:
    one, two = spec(), spec()
    await backend.ensure_group(one)
    await backend.ensure_group(two)
    await backend.publish([event(key=f"k{i}", n=i) for i in range(20)])
    assert sorted(await consume_all(backend, one)) == list(range(20))
    assert sorted(await consume_all(backend, two)) == list(range(20))


async def test_a_group_filters_on_its_pattern(backend: NatsEventBackend) -> None:
    group = spec(pattern="order.*")
    await backend.ensure_group(group)
    await backend.publish(
        [event("order.created", n=1), event("user.registered", n=2), event("order.a.b", n=3)]
    )
    assert await consume_all(backend, group) == [1]


async def test_two_processes_share_a_group_and_handle_nothing_twice(
    backend: NatsEventBackend, make_nats: MakeNats
) -> None:
    second = await make_nats()
    group = spec()
    await backend.ensure_group(group)
    await second.ensure_group(group)
    await backend.publish([event(key=f"k{i % 13}", n=i) for i in range(300)])
    seen: dict[str, list[int]] = {"one": [], "two": []}

    async def work(name: str, b: NatsEventBackend) -> None:
        idle = 0
        while idle < 3:
            batches = await b.fetch(group, name, max_events=5, wait=0.2)
            idle = 0 if batches else idle + 1
            for batch in batches:
                await asyncio.sleep(0.003)
                seen[name] += numbers([batch])
                await b.settle(batch, Settlement(len(batch.deliveries)))

    await asyncio.gather(work("one", backend), work("two", second))
    assert sorted(seen["one"] + seen["two"]) == list(range(300))
    assert seen["one"] and seen["two"]


async def test_a_leased_partition_is_not_handed_to_another_process(
    backend: NatsEventBackend, make_nats: MakeNats
) -> None:
    second = await make_nats()
    group = spec()
    await backend.ensure_group(group)
    await backend.publish([event(key="k", n=i) for i in range(3)])
    first = await backend.fetch(group, "one", max_events=2, wait=1)
    assert numbers(first) == [0, 1]
    await backend.publish([event(key="k", n=3)])
    assert await second.fetch(group, "two", max_events=10, wait=0.3) == []
    await settle_all(backend, first)
    assert numbers(await second.fetch(group, "two", max_events=10, wait=1)) == [2, 3]


async def test_a_retry_waits_its_delay_and_holds_back_its_key(
    backend: NatsEventBackend, make_nats: MakeNats
) -> None:
    other = await make_nats()
    group = spec()
    await backend.ensure_group(group)
    await backend.publish([event(key="k", n=i) for i in range(3)])
    batches = await backend.fetch(group, "c", max_events=10, wait=1)
    assert numbers(batches) == [0, 1, 2]
    # The delay is far longer than the two fetches that must find the key held back.
    await backend.settle(batches[0], Settlement(1, retry_after=2))
    await backend.publish([event(key="k", n=3)])
    assert await backend.fetch(group, "c", max_events=10, wait=0.2) == []
    assert await other.fetch(group, "other", max_events=10, wait=0.1) == []
    again: list[PartitionBatch] = []
    while not again:  # then, once the delay is over, it comes
        again = await backend.fetch(group, "c", max_events=10, wait=1)
    assert numbers(again) == [1, 2, 3]
    assert [d.attempt for d in deliveries(again)] == [2, 1, 1]  # only the retried one counts
    await settle_all(backend, again)


async def test_released_events_come_back_in_log_order(backend: NatsEventBackend) -> None:
    # JetStream redelivers in the order events were queued; the lease puts them back in order.
    group = spec()
    await backend.ensure_group(group)
    await backend.publish([event(key="k", n=i) for i in range(4)])
    batch = await backend.fetch(group, "c", max_events=10, wait=1)
    await backend.settle(batch[0], Settlement(0))  # release all four untouched
    one = await backend.fetch(group, "c", max_events=1, wait=1)
    assert numbers(one) == [0]
    await backend.settle(one[0], Settlement(1))
    two = await backend.fetch(group, "c", max_events=1, wait=1)
    assert numbers(two) == [1]
    await backend.settle(two[0], Settlement(0, retry_after=0.1))
    rest = []
    while len(rest) < 3:
        got = await backend.fetch(group, "c", max_events=1, wait=1)
        assert got
        rest += [(d.event.data["n"], d.attempt) for d in deliveries(got) if d.event]
        await settle_all(backend, got)
    assert rest == [(1, 2), (2, 1), (3, 1)]


async def test_an_unsettled_batch_comes_again_in_order_with_higher_attempts(
    backend: NatsEventBackend, make_nats: MakeNats
) -> None:
    group = spec(ack_wait=1.0)
    await backend.ensure_group(group)
    await backend.publish([event(key="k", n=i) for i in range(3)])
    lost = await backend.fetch(group, "dies", max_events=10, wait=1)
    assert numbers(lost) == [0, 1, 2]
    other = await make_nats()
    again: list[PartitionBatch] = []
    while not again:  # once the lease's ack_wait is over
        again = await other.fetch(group, "lives", max_events=10, wait=0.5)
    assert numbers(again) == [0, 1, 2]
    assert deliveries(again)[0].attempt == 2
    await settle_all(other, again)
    await backend.settle(lost[0], Settlement(3))  # too late: nothing breaks
    assert await other.fetch(group, "lives", max_events=10, wait=0.3) == []


async def test_raw_bytes_on_an_event_subject_become_a_malformed_delivery(
    backend: NatsEventBackend,
) -> None:
    group = spec()
    await backend.ensure_group(group)
    subject = backend.layout.event_subject("pub", 0, "user.registered")
    async with await nats.connect(backend.url) as nc:
        await nc.jetstream().publish(subject, b"\xffnot a cloud event")
    batches = await backend.fetch(group, "c", max_events=10, wait=1)
    [delivery] = deliveries(batches)
    assert delivery.event is None and delivery.raw == b"\xffnot a cloud event"
    assert delivery.error
    await backend.settle(batches[0], Settlement(0, dead_letter="malformed event"))
    [letter] = await backend.dead_letters(group=group.name)
    assert letter.body == b"\xffnot a cloud event" and letter.event is None
    with pytest.raises(ValidationError):
        await backend.replay(letter.id)
    assert await backend.fetch(group, "c", max_events=10, wait=0.2) == []


async def test_dead_letters_are_listed_read_replayed_to_their_group_and_purged(
    backend: NatsEventBackend,
) -> None:
    failing, bystander = spec(), spec()
    await backend.ensure_group(failing)
    await backend.ensure_group(bystander)
    await backend.publish([event(key="a", n=1), event(key="b", n=2)])
    assert sorted(await consume_all(backend, bystander)) == [1, 2]
    buried = []
    for _ in range(2):
        [batch] = await backend.fetch(failing, "c", max_events=1, wait=1)
        buried += numbers([batch])
        await backend.settle(batch, Settlement(0, dead_letter=f"broken\nline {buried[-1]}"))
    letters = await backend.dead_letters(group=failing.name)
    assert [d.event.data["n"] for d in letters if d.event] == buried[::-1]  # newest first
    assert letters[0].reason == f"broken\nline {buried[-1]}"
    assert letters[0].group == failing.name and letters[0].attempts == 1
    assert await backend.dead_letters(group=bystander.name) == []
    assert len(await backend.dead_letters(limit=1)) == 1

    letter = await backend.get_dead_letter(letters[0].id)
    assert letter.event is not None and letter.replayed_at is None
    replayed = await backend.replay(letter.id)
    assert replayed.replayed_at is not None
    assert (await backend.get_dead_letter(letter.id)).replayed_at is not None
    assert await consume_all(backend, failing) == [buried[-1]]
    assert await consume_all(backend, bystander) == []  # the replay went to its group only

    assert await backend.purge(group=bystander.name) == 0
    assert await backend.purge(group=failing.name) == 2
    assert await backend.dead_letters() == []
    with pytest.raises(NotFoundError):
        await backend.get_dead_letter(letter.id)
    with pytest.raises(NotFoundError):
        await backend.get_dead_letter("no-such-letter")


async def test_start_and_ensure_group_are_idempotent(make_nats: MakeNats) -> None:
    first = await make_nats()
    await first.start()
    group = spec(ack_wait=5.0)
    await first.ensure_group(group)
    await first.publish([event(key="k", n=1)])
    again = await make_nats()
    await again.ensure_group(GroupSpec(group.name, ack_wait=7.0))
    assert await consume_all(again, GroupSpec(group.name, ack_wait=7.0)) == [1]


async def test_an_event_type_that_is_not_a_subject_is_refused(backend: NatsEventBackend) -> None:
    with pytest.raises(ValidationError):
        await backend.publish([event("user registered")])


async def test_a_process_that_still_uses_a_deleted_group_makes_it_again(
    backend: NatsEventBackend, make_nats: MakeNats
) -> None:
    other = await make_nats(request_timeout=1.0)
    group = spec()
    await backend.ensure_group(group)
    await other.ensure_group(group)
    await backend.publish([event(n=1)])
    assert await consume_all(backend, group) == [1]
    await backend.delete_group(group.name)
    await backend.delete_group("never-made")
    with pytest.raises((JetStreamError, TimeoutError)):  # its consumers are gone
        await other.fetch(group, "c", max_events=10, wait=0.1)
    assert await consume_all(other, group) == [1]  # made again: it starts over
