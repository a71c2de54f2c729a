"""Read-model projections on the SQL log, on SQLite and on PostgreSQL: each event applied
once with its checkpoint, failures rolled back and retried, rebuilds from the log, and the
refusal to rebuild over events the log's retention removed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.waiting import eventually

from hybridmesh.core.clock import FakeClock
from hybridmesh.core.errors import ConfigurationError
from hybridmesh.data.projections import (
    Projection,
    ProjectionError,
    ProjectionGapError,
    RebuildProgress,
    list_projections,
)
from hybridmesh.events import CloudEvent, EventBus
from hybridmesh.events.backends.sql import Retention, SqlEventBackend
from hybridmesh.events.bus import Subscription
from hybridmesh.store import Store, open_store

from .order_totals import (
    FAILING,
    PATTERN,
    add_order,
    cancelled,
    create_table,
    empty_table,
    order_totals,
    placed,
    totals,
)


@dataclass
class Live:
    """A projection consuming from the SQL log kept in its own store."""

    store: Store
    backend: SqlEventBackend
    bus: EventBus
    projection: Projection
    sub: Subscription
    clock: FakeClock


@pytest.fixture
async def live(store: Store) -> AsyncIterator[Live]:
    FAILING.clear()
    clock = FakeClock()  # leases and retries fall due when the test says
    backend = SqlEventBackend(store, clock=clock)
    bus = EventBus(backend, owns_backend=False, poll_wait=0.05)
    await order_totals.open(store)
    sub = order_totals.attach(bus)
    try:
        yield Live(store, backend, bus, order_totals, sub, clock)
    finally:
        await order_totals.close()
        await bus.close()
        await backend.close()
        FAILING.clear()


async def seqs(store: Store) -> dict[str, int]:
    """Each event's position in the SQL log, by event id."""
    rows = await store.fetch_all("SELECT seq, event_id FROM event_log")
    return {row["event_id"]: int(row["seq"]) for row in rows}


async def receipts(store: Store) -> set[str]:
    rows = await store.fetch_all(
        "SELECT event_id FROM projection_receipts WHERE projection = ?", "order-totals"
    )
    return {row["event_id"] for row in rows}


async def test_events_are_applied_into_the_table_with_their_checkpoint(live: Live) -> None:
    orders = [placed("O-1", "ada", 30), placed("O-2", "ada", 12), placed("O-3", "bob", 5)]
    other = CloudEvent.create("invoices.sent", "/billing", {"invoice": "I-1"})
    await live.bus.publish_many([*orders, other])
    await live.bus.drain()

    assert await totals(live.store) == {"ada": (2, 42), "bob": (1, 5)}
    assert await receipts(live.store) == {e.id for e in orders}
    info = await live.projection.info()
    positions = await seqs(live.store)
    assert info.checkpoint == max(positions[e.id] for e in orders)  # not the invoice's
    assert info.events_applied == 3
    assert info.status == "running"
    assert info.last_event_at in {e.time for e in orders}
    assert info.pattern == PATTERN and info.group == "projection-order-totals"
    assert info.target == live.store.display_url
    assert info.import_path == "tests.integration.data.order_totals:order_totals"
    assert [p.name for p in await list_projections(live.store)] == ["order-totals"]


