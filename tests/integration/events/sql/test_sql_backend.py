"""What the SQL log does beyond the shared conformance suite: its dedupe, leases, retries,
dead letters, retention and wakeups, on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from tests.waiting import HANG, eventually

from hybridmesh.core.clock import SYSTEM_CLOCK, FakeClock
from hybridmesh.core.errors import (
    ConfigurationError,
    NotFoundError,
    StoreError,
    ValidationError,
)
from hybridmesh.events.backend import Delivery, GroupSpec, PartitionBatch, Settlement
from hybridmesh.events.backends import sql as sql_module
from hybridmesh.events.backends.sql import Retention, SqlEventBackend
from hybridmesh.events.envelope import CloudEvent

MakeSql = Callable[..., Awaitable[SqlEventBackend]]  # the make_sql fixture (conftest.py)


def ev(
    type_: str = "order.created",
    key: str | None = None,
    *,
    source: str = "/tests",
    id: str | None = None,
    n: int = 0,
) -> CloudEvent:
    return CloudEvent.create(type_, source, {"n": n}, id=id, partition_key=key)


async def take(
    backend: SqlEventBackend, spec: GroupSpec, consumer: str = "c", max_events: int = 100
) -> list[PartitionBatch]:
    return await backend.fetch(spec, consumer, max_events=max_events, wait=0)


def flat(batches: list[PartitionBatch]) -> list[Delivery]:
    return [d for batch in batches for d in batch.deliveries]


def ids(batches: list[PartitionBatch]) -> list[str]:
    return [d.event.id for d in flat(batches) if d.event is not None]


async def settle_all(backend: SqlEventBackend, batches: list[PartitionBatch]) -> None:
    for batch in batches:
        await backend.settle(batch, Settlement(len(batch.deliveries)))


async def consume_all(backend: SqlEventBackend, spec: GroupSpec) -> list[str]:
    """Fetch and acknowledge until nothing is left; the ids in delivery order."""
    seen: list[str] = []
    while batches := await take(backend, spec):
        seen += ids(batches)
        await settle_all(backend, batches)
    return seen


async def positions(backend: SqlEventBackend, group: str) -> dict[int, int]:
    rows = await backend.store.fetch_all(
        "SELECT partition, position FROM event_positions WHERE group_name = ?", group
    )
    return {row["partition"]: row["position"] for row in rows}


async def log_size(backend: SqlEventBackend) -> int:
    return int(await backend.store.fetch_value("SELECT COUNT(*) FROM event_log"))


async def until_log_size(backend: SqlEventBackend, expected: int) -> None:
    async def reached() -> bool:  # a trim task runs
        return await log_size(backend) == expected

    await eventually(reached, what=f"{expected} events in the log")


class Looks:
    """Counts a backend's looks for events (its leases), so a test knows when a fetch has
    looked and is waiting, and how many times it looked."""

    def __init__(self, backend: SqlEventBackend) -> None:
        self.count = 0
        lease = backend._lease

        async def counted(*args: Any) -> list[PartitionBatch]:
            found = await lease(*args)
            self.count += 1
            return found

        backend._lease = counted  # type: ignore[method-assign]

    async def waiting(self, count: int = 1) -> None:
        """Return once the fetch looked ``count`` times (and so waits, if it found nothing)."""
        await eventually(lambda: self.count >= count, what=f"{count} looks")


# -- publishing -----------------------------------------------------------------------------


async def test_events_are_delivered_in_publish_order_within_a_key(sql: SqlEventBackend) -> None:
    spec = GroupSpec("g")
    await sql.ensure_group(spec)
    sent = [ev(key="k", n=i) for i in range(5)]
    await sql.publish(sent[:2])
    await sql.publish(sent[2:])

    batches = await take(sql, spec)

    assert len(batches) == 1
    assert ids(batches) == [e.id for e in sent]
    assert [d.attempt for d in flat(batches)] == [1, 1, 1, 1, 1]
    assert flat(batches)[3].event == sent[3]


async def test_the_same_source_and_id_is_appended_once(sql: SqlEventBackend) -> None:
    spec = GroupSpec("g")
    await sql.ensure_group(spec)
    first = ev(id="evt-1")
    await sql.publish([first, ev(id="evt-1")])  # twice in one batch
    await sql.publish([ev(id="evt-1")])  # and again later
    other_source = ev(id="evt-1", source="/elsewhere")
    await sql.publish([other_source])

    assert sorted(await consume_all(sql, spec)) == ["evt-1", "evt-1"]
    assert await log_size(sql) == 2


async def test_concurrent_publishes_keep_each_calls_order(sql: SqlEventBackend) -> None:
    spec = GroupSpec("g")
    await sql.ensure_group(spec)
    calls = [[ev(key=f"k{c}", n=i) for i in range(5)] for c in range(20)]
    duplicate = ev(id="twice")

    await asyncio.gather(
        *(sql.publish(events) for events in calls),
        sql.publish([duplicate]),
        sql.publish([duplicate]),
    )

    seen = await consume_all(sql, spec)
    for events in calls:
        mine = [i for i in seen if i in {e.id for e in events}]
        assert mine == [e.id for e in events]
    assert seen.count("twice") == 1
    assert len(seen) == 101


async def test_a_failed_write_raises_to_every_publisher_waiting_on_it(
    sql: SqlEventBackend,
) -> None:
    await sql.store.close()
    results = await asyncio.gather(sql.publish([ev()]), sql.publish([ev()]), return_exceptions=True)
    assert [type(r) for r in results] == [StoreError, StoreError]


async def test_publish_validates_before_appending_anything(sql: SqlEventBackend) -> None:
    broken = CloudEvent(type="order.created", source="", id="x")
    with pytest.raises(ValidationError):
        await sql.publish([ev(), broken])
    assert await log_size(sql) == 0


async def test_every_group_receives_every_event(sql: SqlEventBackend) -> None:
    one, two = GroupSpec("one"), GroupSpec("two")
    await sql.ensure_group(one)
    await sql.ensure_group(two)
    sent = [ev(key=f"k{i % 5}", n=i) for i in range(40)]
    await sql.publish(sent)

    expected = sorted(e.id for e in sent)
    assert sorted(await consume_all(sql, one)) == expected
    assert sorted(await consume_all(sql, two)) == expected


async def test_a_pattern_skips_other_types_and_moves_past_them(sql: SqlEventBackend) -> None:
    orders, billing = GroupSpec("orders", "order.*"), GroupSpec("billing", "billing.>")
    await sql.ensure_group(orders)
    await sql.ensure_group(billing)
    wanted = [ev("order.created", key="k", n=1), ev("order.paid", key="k", n=2)]
    await sql.publish([ev("user.registered", key="k"), wanted[0], ev("order.item.added", key="k")])
    await sql.publish([wanted[1], ev("user.deleted", key="k")])

    assert await consume_all(sql, orders) == [e.id for e in wanted]
    assert await take(sql, billing) == []
    # billing wants none of it: its positions moved past everything, so nothing is pending
    assert max((await positions(sql, "billing")).values()) == max(
        (await positions(sql, "orders")).values()
    )
    assert (
        await sql.store.fetch_value(
            "SELECT COUNT(*) FROM event_positions WHERE lease_token IS NOT NULL"
        )
        == 0
    )


async def test_fetch_takes_at_most_max_events_across_partitions(sql: SqlEventBackend) -> None:
    spec = GroupSpec("g")
    await sql.ensure_group(spec)
    await sql.publish([ev(key=f"k{i % 8}", n=i) for i in range(50)])

    seen: list[str] = []
    while batches := await take(sql, spec, max_events=7):
        assert 0 < len(flat(batches)) <= 7
        seen += ids(batches)
        await settle_all(sql, batches)

    assert len(seen) == len(set(seen)) == 50


async def test_a_group_that_starts_latest_skips_older_events(sql: SqlEventBackend) -> None:
    await sql.publish([ev(n=1), ev(n=2)])
    spec = GroupSpec("late", start="latest")
    await sql.ensure_group(spec)
    new = ev(n=3)
    await sql.publish([new])
    assert await consume_all(sql, spec) == [new.id]


async def test_fetch_from_an_unknown_group_raises_not_found(sql: SqlEventBackend) -> None:
    with pytest.raises(NotFoundError, match="nobody"):
        await take(sql, GroupSpec("nobody"))


async def test_every_process_must_use_the_same_number_of_partitions(make_sql: MakeSql) -> None:
    eight = await make_sql(partitions=8)
    await eight.ensure_group(GroupSpec("g"))
    four = await make_sql(partitions=4)
    with pytest.raises(ConfigurationError, match="partitions"):
        await four.ensure_group(GroupSpec("g"))


# -- several consumers ----------------------------------------------------------------------


async def test_two_backends_in_one_group_share_the_partitions_and_handle_each_event_once(
    make_sql: MakeSql,
) -> None:
    one, two = await make_sql(clock=SYSTEM_CLOCK), await make_sql(clock=SYSTEM_CLOCK)
    spec = GroupSpec("shared")
    await one.ensure_group(spec)
    await two.ensure_group(spec)
    sent = [ev(key=f"k{i % 16}", n=i) for i in range(300)]
    await one.publish(sent)
    handled: Counter[str] = Counter()
    by: dict[str, int] = {"one": 0, "two": 0}

    async def work(name: str, backend: SqlEventBackend) -> None:
        while sum(handled.values()) < len(sent):
            batches = await backend.fetch(spec, name, max_events=20, wait=0.05)
            for batch in batches:
                await asyncio.sleep(0.001)  # handling takes a moment
                handled.update(ids([batch]))
                by[name] += len(batch.deliveries)
                await backend.settle(batch, Settlement(len(batch.deliveries)))

    async with asyncio.timeout(30):
        await asyncio.gather(work("one", one), work("two", two))

    assert set(handled) == {e.id for e in sent}
    assert set(handled.values()) == {1}
    assert by["one"] and by["two"]


async def test_concurrent_fetches_never_lease_the_same_partition(make_sql: MakeSql) -> None:
    one, two = await make_sql(), await make_sql()
    spec = GroupSpec("g")
    await one.ensure_group(spec)
    await one.publish([ev(key=f"k{i}", n=i) for i in range(64)])

    first, second = await asyncio.gather(
        one.fetch(spec, "one", max_events=20, wait=0), two.fetch(spec, "two", max_events=20, wait=0)
    )

    assert not {b.partition for b in first} & {b.partition for b in second}
    assert not set(ids(first)) & set(ids(second))


async def test_publishes_racing_a_reader_lose_nothing(make_sql: MakeSql) -> None:
    # On PostgreSQL, sequence numbers are taken before commit: without the publish lock a
    # reader could pass a seq whose transaction commits a moment later, and skip it for good.
    publishers = [await make_sql(clock=SYSTEM_CLOCK) for _ in range(4)]
    reader = await make_sql(clock=SYSTEM_CLOCK)
    spec = GroupSpec("g")
    await reader.ensure_group(spec)
    sent: list[str] = []
    seen: Counter[str] = Counter()
    done = asyncio.Event()

    async def publish(backend: SqlEventBackend, index: int) -> None:
        for round_ in range(25):
            events = [ev(key=f"k{i % 3}", n=i) for i in range(8)]
            sent.extend(e.id for e in events)
            await backend.publish(events)
            if round_ % 5 == index:
                await asyncio.sleep(0.001)

    async def read() -> None:
        while not (done.is_set() and len(seen) == len(sent)):
            batches = await reader.fetch(spec, "reader", max_events=50, wait=0.05)
            seen.update(ids(batches))
            await settle_all(reader, batches)

    async with asyncio.timeout(30):
        reading = asyncio.create_task(read())
        await asyncio.gather(*(publish(b, i) for i, b in enumerate(publishers)))
        done.set()
        await reading

    assert set(seen) == set(sent) and set(seen.values()) == {1}


# -- leases, retries, releases --------------------------------------------------------------


async def test_an_unsettled_batch_is_delivered_again_after_ack_wait_with_attempt_plus_one(
    sql: SqlEventBackend, clock: FakeClock
) -> None:
    spec = GroupSpec("g", ack_wait=30)
    await sql.ensure_group(spec)
    sent = [ev(key="k", n=i) for i in range(3)]
    await sql.publish(sent)
    first = await take(sql, spec, "dies")
    assert [d.attempt for d in flat(first)] == [1, 1, 1]

    clock.advance(29)
    assert await take(sql, spec, "lives") == []  # still leased
    clock.advance(2)
    again = await take(sql, spec, "lives")
    assert ids(again) == [e.id for e in sent]
    assert [d.attempt for d in flat(again)] == [2, 1, 1]

    clock.advance(31)  # it dies too
    third = await take(sql, spec, "third")
    assert [d.attempt for d in flat(third)] == [3, 1, 1]
    await settle_all(sql, third)
    assert await take(sql, spec) == []


async def test_a_settle_after_the_lease_was_taken_over_changes_nothing(
    make_sql: MakeSql, clock: FakeClock
) -> None:
    slow, fast = await make_sql(), await make_sql()
    spec = GroupSpec("g", ack_wait=10)
    await slow.ensure_group(spec)
    sent = [ev(key="k", n=i) for i in range(2)]
    await slow.publish(sent)
    stale = await take(slow, spec, "slow")
    before = await positions(slow, "g")

    clock.advance(11)
    taken = await take(fast, spec, "fast")
    assert ids(taken) == ids(stale)
    await slow.settle(stale[0], Settlement(2))  # too late: the lease is fast's now

    assert await positions(slow, "g") == before
    assert await take(slow, spec, "slow") == []  # fast still holds it
    await fast.settle(taken[0], Settlement(0, retry_after=0))  # and fast's settle counts
    again = await take(slow, spec, "slow")
    assert ids(again) == [e.id for e in sent]
    assert [d.attempt for d in flat(again)] == [3, 1]


async def test_the_same_consumer_cannot_settle_a_lease_it_lost_to_itself(
    sql: SqlEventBackend, clock: FakeClock
) -> None:
    spec = GroupSpec("g", ack_wait=5)
    await sql.ensure_group(spec)
    await sql.publish([ev(key="k")])
    old = await take(sql, spec, "c")
    clock.advance(6)
    new = await take(sql, spec, "c")  # the same name, a new lease
    await sql.settle(old[0], Settlement(1))
    assert await take(sql, spec, "other") == []
    clock.advance(6)
    assert [d.attempt for d in flat(await take(sql, spec, "other"))] == [3]
    assert new


async def test_a_fetch_that_fails_after_leasing_gives_the_partitions_back(
    make_sql: MakeSql, monkeypatch: pytest.MonkeyPatch
) -> None:
    failing, healthy = await make_sql(), await make_sql()
    spec = GroupSpec("g", ack_wait=300)
    await failing.ensure_group(spec)
    await failing.publish([ev(key="k")])

    async def broken_read(*args: Any) -> list[dict[str, Any]]:
        raise asyncio.CancelledError

    monkeypatch.setattr(failing, "_read", broken_read)
    with pytest.raises(asyncio.CancelledError):
        await take(failing, spec)

    again = await take(healthy, spec)  # at once, not after ack_wait
    assert [d.attempt for d in flat(again)] == [1]


async def test_a_retry_holds_back_later_events_with_the_same_key(
    sql: SqlEventBackend, clock: FakeClock
) -> None:
    spec = GroupSpec("g")
    await sql.ensure_group(spec)
    sent = [ev(key="k", n=i) for i in range(3)]
    await sql.publish(sent)
    batches = await take(sql, spec)

    await sql.settle(batches[0], Settlement(1, retry_after=10))

    assert await take(sql, spec) == []
    clock.advance(9)
    assert await take(sql, spec) == []
    clock.advance(1)
    again = await take(sql, spec)
    assert ids(again) == [e.id for e in sent[1:]]
    assert [d.attempt for d in flat(again)] == [2, 1]

    await sql.settle(again[0], Settlement(0, retry_after=5))
    clock.advance(5)
    assert [d.attempt for d in flat(await take(sql, spec))] == [3, 1]


async def test_deliveries_after_the_handled_ones_come_again_untouched(
    sql: SqlEventBackend, clock: FakeClock
) -> None:
    spec = GroupSpec("g")
    await sql.ensure_group(spec)
    sent = [ev(key="k", n=i) for i in range(4)]
    await sql.publish(sent)
    first = await take(sql, spec)

    await sql.settle(first[0], Settlement(2))

    again = await take(sql, spec)
    assert ids(again) == [e.id for e in sent[2:]]
    assert [d.attempt for d in flat(again)] == [1, 1]


# -- dead letters ---------------------------------------------------------------------------


async def test_a_dead_letter_is_kept_moved_past_and_replayed_to_its_group_only(
    sql: SqlEventBackend, clock: FakeClock
) -> None:
    mine, other = GroupSpec("mine"), GroupSpec("other")
    await sql.ensure_group(mine)
    await sql.ensure_group(other)
    poison, after = ev(key="k", n=1), ev(key="k", n=2)
    await sql.publish([poison, after])
    assert sorted(await consume_all(sql, other)) == sorted([poison.id, after.id])

    batches = await take(sql, mine)
    await sql.settle(batches[0], Settlement(0, retry_after=1))
    clock.advance(1)
    batches = await take(sql, mine)
    await sql.settle(batches[0], Settlement(0, dead_letter="price is negative"))

    assert await consume_all(sql, mine) == [after.id]
    [letter] = await sql.dead_letters(group="mine")
    assert letter.reason == "price is negative"
    assert letter.attempts == 2
    assert letter.event == poison
    assert CloudEvent.from_json(letter.body) == poison
    assert letter.failed_at == clock.now()
    assert letter.replayed_at is None
    assert await sql.get_dead_letter(letter.id) == letter

    clock.advance(3)
    replayed = await sql.replay(letter.id)

    assert replayed.replayed_at == clock.now()
    assert (await sql.get_dead_letter(letter.id)).replayed_at == clock.now()
    again = await take(sql, mine)
    assert ids(again) == [poison.id]  # the dedupe did not stop it
    assert [d.attempt for d in flat(again)] == [1]
    await settle_all(sql, again)
    assert await take(sql, other) == []  # replays reach their own group only


async def test_dead_letters_are_listed_newest_first_by_group_and_purged(
    sql: SqlEventBackend, clock: FakeClock
) -> None:
    for group in ("a", "b"):
        await sql.ensure_group(GroupSpec(group))
    await sql.publish([ev(key=f"k{i}", n=i) for i in range(3)])
    for group, reason in (("a", "first"), ("b", "second"), ("a", "third")):
        spec = GroupSpec(group)
        batch = (await take(sql, spec, max_events=1))[0]
        await sql.settle(batch, Settlement(0, dead_letter=reason))
        clock.advance(1)

    assert [d.reason for d in await sql.dead_letters()] == ["third", "second", "first"]
    assert [d.reason for d in await sql.dead_letters(group="a")] == ["third", "first"]
    assert [d.reason for d in await sql.dead_letters(limit=1)] == ["third"]
    assert await sql.purge(group="a") == 2
    assert await sql.purge() == 1
    assert await sql.dead_letters() == []


async def test_unknown_dead_letters_raise_not_found(sql: SqlEventBackend) -> None:
    with pytest.raises(NotFoundError):
        await sql.get_dead_letter("nope")
    with pytest.raises(NotFoundError):
        await sql.replay("nope")


async def test_a_stored_body_that_does_not_parse_is_delivered_with_its_error(
    sql: SqlEventBackend, clock: FakeClock
) -> None:
    spec = GroupSpec("g")
    await sql.ensure_group(spec)
    await sql.store.execute(
        "INSERT INTO event_log (event_id, source, type, partition, body, published_at) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        "bad-1",
        "/tests",
        "order.created",
        0,
        '{"specversion": "1.0", "id": "bad-1"',
        0.0,
    )

    [batch] = await take(sql, spec)
    [delivery] = batch.deliveries
    assert delivery.event is None
    assert delivery.error and "JSON" in delivery.error
    assert delivery.raw == b'{"specversion": "1.0", "id": "bad-1"'

    await sql.settle(batch, Settlement(0, dead_letter=f"malformed event: {delivery.error}"))
    [letter] = await sql.dead_letters()
    assert letter.event is None and letter.body == delivery.raw
    with pytest.raises(ValidationError):
        await sql.replay(letter.id)
    assert await take(sql, spec) == []


# -- retention ------------------------------------------------------------------------------


async def test_retention_trims_events_older_than_max_age(
    make_sql: MakeSql, clock: FakeClock
) -> None:
    sql = await make_sql(retention=Retention(max_age=60))
    spec = GroupSpec("g")
    await sql.ensure_group(spec)
    await sql.publish([ev(n=i) for i in range(3)])
    clock.advance(61)
    young = [ev(n=i) for i in range(3, 5)]
    await sql.publish(young)

    assert await sql.trim() == 3
    assert await sql.trim() == 0
    assert sorted(await consume_all(sql, spec)) == sorted(e.id for e in young)


async def test_retention_keeps_only_the_newest_max_events(make_sql: MakeSql) -> None:
    sql = await make_sql(retention=Retention(max_events=4))
    spec = GroupSpec("g")
    await sql.ensure_group(spec)
    sent = [ev(key="k", n=i) for i in range(10)]
    for event in sent:
        await sql.publish([event])

    assert await sql.trim() == 6
    assert await consume_all(sql, spec) == [e.id for e in sent[6:]]


async def test_sequence_numbers_never_go_back_even_when_the_log_was_emptied(
    make_sql: MakeSql, clock: FakeClock
) -> None:
    sql = await make_sql(retention=Retention(max_age=10))
    spec = GroupSpec("g")
    await sql.ensure_group(spec)
    await sql.publish([ev(key="k", n=i) for i in range(5)])
    assert len(await consume_all(sql, spec)) == 5
    clock.advance(11)
    assert await sql.trim() == 5

    later = ev(key="k", n=5)
    await sql.publish([later])
    assert await consume_all(sql, spec) == [later.id]


async def test_fetch_trims_in_the_background_at_most_once_a_minute(
    make_sql: MakeSql, clock: FakeClock
) -> None:
    sql = await make_sql(retention=Retention(max_events=1))
    spec = GroupSpec("g")
    await sql.ensure_group(spec)
    await sql.publish([ev(n=1)])
    await sql.publish([ev(n=2)])

    await take(sql, spec)
    await until_log_size(sql, 1)
    first_trim = sql._trim_task
    await sql.publish([ev(n=3)])
    await take(sql, spec)
    assert sql._trim_task is first_trim  # not yet a minute: no trim started
    assert await log_size(sql) == 2
    clock.advance(61)
    await take(sql, spec)
    await until_log_size(sql, 1)


# -- waking waiting fetches -----------------------------------------------------------------


async def test_a_publish_wakes_a_fetch_waiting_in_the_same_process(make_sql: MakeSql) -> None:
    sql = await make_sql(clock=SYSTEM_CLOCK, poll_interval=30)
    spec = GroupSpec("g")
    await sql.ensure_group(spec)
    looks = Looks(sql)
    waiting = asyncio.create_task(sql.fetch(spec, "c", max_events=10, wait=20))
    await looks.waiting()
    await sql.publish([ev()])
    batches = await waiting  # unwoken, it would find nothing until its wait ran out
    assert len(flat(batches)) == 1
    assert looks.count == 2  # the look that found nothing, and the one the publish woke


async def fetch_from_another_process(
    make_sql: MakeSql, sql: SqlEventBackend, spec: GroupSpec
) -> tuple[SqlEventBackend, asyncio.Task[list[PartitionBatch]], SqlEventBackend, Looks]:
    """A publisher, and a fetch of ``spec`` waiting in another backend on the same
    database (as another process would). PostgreSQL wakes the fetch by NOTIFY, so the
    poll is set far beyond the test; SQLite has no notifications between processes, so
    there it is the poll that sees the new rows. Returns once the fetch is waiting, with the
    consuming backend and its :class:`Looks`."""
    poll = 30.0 if sql.store.dialect == "postgresql" else 0.1
    consumer = await make_sql(clock=SYSTEM_CLOCK, poll_interval=poll)
    publisher = await make_sql(clock=SYSTEM_CLOCK)
    await consumer.ensure_group(spec)
    looks = Looks(consumer)
    waiting = asyncio.create_task(consumer.fetch(spec, "c", max_events=10, wait=20))
    await looks.waiting()  # after LISTEN: the fetch listens before its first look
    return publisher, waiting, consumer, looks


async def test_a_publish_from_another_process_wakes_a_waiting_fetch(
    make_sql: MakeSql, sql: SqlEventBackend
) -> None:
    publisher, waiting, _, looks = await fetch_from_another_process(make_sql, sql, GroupSpec("g"))
    await publisher.publish([ev()])
    batches = await waiting
    assert len(flat(batches)) == 1
    if sql.store.dialect == "postgresql":
        assert looks.count == 2  # woken by the NOTIFY, not by its 30 s poll


async def test_a_publish_from_another_process_wakes_only_fetches_taking_its_types(
    make_sql: MakeSql, sql: SqlEventBackend
) -> None:
    # The NOTIFY names the types published: a fetch for orders is woken by an order, and
    # takes it at once, even right after a publish of other types woke no one.
    spec = GroupSpec("orders", pattern="order.*")
    publisher, waiting, consumer, looks = await fetch_from_another_process(make_sql, sql, spec)
    notified: list[bool] = []  # on PostgreSQL, whether each NOTIFY woke the consumer
    listener = consumer._listener
    if listener is not None:
        wants = listener._wanted
        assert wants is not None

        def seen(payload: str) -> bool:
            notified.append(wants(payload))
            return notified[-1]

        listener._wanted = seen
    await publisher.publish([ev("user.created"), ev("invoice.paid")])
    if listener is not None:
        await eventually(lambda: bool(notified), what="the first NOTIFY")
        assert notified == [False] and looks.count == 1  # no one was woken
    assert not waiting.done()
    await publisher.publish([ev("user.deleted"), ev("order.created", n=7)])
    batches = await waiting
    assert [d.event.data for d in flat(batches)] == [{"n": 7}]
    if listener is not None:
        assert notified == [False, True]
        assert looks.count == 2  # woken by the order's NOTIFY, not by its 30 s poll


async def test_a_fetch_that_keeps_finding_nothing_looks_less_and_less_often(
    make_sql: MakeSql, monkeypatch: pytest.MonkeyPatch
) -> None:
    sql = await make_sql(clock=SYSTEM_CLOCK, poll_interval=0.02, idle_poll_interval=0.2)
    spec = GroupSpec("g")
    await sql.ensure_group(spec)
    pauses: list[float] = []  # how long each wait between two looks may last
    woken: list[bool] = []  # whether each ended by a wake-up
    wait_for = sql_module.wait_for

    async def recorded(waiter: asyncio.Event, seconds: float) -> None:
        pauses.append(seconds)
        await wait_for(waiter, seconds)
        woken.append(waiter.is_set())

    monkeypatch.setattr(sql_module, "wait_for", recorded)
    assert await sql.fetch(spec, "c", max_events=10, wait=3) == []
    # Each look that finds nothing doubles the pause, up to the idle interval (the last
    # pause is cut short by the end of the wait).
    doubling = [min(0.02 * 2**i, 0.2) for i in range(len(pauses))]
    assert len(pauses) >= 2 and pauses[:-1] == pytest.approx(doubling[:-1])
    assert pauses[-1] <= doubling[-1] and not any(woken)
    # However long the fetch has been idle, a publish wakes it at once.
    sql.idle_poll_interval = sql._idle[spec.name] = 60.0  # as after a long idle spell
    pauses.clear()
    waiting = asyncio.create_task(sql.fetch(spec, "c", max_events=10, wait=30))
    await eventually(lambda: bool(pauses), what="the fetch waiting")
    await sql.publish([ev()])
    assert len(flat(await waiting)) == 1
    assert len(pauses) == 1 and woken[-1]  # its one wait was ended by the publish


async def test_a_retry_falling_due_wakes_a_waiting_fetch(make_sql: MakeSql) -> None:
    sql = await make_sql(clock=SYSTEM_CLOCK, poll_interval=30)
    spec = GroupSpec("g")
    await sql.ensure_group(spec)
    await sql.publish([ev()])
    batches = await take(sql, spec)
    looks = Looks(sql)
    await sql.settle(batches[0], Settlement(0, retry_after=2))
    again = await sql.fetch(spec, "c", max_events=10, wait=20)
    assert [d.attempt for d in flat(again)] == [2]
    # The first look found nothing (not yet due); the retry's own wake-up, not the 30 s
    # poll, made it look again.
    assert looks.count == 2


async def test_close_ends_a_waiting_fetch(make_sql: MakeSql) -> None:
    sql = await make_sql(clock=SYSTEM_CLOCK, poll_interval=600)
    spec = GroupSpec("g")
    await sql.ensure_group(spec)
    looks = Looks(sql)
    waiting = asyncio.create_task(sql.fetch(spec, "c", max_events=10, wait=600))
    await looks.waiting()
    await sql.close()
    assert await asyncio.wait_for(waiting, HANG) == []  # long before its 10 minutes are up
