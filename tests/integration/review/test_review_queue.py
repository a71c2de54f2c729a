"""The review queue on every store (SQLite file and PostgreSQL): filing items, the actions
on them, their timeline, and status changes racing between processes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest

from hybridmesh.core.clock import FakeClock
from hybridmesh.core.errors import ConfigurationError, NotFoundError, StoreError, ValidationError
from hybridmesh.review import ReviewItem, ReviewQueue, ReviewStateError
from hybridmesh.store import Store, open_store

OpenQueue = Callable[..., Awaitable[ReviewQueue]]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def open_queue(database_url: str, clock: FakeClock) -> AsyncIterator[OpenQueue]:
    """Open a queue on its own store (its own connection, as another process would have)."""
    stores: list[Store] = []

    async def make(**options: Any) -> ReviewQueue:
        store = await open_store(database_url)
        await store.upgrade()
        stores.append(store)
        options.setdefault("clock", clock)
        return ReviewQueue(store, **options)

    yield make
    for store in stores:
        await store.close()


@pytest.fixture
async def queue(open_queue: OpenQueue) -> ReviewQueue:
    return await open_queue(actor="engine")


def actions(item: ReviewItem) -> list[tuple[str, str | None, str | None]]:
    return [(a.action, a.actor, a.note) for a in item.actions]


# -- filing and reading --------------------------------------------------------------------


async def test_add_files_an_open_item_with_a_created_action(
    queue: ReviewQueue, clock: FakeClock
) -> None:
    added = await queue.add(
        "saga", "refund failed after 5 attempts", {"order": 7, "amount": 12.5}, origin_ref="ex-1"
    )

    got = await queue.get(added.id)
    assert got == added
    assert (got.origin, got.origin_ref, got.status) == ("saga", "ex-1", "open")
    assert got.payload == {"order": 7, "amount": 12.5}
    assert got.created_at == got.updated_at == clock.now()
    assert actions(got) == [("created", "engine", None)]


async def test_list_is_newest_first_and_filters_by_status_and_origin(
    queue: ReviewQueue, clock: FakeClock
) -> None:
    first = await queue.add("saga", "one", {})
    clock.advance(1)
    second = await queue.add("dlq", "two", {}, origin_ref="dl-1")
    clock.advance(1)
    third = await queue.add("batch", "three", {})
    await queue.resolve(third.id)

    assert [i.id for i in await queue.list()] == [second.id, first.id]
    assert [i.id for i in await queue.list(status=None)] == [third.id, second.id, first.id]
    assert [i.id for i in await queue.list(status="resolved")] == [third.id]
    assert [i.id for i in await queue.list(origin="dlq")] == [second.id]
    assert [i.id for i in await queue.list(origin="dlq", origin_ref="dl-2")] == []
    assert [i.id for i in await queue.list(status=None, limit=1)] == [third.id]
    assert all(i.actions == () for i in await queue.list(status=None))


async def test_get_of_an_unknown_item_raises_not_found(queue: ReviewQueue) -> None:
    with pytest.raises(NotFoundError, match="no review item 'nope'"):
        await queue.get("nope")


@pytest.mark.parametrize(
    ("origin", "reason", "payload", "field"),
    [
        ("kafka", "x", {}, "origin"),
        ("saga", "  ", {}, "reason"),
        ("saga", "x", ["not", "a", "mapping"], "payload"),
        ("saga", "x", {"when": object()}, "payload"),
    ],
)
async def test_add_rejects_bad_input_naming_the_field(
    queue: ReviewQueue, origin: Any, reason: str, payload: Any, field: str
) -> None:
    with pytest.raises(ValidationError) as raised:
        await queue.add(origin, reason, payload)
    assert raised.value.problems[0].field == field
    assert await queue.list(status=None) == []


@pytest.mark.parametrize(("status", "origin", "limit"), [("closed", None, 5), (None, "x", 5)])
async def test_list_rejects_an_unknown_filter(
    queue: ReviewQueue, status: str | None, origin: str | None, limit: int
) -> None:
    with pytest.raises(ValidationError):
        await queue.list(status=status, origin=origin, limit=limit)


async def test_counts_every_status(queue: ReviewQueue) -> None:
    assert await queue.counts() == {"open": 0, "retried": 0, "resolved": 0, "discarded": 0}
    items = [await queue.add("workflow", f"step {n} failed", {}) for n in range(4)]
    await queue.resolve(items[0].id)
    await queue.discard(items[1].id)
    queue.register_retry("workflow", _succeed)
    await queue.retry(items[2].id)
    assert await queue.counts() == {"open": 1, "retried": 1, "resolved": 1, "discarded": 1}


async def _succeed(item: ReviewItem) -> None:
    return None


# -- in the caller's transaction ----------------------------------------------------------


async def test_an_add_in_a_transaction_that_rolls_back_leaves_nothing(
    queue: ReviewQueue,
) -> None:
    with pytest.raises(RuntimeError):
        async with queue.store.transaction() as tx:
            await queue.add("saga", "compensation failed", {"order": 1}, tx=tx)
            raise RuntimeError("the engine's own update failed")
    assert await queue.list(status=None) == []
    assert await queue.store.fetch_value("SELECT COUNT(*) FROM review_actions") == 0


async def test_an_add_in_a_transaction_commits_with_the_callers_change(
    queue: ReviewQueue,
) -> None:
    async with queue.store.transaction() as tx:
        await tx.execute(
            "INSERT INTO services (name, architecture, version, base_url, definition, "
            "updated_at) VALUES ('orders', 'microservice', '1', 'http://o', '{}', 'now')"
        )
        added = await queue.add("saga", "compensation failed", {"order": 1}, tx=tx)
    assert (await queue.get(added.id)).status == "open"
    assert await queue.store.fetch_value("SELECT COUNT(*) FROM services") == 1


# -- resolve and discard -------------------------------------------------------------------


@pytest.mark.parametrize(("action", "status"), [("resolve", "resolved"), ("discard", "discarded")])
async def test_resolve_and_discard_close_the_item_and_record_who_and_why(
    queue: ReviewQueue, clock: FakeClock, action: str, status: str
) -> None:
    added = await queue.add("batch", "ERP rejected the record", {"sku": "A-1"})
    clock.advance(60)

    closed = await getattr(queue, action)(added.id, actor="ana", note="fixed in the ERP")

    assert closed.status == status
    assert closed.updated_at == added.created_at + timedelta(seconds=60)
    assert actions(closed) == [
        ("created", "engine", None),
        (status, "ana", "fixed in the ERP"),
    ]
    assert closed.actions[-1].at == closed.updated_at


async def test_an_action_without_an_actor_records_the_queues_actor(queue: ReviewQueue) -> None:
    added = await queue.add("batch", "rejected", {})
    closed = await queue.discard(added.id)
    assert actions(closed)[-1] == ("discarded", "engine", None)


@pytest.mark.parametrize("first", ["resolve", "discard", "retry"])
@pytest.mark.parametrize("then", ["resolve", "discard", "retry"])
async def test_a_closed_item_cannot_be_acted_on_again(
    queue: ReviewQueue, first: str, then: str
) -> None:
    queue.register_retry("dlq", _succeed)
    added = await queue.add("dlq", "poison", {}, origin_ref="dl-1")
    done = await getattr(queue, first)(added.id)

    with pytest.raises(ReviewStateError) as raised:
        await getattr(queue, then)(added.id)

    assert raised.value.status == done.status
    assert f"is {done.status}; only open items can be" in str(raised.value)
    assert len((await queue.get(added.id)).actions) == 2


@pytest.mark.parametrize("action", ["resolve", "discard", "retry"])
async def test_acting_on_an_unknown_item_raises_not_found(queue: ReviewQueue, action: str) -> None:
    with pytest.raises(NotFoundError):
        await getattr(queue, action)("nope")


@pytest.mark.parametrize(("one", "other"), [("resolve", "resolve"), ("resolve", "discard")])
async def test_of_two_concurrent_closes_from_two_processes_exactly_one_wins(
    open_queue: OpenQueue, one: str, other: str
) -> None:
    first, second = await open_queue(actor="ana"), await open_queue(actor="bo")
    for _ in range(5):  # several rounds, so the interleaving varies
        item = await first.add("workflow", "step failed", {})
        results = await asyncio.gather(
            getattr(first, one)(item.id),
            getattr(second, other)(item.id),
            return_exceptions=True,
        )
        won = [r for r in results if isinstance(r, ReviewItem)]
        lost = [r for r in results if isinstance(r, ReviewStateError)]
        assert len(won) == 1 and len(lost) == 1, results
        timeline = (await first.get(item.id)).actions
        assert [a.action for a in timeline] == ["created", won[0].status]
        assert timeline[-1].actor == won[0].actions[-1].actor


# -- retry ---------------------------------------------------------------------------------


async def test_retry_runs_the_origins_handler_then_marks_the_item_retried(
    queue: ReviewQueue,
) -> None:
    seen: list[ReviewItem] = []

    async def rerun(item: ReviewItem) -> None:
        seen.append(item)

    queue.register_retry("saga", rerun)
    added = await queue.add("saga", "timed out", {"order": 3}, origin_ref="ex-3")

    retried = await queue.retry(added.id, actor="ana", note="partner is back")

    assert [(i.id, i.origin_ref, i.payload) for i in seen] == [(added.id, "ex-3", {"order": 3})]
    assert retried.status == "retried"
    assert actions(retried) == [("created", "engine", None), ("retried", "ana", "partner is back")]


async def test_a_failed_retry_keeps_the_item_open_records_the_error_and_raises(
    queue: ReviewQueue,
) -> None:
    calls = 0

    async def flaky(item: ReviewItem) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("payments is down")

    queue.register_retry("saga", flaky)
    added = await queue.add("saga", "timed out", {})

    with pytest.raises(ConnectionError, match="payments is down"):
        await queue.retry(added.id, actor="ana", note="first try")
    after_failure = await queue.get(added.id)
    assert after_failure.status == "open"
    assert actions(after_failure)[-1] == (
        "retry_failed",
        "ana",
        "first try (ConnectionError: payments is down)",
    )

    retried = await queue.retry(added.id, actor="bo")  # the failure released the item
    assert retried.status == "retried"
    assert [a.action for a in retried.actions] == ["created", "retry_failed", "retried"]


async def test_retry_without_a_handler_for_the_origin_raises_configuration_error(
    queue: ReviewQueue,
) -> None:
    queue.register_retry("dlq", _succeed)
    added = await queue.add("batch", "ERP rejected", {})
    with pytest.raises(ConfigurationError, match="no retry handler for origin 'batch'"):
        await queue.retry(added.id)
    assert actions(await queue.get(added.id)) == [("created", "engine", None)]


async def test_a_running_retry_holds_the_item_against_other_processes(
    open_queue: OpenQueue, clock: FakeClock
) -> None:
    first, second = await open_queue(actor="ana"), await open_queue(actor="bo")
    started, release = asyncio.Event(), asyncio.Event()
    calls: list[str] = []

    async def slow(item: ReviewItem) -> None:
        calls.append(item.id)
        started.set()
        await release.wait()

    first.register_retry("workflow", slow)
    second.register_retry("workflow", slow)
    added = await first.add("workflow", "step failed", {})

    running = asyncio.create_task(first.retry(added.id))
    await started.wait()
    for action in (second.retry, second.resolve, second.discard):
        with pytest.raises(ReviewStateError, match="is being retried"):
            await action(added.id)
    release.set()
    done = await running

    assert calls == [added.id]
    assert done.status == "retried"
    assert [(a.action, a.actor) for a in done.actions] == [("created", "ana"), ("retried", "ana")]


async def test_a_retry_that_outlives_its_lease_can_be_taken_over(
    open_queue: OpenQueue, clock: FakeClock
) -> None:
    first = await open_queue(actor="ana", retry_lease=30)
    second = await open_queue(actor="bo", retry_lease=30)
    hung, release = asyncio.Event(), asyncio.Event()

    async def hangs(item: ReviewItem) -> None:
        hung.set()
        await release.wait()

    first.register_retry("saga", hangs)
    second.register_retry("saga", _succeed)
    added = await first.add("saga", "timed out", {})
    stuck = asyncio.create_task(first.retry(added.id))
    await hung.wait()

    clock.advance(31)  # as if the first process had died mid-retry
    taken_over = await second.retry(added.id)
    assert taken_over.status == "retried"

    release.set()  # the first retry did run in the end: its timeline entry says so
    late = await stuck
    assert late.status == "retried"
    assert [(a.action, a.actor) for a in late.actions] == [
        ("created", "ana"),
        ("retried", "bo"),
        ("retried", "ana"),
    ]


async def test_a_cancelled_retry_gives_the_item_back_at_once(queue: ReviewQueue) -> None:
    started = asyncio.Event()

    async def forever(item: ReviewItem) -> None:
        started.set()
        await asyncio.Event().wait()

    queue.register_retry("dlq", forever)
    added = await queue.add("dlq", "poison", {}, origin_ref="dl-1")
    task = asyncio.create_task(queue.retry(added.id))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    resolved = await queue.resolve(added.id)
    assert [a.action for a in resolved.actions] == ["created", "resolved"]


async def test_a_timeline_holds_one_action_per_seq(queue: ReviewQueue) -> None:
    added = await queue.add("saga", "timed out", {})
    with pytest.raises(StoreError):
        await queue.store.execute(
            "INSERT INTO review_actions (item_id, seq, action, at) VALUES (?, 1, 'created', 0)",
            added.id,
        )  # (item, seq) is unique: an action can never be written twice in one place


async def test_the_queue_needs_a_positive_retry_lease(queue: ReviewQueue) -> None:
    with pytest.raises(ConfigurationError, match="retry_lease"):
        ReviewQueue(queue.store, retry_lease=0)
