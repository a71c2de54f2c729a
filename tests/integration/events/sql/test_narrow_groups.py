"""A group that wants few of the log's types is served as promptly as one that wants them
all: its looks pass over the other types in bulk, and passing over them is not idleness.
On SQLite and on PostgreSQL; the costs are counted in looks (leases), not timed."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from hybridmesh.core.clock import SYSTEM_CLOCK
from hybridmesh.events.backend import GroupSpec
from hybridmesh.events.backends import sql as sql_module
from hybridmesh.events.backends.sql import SqlEventBackend
from hybridmesh.events.envelope import CloudEvent

from .test_sql_backend import Looks, MakeSql, flat, positions, settle_all


def noise(count: int, type_: str = "noise.x") -> list[CloudEvent]:
    return [CloudEvent.create(type_, "/noise", {"n": n}) for n in range(count)]


async def publish_noise(backend: SqlEventBackend, count: int, chunk: int = 5_000) -> None:
    for start in range(0, count, chunk):
        await backend.publish(noise(min(chunk, count - start)))


NEEDLE = GroupSpec("needles", "needle.*")


async def test_a_narrow_group_reaches_its_event_past_50000_others_in_one_fetch(
    make_sql: MakeSql,
) -> None:
    sql = await make_sql()
    await sql.ensure_group(NEEDLE)
    await publish_noise(sql, 50_000)
    needle = CloudEvent.create("needle.found", "/tests", {"n": 1})
    await sql.publish([needle])

    looks = Looks(sql)
    batches = await sql.fetch(NEEDLE, "c", max_events=100, wait=0)
    assert [d.event.id for d in flat(batches) if d.event] == [needle.id]
    assert looks.count == 1  # one look went past all 50,000

    # Fetching one event at a time leases one partition per look: a look per partition.
    one_at_a_time = GroupSpec("one-needle", "needle.*")
    await sql.ensure_group(one_at_a_time)
    looks.count = 0
    batches = await sql.fetch(one_at_a_time, "c", max_events=1, wait=0)
    assert [d.event.id for d in flat(batches) if d.event] == [needle.id]
    assert looks.count <= sql.partitions


async def test_a_fetch_passing_over_more_than_one_look_reads_looks_on_at_once(
    make_sql: MakeSql,
) -> None:
    sql = await make_sql(partitions=4, scan_span=100)
    await sql.ensure_group(NEEDLE)
    await publish_noise(sql, 1_000, chunk=1_000)
    await sql.publish([CloudEvent.create("needle.found", "/tests", {"n": 1})])

    looks = Looks(sql)
    batches = await sql.fetch(NEEDLE, "c", max_events=10, wait=0)  # no wait at all
    assert [d.event.type for d in flat(batches) if d.event] == ["needle.found"]
    assert looks.count >= 10  # a look reads at most 100 seqs, and did not stop at empty ones
    await settle_all(sql, batches)
    # Everything was passed over: each partition's position is at the newest event.
    newest = int(await sql.store.fetch_value("SELECT MAX(seq) FROM event_log"))
    assert set((await positions(sql, NEEDLE.name)).values()) == {newest}


async def test_passing_over_other_types_is_not_idle(
    make_sql: MakeSql, monkeypatch: pytest.MonkeyPatch
) -> None:
    sql = await make_sql(clock=SYSTEM_CLOCK, poll_interval=0.02, idle_poll_interval=0.5)
    other_process = await make_sql(clock=SYSTEM_CLOCK)
    await sql.ensure_group(NEEDLE)
    pauses: list[float] = []
    wait_for = sql_module.wait_for

    async def recorded(waiter: asyncio.Event, seconds: float) -> None:
        pauses.append(seconds)
        await wait_for(waiter, seconds)

    monkeypatch.setattr(sql_module, "wait_for", recorded)
    sql._idle[NEEDLE.name] = 0.5  # backed off fully: nothing came for a while
    await publish_noise(other_process, 2_000)  # other types flow (and wake no one here)

    assert await sql.fetch(NEEDLE, "c", max_events=10, wait=1.0) == []
    # The first look passed over the other types, so the next one comes after the shortest
    # pause, not after the idle one; later looks found nothing and backed off again.
    assert len(pauses) >= 2 and pauses[0] == pytest.approx(0.02)
    newest = int(await sql.store.fetch_value("SELECT MAX(seq) FROM event_log"))
    assert max((await positions(sql, NEEDLE.name)).values()) == newest


async def test_a_reader_reaches_its_event_past_50000_others_in_one_look_and_writes_nothing(
    make_sql: MakeSql,
) -> None:
    sql = await make_sql()
    await publish_noise(sql, 50_000)
    needle = CloudEvent.create("needle.found", "/tests", {"n": 1})
    await sql.publish([needle])

    reader = await sql.open_reader("needle.*", start="earliest")
    looks = 0
    look = reader.look

    async def counted(*args: Any) -> Any:
        nonlocal looks
        looks += 1
        return await look(*args)

    reader.look = counted  # type: ignore[method-assign]
    [delivery] = await reader.read(1, wait=0)
    assert delivery.event is not None and delivery.event.id == needle.id
    assert looks == 1
    assert await reader.read(1, wait=0) == []
    await reader.close()
    # It kept its place in memory only: no group, no position.
    for table in ("event_groups", "event_positions"):
        assert await sql.store.fetch_value(f"SELECT COUNT(*) FROM {table}") == 0
