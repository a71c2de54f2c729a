"""One conformance suite for every event backend.

A backend's test module subclasses :class:`EventBackendConformance` as ``Test…`` and provides
two fixtures: ``backend`` (a started backend on fresh storage) and ``make_backend`` (an async
factory for another started backend on the *same* storage, as a second process would open
it). The tests drive the backend through the :class:`~hybridmesh.events.bus.EventBus`, as
users do, and through the protocol where the bus hides what must be checked.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from hybridmesh.core.errors import NotFoundError
from hybridmesh.events import limits
from hybridmesh.events.backend import (
    DeadLetter,
    EventBackend,
    EventReader,
    GroupSpec,
    LogSpan,
    Settlement,
)
from hybridmesh.events.bus import MAX_REASON, Drop, EventBus, Retry, current_delivery
from hybridmesh.events.envelope import CloudEvent

MakeBackend = Callable[[], Awaitable[EventBackend]]


def event(type_: str = "user.registered", key: str | None = None, **data: Any) -> CloudEvent:
    return CloudEvent.create(type_, "/tests", data or {"n": 0}, partition_key=key)


def bus_on(backend: EventBackend) -> EventBus:
    return EventBus(backend, poll_wait=0.05, owns_backend=False)


async def wait_for(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    async with asyncio.timeout(seconds):
        while not condition():  # noqa: ASYNC110 - polling another process
            await asyncio.sleep(0.02)


def group_name() -> str:
    return f"g{uuid.uuid4().hex[:10]}"


#: A character that takes 4 bytes in UTF-8 (and stays itself in JSON): the worst case of
#: every limit counted in characters.
WIDE = "😀"
LONGEST_TYPE = "t" * 63 + "." + "t" * 64


def _at_limits(n: int, **changes: Any) -> CloudEvent:
    """An event that is largest where ``changes`` say, small elsewhere; ``n`` makes the id
    and the source unique per test run."""
    fields: dict[str, Any] = {"source": f"/limits/{n}", "id": f"{uuid.uuid4()}", **changes}
    return CloudEvent.create(fields.pop("type", "limits.at"), **fields)


EVENTS_AT_THE_LIMITS: dict[str, Callable[[int], CloudEvent]] = {
    "type": lambda n: _at_limits(n, type=LONGEST_TYPE),
    "id": lambda n: _at_limits(n, id=f"{n:08d}" + WIDE * (limits.MAX_ID - 8)),
    "source": lambda n: _at_limits(n, source=f"{n:08d}" + WIDE * (limits.MAX_SOURCE - 8)),
    "subject": lambda n: _at_limits(n, subject=WIDE * limits.MAX_SUBJECT),
    "datacontenttype and text data": lambda n: _at_limits(
        n,
        datacontenttype="text/plain; note=" + "x" * (limits.MAX_DATACONTENTTYPE - 17),
        data=WIDE * (limits.MAX_DATA_BYTES // 4),
    ),
    "dataschema": lambda n: _at_limits(n, dataschema=WIDE * limits.MAX_DATASCHEMA),
    "json data": lambda n: _at_limits(n, data='"' * (limits.MAX_DATA_BYTES // 2 - 1)),
    "bytes data": lambda n: _at_limits(n, data=bytes(range(256)) * (limits.MAX_DATA_BYTES // 256)),
    "extensions": lambda n: _at_limits(
        n,
        extensions={
            **{
                f"x{i}": WIDE * limits.MAX_EXTENSION_VALUE for i in range(limits.MAX_EXTENSIONS - 2)
            },
            "big": limits.MAX_INTEGER,
            "small": limits.MIN_INTEGER,
        },
    ),
    "everything at once": lambda n: _at_limits(
        n,
        type=LONGEST_TYPE,
        id=f"{n:08d}" + WIDE * (limits.MAX_ID - 8),
        source=f"{n:08d}" + WIDE * (limits.MAX_SOURCE - 8),
        subject=WIDE * limits.MAX_SUBJECT,
        dataschema=WIDE * limits.MAX_DATASCHEMA,
        datacontenttype="application/octet-stream; n=" + "x" * (limits.MAX_DATACONTENTTYPE - 28),
        data=b"\xff" * limits.MAX_DATA_BYTES,
        extensions={
            f"x{i}": WIDE * limits.MAX_EXTENSION_VALUE for i in range(limits.MAX_EXTENSIONS)
        },
        partition_key=None,
    ),
}


class EventBackendConformance:
    """The behaviour every backend must show.

    ``ordered_log`` says whether the backend keeps one order over the whole log (the SQL log,
    JetStream) or only per partition (Kafka). Where it does not, a reader's events and
    their positions keep the order of each partition key, which is what the bus promises.
    """

    ordered_log: bool = True

    def assert_log_order(self, seen: list[str], sent: list[CloudEvent]) -> None:
        """``seen`` (ids) holds exactly ``sent``, in log order, or at least in the order of
        each partition key when the backend orders partitions only."""
        if self.ordered_log:
            assert seen == [e.id for e in sent]
            return
        assert sorted(seen) == sorted(e.id for e in sent)
        for key in {e.partition_key for e in sent if e.partition_key}:
            keyed = [e.id for e in sent if e.partition_key == key]
            assert [i for i in seen if i in keyed] == keyed

    async def test_a_published_event_is_delivered_once_and_acknowledged(
        self, backend: EventBackend
    ) -> None:
        spec = GroupSpec(group_name())
        await backend.ensure_group(spec)
        sent = event(n=1)
        await backend.publish([sent])
        batches = await backend.fetch(spec, "c1", max_events=10, wait=2.0)
        deliveries = [d for b in batches for d in b.deliveries]
        assert [d.event.id for d in deliveries if d.event] == [sent.id]
        assert deliveries[0].attempt == 1
        assert deliveries[0].event is not None and deliveries[0].event.data == {"n": 1}
        for batch in batches:
            await backend.settle(batch, Settlement(len(batch.deliveries)))
        assert await backend.fetch(spec, "c1", max_events=10, wait=0.2) == []

    async def test_patterns_follow_nats_rules(self, backend: EventBackend) -> None:
        got: dict[str, list[str]] = {"one": [], "many": []}
        bus = bus_on(backend)

        async def one(e: CloudEvent) -> None:
            got["one"].append(e.type)

        async def many(e: CloudEvent) -> None:
            got["many"].append(e.type)

        bus.subscribe("user.*", one, group=group_name())
        bus.subscribe("order.>", many, group=group_name())
        await bus.publish_many(
            [
                event("user.registered"),
                event("user.profile.updated"),
                event("order.created"),
                event("order.payment.failed"),
                event("inventory.reserved"),
            ]
        )
        await bus.drain()
        assert got["one"] == ["user.registered"]
        assert sorted(got["many"]) == ["order.created", "order.payment.failed"]

    async def test_every_group_receives_every_event(self, backend: EventBackend) -> None:
        seen: dict[str, list[str]] = {"a": [], "b": []}
        bus = bus_on(backend)
        for name in seen:

            async def handler(e: CloudEvent, name: str = name) -> None:
                seen[name].append(e.id)

            bus.subscribe(">", handler, group=group_name() + name)
        events = [event(n=i) for i in range(10)]
        await bus.publish_many(events)
        await bus.drain()
        assert sorted(seen["a"]) == sorted(e.id for e in events)
        assert sorted(seen["b"]) == sorted(e.id for e in events)

    async def test_the_same_source_and_id_is_published_once(self, backend: EventBackend) -> None:
        seen: list[str] = []
        bus = bus_on(backend)

        async def handler(e: CloudEvent) -> None:
            seen.append(e.id)

        bus.subscribe(">", handler, group=group_name())
        first = event()
        await bus.publish(first)
        await bus.publish(first)
        await bus.drain()
        assert seen == [first.id]

    async def test_order_is_kept_per_partition_key(self, backend: EventBackend) -> None:
        seen: dict[str, list[int]] = {"a": [], "b": []}
        bus = bus_on(backend)

        async def handler(e: CloudEvent) -> None:
            await asyncio.sleep(0)
            seen[e.partition_key or "?"].append(e.data["n"])

        bus.subscribe(">", handler, group=group_name(), batch_size=7)
        await bus.publish_many(
            [event("order.updated", key="ab"[i % 2], n=i // 2) for i in range(60)]
        )
        await bus.drain()
        assert seen["a"] == list(range(30))
        assert seen["b"] == list(range(30))

    async def test_a_retried_event_holds_back_later_events_with_its_key(
        self, backend: EventBackend
    ) -> None:
        seen: list[tuple[int, int]] = []
        failed_once: set[int] = set()
        bus = bus_on(backend)

        async def handler(e: CloudEvent) -> Retry | None:
            n = e.data["n"]
            if n == 1 and n not in failed_once:
                failed_once.add(n)
                seen.append((n, 0))
                return Retry(delay=0.3)
            seen.append((n, 1))
            return None

        bus.subscribe(">", handler, group=group_name())
        await bus.publish_many([event("order.updated", key="k", n=i) for i in range(4)])
        async with bus:
            await wait_for(lambda: len(seen) == 5)
        assert seen == [(0, 1), (1, 0), (1, 1), (2, 1), (3, 1)]

    async def test_a_handler_error_is_retried_with_backoff_then_succeeds(
        self, backend: EventBackend
    ) -> None:
        attempts: list[int] = []
        bus = bus_on(backend)

        async def handler(e: CloudEvent) -> None:
            attempts.append(len(attempts) + 1)
            if len(attempts) < 3:
                raise RuntimeError("database is down")

        sub = bus.subscribe(">", handler, group=group_name(), backoff_initial=0.05)
        await bus.publish(event())
        async with bus:
            await wait_for(lambda: sub.handled == 1)
        assert attempts == [1, 2, 3]
        assert sub.retried == 2
        assert await bus.dead_letters(group=sub.spec.name) == []

    async def test_dropped_events_count_as_handled(self, backend: EventBackend) -> None:
        calls: list[str] = []
        bus = bus_on(backend)

        async def handler(e: CloudEvent) -> Drop:
            calls.append(e.id)
            return Drop("not for us")

        sub = bus.subscribe(">", handler, group=group_name())
        await bus.publish(event())
        await bus.drain()
        await bus.drain()
        assert len(calls) == 1 and sub.handled == 1

    async def test_an_event_that_keeps_failing_goes_to_the_dead_letters_and_replays(
        self, backend: EventBackend
    ) -> None:
        broken = True
        handled: list[str] = []
        other: list[str] = []
        bus = bus_on(backend)

        poison = event("order.created", key="k", n=1)
        after = event("order.created", key="k", n=2)

        async def handler(e: CloudEvent) -> None:
            if broken and e.id == poison.id:  # only the poison fails, until it is fixed
                raise ValueError("price is negative")
            handled.append(e.id)

        async def bystander(e: CloudEvent) -> None:
            other.append(e.id)

        group = group_name()
        sub = bus.subscribe(
            ">", handler, group=group, max_deliveries=3, backoff_initial=0.01, backoff_max=0.05
        )
        bus.subscribe(">", bystander, group=group_name())
        await bus.publish_many([poison, after])
        async with bus:
            await wait_for(lambda: sub.dead_lettered == 1)
            letters = []
            async with asyncio.timeout(10):  # the settle that buries it may still be in flight
                while not letters:
                    letters = await bus.dead_letters(group=group)
                    await asyncio.sleep(0.02)
            assert len(letters) == 1
            letter = letters[0]
            assert letter.event is not None and letter.event.id == poison.id
            assert letter.attempts == 3
            assert "price is negative" in letter.reason and "3 attempts" in letter.reason
            assert (await bus.dead_letter(letter.id)).group == group
            await wait_for(lambda: after.id in handled)  # the key was not blocked for good
            broken = False
            replayed = await bus.replay(letter.id)
            assert replayed.replayed_at is not None
            await wait_for(lambda: poison.id in handled)
            # A later event on the same key comes after anything still due on it: once both
            # groups have it, a second delivery of the replay would have come before.
            marker = event("order.created", key="k", n=3)
            await bus.publish(marker)
            await wait_for(lambda: marker.id in handled and marker.id in other)
        assert handled.count(poison.id) == 1
        # The replay went to its group only.
        assert sorted(other) == sorted([poison.id, after.id, marker.id])
        assert await bus.purge(group=group) == 1
        assert await bus.dead_letters(group=group) == []
        with pytest.raises(NotFoundError):
            await bus.dead_letter(letter.id)

    async def test_an_unsettled_batch_is_delivered_again_with_a_higher_attempt(
        self, backend: EventBackend
    ) -> None:
        # The lease is long enough that a slow machine still looks while it holds.
        spec = GroupSpec(group_name(), ack_wait=2.0)
        await backend.ensure_group(spec)
        sent = event()
        await backend.publish([sent])
        first = await backend.fetch(spec, "dies", max_events=10, wait=2.0)
        assert [d.attempt for b in first for d in b.deliveries] == [1]
        assert await backend.fetch(spec, "lives", max_events=10, wait=0.2) == []  # leased
        again: list[Any] = []
        async with asyncio.timeout(10):
            while not again:
                again = await backend.fetch(spec, "lives", max_events=10, wait=0.5)
        deliveries = [d for b in again for d in b.deliveries]
        assert deliveries[0].event is not None and deliveries[0].event.id == sent.id
        assert deliveries[0].attempt == 2
        for batch in again:
            await backend.settle(batch, Settlement(len(batch.deliveries)))

    async def test_consumers_of_one_group_share_the_work(
        self, backend: EventBackend, make_backend: MakeBackend
    ) -> None:
        second = await make_backend()
        group = group_name()
        seen: dict[str, list[int]] = {"one": [], "two": []}
        buses = []
        for name, b in (("one", backend), ("two", second)):

            async def handler(e: CloudEvent, name: str = name) -> None:
                await asyncio.sleep(0.002)
                seen[name].append(e.data["n"])

            bus = bus_on(b)
            bus.subscribe(">", handler, group=group, batch_size=10)
            buses.append(bus)
        await buses[0].publish_many([event(key=f"k{i % 16}", n=i) for i in range(200)])
        async with buses[0], buses[1]:
            await wait_for(lambda: len(seen["one"]) + len(seen["two"]) >= 200, 20)
        # Closed, the buses have finished every handler they started: nothing more comes.
        everything = seen["one"] + seen["two"]
        assert sorted(everything) == list(range(200))  # each once
        assert seen["one"] and seen["two"]  # both worked
        await second.close()

    async def test_a_group_that_starts_latest_skips_older_events(
        self, backend: EventBackend
    ) -> None:
        old = event(n=1)
        await backend.publish([old])
        seen: list[str] = []
        bus = bus_on(backend)

        async def handler(e: CloudEvent) -> None:
            seen.append(e.id)

        bus.subscribe(">", handler, group=group_name(), start="latest")
        await bus.drain()
        new = event(n=2)
        await bus.publish(new)
        await bus.drain()
        assert seen == [new.id]

    async def test_published_events_carry_trace_context(self, backend: EventBackend) -> None:
        seen: list[CloudEvent] = []
        bus = bus_on(backend)

        async def handler(e: CloudEvent) -> None:
            seen.append(e)

        bus.subscribe(">", handler, group=group_name())
        published = await bus.publish(event())
        await bus.drain()
        assert published.traceparent is not None
        assert seen[0].traceparent == published.traceparent

    async def test_a_deleted_group_starts_over(self, backend: EventBackend) -> None:
        group = group_name()
        seen: list[str] = []
        bus = bus_on(backend)

        async def handler(e: CloudEvent) -> None:
            seen.append(e.id)

        bus.subscribe(">", handler, group=group, ephemeral=True)
        sent = await bus.publish(event())
        async with bus:
            await wait_for(lambda: sent.id in seen)
        # Closing the bus deleted the ephemeral group: made again, it starts from the start.
        spec = GroupSpec(group)
        await backend.ensure_group(spec)
        again: list[str] = []
        async with asyncio.timeout(10):
            while sent.id not in again:
                for batch in await backend.fetch(spec, "c", max_events=1000, wait=0.2):
                    again.extend(d.event.id for d in batch.deliveries if d.event)
                    await backend.settle(batch, Settlement(len(batch.deliveries)))
        await backend.delete_group(group)
        await backend.delete_group(group)  # deleting twice is fine

    @pytest.mark.parametrize("largest", list(EVENTS_AT_THE_LIMITS))
    async def test_an_event_at_the_limits_goes_through_unchanged(
        self, backend: EventBackend, largest: str
    ) -> None:
        """Any event that validates can be carried: here the largest of each attribute."""
        sent = EVENTS_AT_THE_LIMITS[largest](uuid.uuid4().int % 10**8)
        received: list[CloudEvent] = []
        bus = bus_on(backend)

        async def handler(e: CloudEvent) -> None:
            received.append(e)

        bus.subscribe(sent.type, handler, group=group_name())
        async with bus:
            await bus.publish(sent)
            await wait_for(lambda: bool(received), seconds=30)
        assert received == [sent]
        assert received[0].to_json() == sent.to_json()
        if largest == "everything at once":  # the largest event there can be
            assert len(sent.to_json()) > 800_000

    async def test_the_largest_event_with_a_huge_error_is_dead_lettered_and_replayed(
        self, backend: EventBackend
    ) -> None:
        """A dead letter keeps the whole event and a reason cut to MAX_REASON characters:
        however large the handler's error text, the letter fits every backend."""
        sent = EVENTS_AT_THE_LIMITS["everything at once"](uuid.uuid4().int % 10**8)
        broken = True
        handled: list[CloudEvent] = []
        bus = bus_on(backend)

        async def handler(e: CloudEvent) -> None:
            if broken:
                raise ValueError(WIDE * 1_000_000)
            handled.append(e)

        group = group_name()
        sub = bus.subscribe(sent.type, handler, group=group, max_deliveries=1)
        async with bus:
            await bus.publish(sent)
            await wait_for(lambda: sub.dead_lettered == 1, seconds=30)
            letters: list[DeadLetter] = []
            async with asyncio.timeout(30):
                while not letters:
                    letters = await bus.dead_letters(group=group)
                    await asyncio.sleep(0.02)
            [letter] = letters
            assert letter.event == sent
            assert len(letter.reason) <= MAX_REASON + len(" (gave up after 1 attempts)")
            broken = False
            await bus.replay(letter.id)
            await wait_for(lambda: bool(handled), seconds=30)
        assert handled == [sent]

    async def test_a_reader_sees_the_matching_events_in_log_order_from_where_it_starts(
        self, backend: EventBackend
    ) -> None:
        older = event("user.registered", n=0)
        await backend.publish([older])
        from_earliest = await backend.open_reader("user.*", start="earliest")
        from_latest = await backend.open_reader("user.*", start="latest")
        try:
            sent = [event("user.registered", key=f"k{n % 3}", n=n) for n in range(1, 7)]
            mixed = [e for n, wanted in enumerate(sent) for e in (event("order.x", n=n), wanted)]
            await backend.publish(mixed)
            self.assert_log_order(await read_ids(from_earliest, 7), [older, *sent])
            self.assert_log_order(await read_ids(from_latest, 6), sent)
        finally:
            await from_earliest.close()
            await from_latest.close()
        await from_earliest.close()  # closing twice is fine

    async def test_a_reader_takes_at_most_max_events_and_loses_none(
        self, backend: EventBackend
    ) -> None:
        reader = await backend.open_reader(">", start="latest")
        try:
            sent = [event(n=n) for n in range(7)]
            await backend.publish(sent)
            seen: list[str] = []
            async with asyncio.timeout(10):
                while len(seen) < len(sent):
                    got = await reader.read(3, wait=1.0)
                    assert len(got) <= 3
                    seen += [d.event.id for d in got if d.event]
            self.assert_log_order(seen, sent)
        finally:
            await reader.close()

    async def test_a_reader_skips_replays_meant_for_a_group(self, backend: EventBackend) -> None:
        reader = await backend.open_reader(">", start="latest")
        try:
            await backend.publish([event(n=1)], group="someone")
            last = event(n=2)
            await backend.publish([last])
            assert await read_ids(reader, 1) == [last.id]
            assert await reader.read(10, wait=0.2) == []
        finally:
            await reader.close()

    async def test_a_handler_and_a_reader_see_an_event_at_one_position_within_the_span(
        self, backend: EventBackend
    ) -> None:
        assert await backend.log_span() == LogSpan(None, None)
        sent = [event(n=n) for n in range(3)]
        await backend.publish(sent)
        reader = await backend.open_reader(">", start="earliest")
        try:
            read: dict[str, int] = {}
            async with asyncio.timeout(10):
                while len(read) < len(sent):
                    for d in await reader.read(10, wait=1.0):
                        assert d.event is not None
                        read[d.event.id] = d.position
        finally:
            await reader.close()
        handled: dict[str, int] = {}

        async def handler(e: CloudEvent) -> None:
            delivery = current_delivery()
            assert delivery is not None and delivery.event == e
            handled[e.id] = delivery.position

        bus = bus_on(backend)
        bus.subscribe(">", handler, group=group_name())
        await bus.drain()
        assert handled == read
        if self.ordered_log:
            assert sorted(read.values()) == [read[e.id] for e in sent]  # log order
        assert await backend.log_span() == LogSpan(min(read.values()), max(read.values()))
        assert current_delivery() is None


async def read_ids(reader: EventReader, count: int, seconds: float = 10.0) -> list[str]:
    """Read until ``count`` events came; their ids in the order read."""
    seen: list[str] = []
    async with asyncio.timeout(seconds):
        while len(seen) < count:
            seen += [d.event.id for d in await reader.read(100, wait=1.0) if d.event]
    return seen