async def test_an_event_delivered_again_is_applied_once(
    live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    await live.bus.publish(placed("O-1", "ada", 30))

    async def die(*_: object) -> None:
        raise ConnectionError("the consumer died before acknowledging")

    # The event is applied and committed, but never acknowledged: the lease runs out and
    # the log delivers it again.
    monkeypatch.setattr(live.backend, "settle", die)
    with pytest.raises(ConnectionError):
        await live.bus.drain()
    monkeypatch.undo()
    live.clock.advance(60)
    await live.bus.drain()

    assert live.sub.handled == 2  # delivered twice
    assert await totals(live.store) == {"ada": (1, 30)}  # applied once
    info = await live.projection.info()
    assert info.events_applied == 1


async def test_a_failing_apply_keeps_nothing_of_its_event_and_the_event_is_tried_again(
    live: Live,
) -> None:
    first, failing = placed("O-1", "ada", 30), placed("O-2", "bob", 7)
    FAILING.add("O-2")  # it writes bob's row, then raises
    await live.bus.publish_many([first, failing])
    await live.bus.drain()

    assert await totals(live.store) == {"ada": (1, 30)}
    assert await receipts(live.store) == {first.id}
    info = await live.projection.info()
    assert info.events_applied == 1
    assert info.checkpoint == (await seqs(live.store))[first.id]
    assert info.status == "failing"
    assert info.last_error == "RuntimeError: order O-2 cannot be applied"
    assert live.sub.retried == 1 and live.sub.dead_lettered == 0

    FAILING.clear()
    live.clock.advance(120)  # the retry falls due
    await live.bus.drain()
    assert await totals(live.store) == {"ada": (1, 30), "bob": (1, 7)}
    info = await live.projection.info()
    assert (info.events_applied, info.status, info.last_error) == (2, "running", None)
    assert info.checkpoint == (await seqs(live.store))[failing.id]


async def test_a_rebuild_reproduces_the_table(live: Live) -> None:
    events = [
        placed("O-1", "ada", 30),
        placed("O-2", "bob", 5),
        placed("O-3", "ada", 12),
        cancelled("O-1", "ada", 30),
        placed("O-4", "cy", 9),
    ]
    await live.bus.publish_many(events)
    await live.bus.drain()
    built = await totals(live.store)
    before = await live.projection.info()
    await live.store.execute("UPDATE order_totals SET total = 0")  # the table went wrong
    await live.store.execute("DELETE FROM order_totals WHERE customer = 'bob'")

    seen: list[RebuildProgress] = []
    result = await live.projection.rebuild(live.bus, progress=seen.append, batch_size=2)

    assert await totals(live.store) == built == {"ada": (1, 12), "bob": (1, 5), "cy": (1, 9)}
    assert (result.applied, result.skipped, result.lost, result.partial) == (5, 0, None, False)
    assert result.checkpoint == before.checkpoint
    assert [p.applied for p in seen] == [0, 2, 4, 5]  # a start, then three batches
    assert seen[-1].position == seen[-1].last == before.checkpoint
    info = await live.projection.info()
    assert (info.events_applied, info.checkpoint, info.status) == (5, before.checkpoint, "running")
    assert info.rebuilt_at == result.rebuilt_at


async def test_events_a_rebuild_applied_are_not_applied_again_by_the_consumers(
    live: Live,
) -> None:
    await live.bus.publish_many([placed("O-1", "ada", 30), placed("O-2", "bob", 5)])
    await live.bus.drain()
    later = [placed("O-3", "ada", 12), placed("O-4", "bob", 1)]
    await live.bus.publish_many(later)  # not consumed yet when the rebuild reads them

    result = await live.projection.rebuild(live.bus)
    assert result.applied == 4
    await live.bus.drain()  # the consumers now get the two later ones: applied already

    assert live.sub.handled == 4
    assert await totals(live.store) == {"ada": (2, 42), "bob": (2, 6)}
    assert (await live.projection.info()).events_applied == 4


async def test_consumers_wait_while_a_rebuild_is_unfinished_and_resume_after(
    live: Live,
) -> None:
    await live.bus.publish_many([placed("O-1", "ada", 30), placed("O-2", "bob", 5)])
    await live.bus.drain()
    FAILING.add("O-2")
    with pytest.raises(ProjectionError, match="failed during the rebuild") as failed:
        await live.projection.rebuild(live.bus)
    assert "order O-2 cannot be applied" in str(failed.value)
    info = await live.projection.info()
    assert info.status == "rebuild-failed"
    assert info.last_error is not None and "rebuild again" in info.last_error

    late = placed("O-3", "ada", 1)
    await live.bus.publish(late)
    await live.bus.drain()
    assert live.sub.retried == 1  # it waits for a rebuild that succeeds
    assert late.id not in await receipts(live.store)

    FAILING.clear()
    result = await live.projection.rebuild(live.bus)
    assert result.applied == 3
    live.clock.advance(60)
    await live.bus.drain()
    assert await totals(live.store) == {"ada": (2, 31), "bob": (1, 5)}
    assert (await live.projection.info()).events_applied == 3


async def test_an_event_a_waiting_consumer_gave_up_on_is_applied_by_the_rebuild_once(
    live: Live,
) -> None:
    await live.bus.publish(placed("O-1", "ada", 30))
    await live.bus.drain()
    FAILING.add("O-1")
    with pytest.raises(ProjectionError):
        await live.projection.rebuild(live.bus)
    late = placed("O-2", "bob", 5)
    await live.bus.publish(late)
    while not live.sub.dead_lettered:  # each try waits for the rebuild, then gives up
        await live.bus.drain()
        live.clock.advance(10)
    [letter] = await live.bus.dead_letters(group=order_totals.group)
    assert letter.event_id == late.id and "being rebuilt" in letter.reason

    FAILING.clear()
    assert (await live.projection.rebuild(live.bus)).applied == 2
    handled = live.sub.handled
    await live.bus.replay(letter.id)
    await live.bus.drain()
    assert live.sub.handled == handled + 1  # the replay came, and was applied before
    assert await totals(live.store) == {"ada": (1, 30), "bob": (1, 5)}
    assert (await live.projection.info()).events_applied == 2


async def test_a_rebuild_refuses_when_the_log_lost_events_the_projection_applied(
    live: Live,
) -> None:
    events = [placed(f"O-{n}", "ada" if n % 2 else "bob", n) for n in range(1, 6)]
    for event in events:
        await live.bus.publish(event)
    await live.bus.drain()
    built = await totals(live.store)
    positions = await seqs(live.store)
    trimmed = await SqlEventBackend(live.store, retention=Retention(max_events=2)).trim()
    assert trimmed == 3

    with pytest.raises(ProjectionGapError) as refused:
        await live.projection.rebuild(live.bus)
    gap = refused.value.gap
    first, third, fourth = (positions[events[n].id] for n in (0, 2, 3))
    assert (gap.count, gap.lowest, gap.highest, gap.first_retained) == (3, first, third, fourth)
    message = str(refused.value)
    assert f"3 event(s) it applied, at log positions {first} to {third}, are gone" in message
    assert f"the log's oldest event is now at position {fourth}" in message
    assert "--allow-gap" in message
    # Nothing was changed.
    assert await totals(live.store) == built
    assert len(await receipts(live.store)) == 5
    info = await live.projection.info()
    assert (info.status, info.partial, info.events_applied) == ("running", False, 5)

    result = await live.projection.rebuild(live.bus, allow_gap=True)
    assert result.lost == gap
    assert (result.applied, result.partial, result.missing_events) == (2, True, 3)
    assert result.missing_upto == third
    assert await totals(live.store) == {"bob": (1, 4), "ada": (1, 5)}
    info = await live.projection.info()
    assert (info.partial, info.missing_events, info.missing_upto) == (True, 3, third)

    # A later rebuild loses nothing more: it needs no permission, and stays partial.
    again = await live.projection.rebuild(live.bus)
    assert (again.lost, again.partial, again.missing_events) == (None, True, 3)


async def test_a_rebuild_after_the_whole_log_was_trimmed_names_every_event_gone(
    live: Live,
) -> None:
    events = [placed("O-1", "ada", 1), placed("O-2", "ada", 2)]
    await live.bus.publish_many(events)
    await live.bus.drain()
    await SqlEventBackend(live.store, retention=Retention(max_events=0)).trim()

    with pytest.raises(ProjectionGapError, match="the log holds no event now") as refused:
        await live.projection.rebuild(live.bus)
    positions = await live.projection.gap(live.bus)
    assert refused.value.gap == positions
    assert positions is not None and (positions.count, positions.first_retained) == (2, None)


async def test_a_projection_in_another_database_keeps_its_checkpoint_there(
    database_url: str, tmp_path: Path
) -> None:
    registry = await open_store(f"sqlite:///{tmp_path / 'registry.db'}")
    await registry.upgrade()
    backend = SqlEventBackend(registry)
    bus = EventBus(backend, owns_backend=False, poll_wait=0.05)
    elsewhere = Projection(
        "order-totals",
        PATTERN,
        setup=create_table,
        apply=add_order,
        reset=empty_table,
        database=database_url,
    )
    try:
        await elsewhere.open(registry)
        target = elsewhere.store
        assert target is not registry and target.url == database_url
        elsewhere.attach(bus)
        await bus.publish_many([placed("O-1", "ada", 30), placed("O-2", "bob", 5)])
        await bus.drain()

        assert await totals(target) == {"ada": (1, 30), "bob": (1, 5)}
        checkpoint = await target.fetch_one(
            "SELECT checkpoint, events_applied FROM projection_checkpoints WHERE name = ?",
            "order-totals",
        )
        assert checkpoint is not None and checkpoint["events_applied"] == 2
        [info] = await list_projections(registry)
        assert (info.events_applied, info.checkpoint) == (2, checkpoint["checkpoint"])
        assert info.target == target.display_url
        assert info.import_path is None  # made in a function: the CLI needs --module

        await target.execute("DELETE FROM order_totals")
        result = await elsewhere.rebuild(bus)
        assert result.applied == 2
        assert await totals(target) == {"ada": (1, 30), "bob": (1, 5)}
    finally:
        await elsewhere.close()
        await bus.close()
        await backend.close()
        await registry.close()
    with pytest.raises(ConfigurationError, match="not open"):
        _ = elsewhere.store


async def test_run_consumes_until_cancelled_and_then_records_the_projection_idle(
    store: Store,
) -> None:
    bus = EventBus(SqlEventBackend(store), poll_wait=0.05)
    running = asyncio.create_task(order_totals.run(bus, registry=store))
    try:
        await bus.publish(placed("O-1", "ada", 30))
        await eventually(lambda: _applied(store, 1), what="the event applied")
        assert (await order_totals.info()).status == "running"
        assert await totals(store) == {"ada": (1, 30)}
    finally:
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
    [info] = await list_projections(store)
    assert (info.status, info.events_applied) == ("idle", 1)
    assert not bus.running


async def _applied(store: Store, count: int) -> bool:
    """Whether the registry counts ``count`` events applied."""
    return [info.events_applied for info in await list_projections(store)] == [count]
