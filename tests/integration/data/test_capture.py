"""Change capture by triggers: what a change carries, commit order, durable positions and
pruning, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncpg
import pytest

from hybridmesh.core.errors import ConfigurationError
from hybridmesh.data.capture import (
    backlog,
    captured_tables,
    consumer_position,
    install_capture,
    prune,
    read_changes,
    register_consumer,
    save_position,
    uninstall_capture,
)
from hybridmesh.data.databases import open_database
from hybridmesh.store import Store


async def make_customers(db: Store) -> None:
    await db.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT, city TEXT)")


async def test_a_change_carries_table_key_operation_and_both_images(legacy: Store) -> None:
    await make_customers(legacy)
    await install_capture(legacy, ["customers"])
    await legacy.execute("INSERT INTO customers VALUES (1, 'Ada', 'Leeds')")
    await legacy.execute("UPDATE customers SET city = 'York' WHERE id = 1")
    await legacy.execute("DELETE FROM customers WHERE id = 1")

    changes = await read_changes(legacy, 0)

    assert [(c.table, c.key, c.op) for c in changes] == [
        ("customers", (1,), "created"),
        ("customers", (1,), "updated"),
        ("customers", (1,), "deleted"),
    ]
    created, updated, deleted = changes
    assert created.before is None
    assert created.after == {"id": 1, "name": "Ada", "city": "Leeds"}
    assert updated.before == {"id": 1, "name": "Ada", "city": "Leeds"}
    assert updated.after == {"id": 1, "name": "Ada", "city": "York"}
    assert deleted.before == updated.after and deleted.after is None
    assert [c.seq for c in changes] == sorted(c.seq for c in changes)
    assert created.at <= updated.at <= deleted.at
    assert all(c.origin is None for c in changes)


async def test_a_rolled_back_change_is_not_captured(legacy: Store) -> None:
    await make_customers(legacy)
    await install_capture(legacy, ["customers"])
    with pytest.raises(RuntimeError):
        async with legacy.transaction() as tx:
            await tx.execute("INSERT INTO customers VALUES (1, 'Ada', 'Leeds')")
            raise RuntimeError("the application gives up")
    await legacy.execute("INSERT INTO customers VALUES (2, 'Bo', 'Hull')")

    assert [c.key for c in await read_changes(legacy, 0)] == [(2,)]


async def test_composite_keys_and_tables_without_a_key(legacy: Store) -> None:
    await legacy.execute(
        "CREATE TABLE lines (order_id INTEGER, line INTEGER, sku TEXT, "
        "PRIMARY KEY (order_id, line))"
    )
    await legacy.execute("CREATE TABLE notes (body TEXT)")
    await install_capture(legacy, ["lines"])
    await legacy.execute("INSERT INTO lines VALUES (7, 2, 'X-1')")

    (change,) = await read_changes(legacy, 0)
    assert change.key == (7, 2)
    with pytest.raises(ConfigurationError, match="no primary key"):
        await install_capture(legacy, ["notes"])
    with pytest.raises(ConfigurationError, match="no table"):
        await install_capture(legacy, ["missing"])


async def test_a_consumer_resumes_from_its_position_after_a_restart(
    legacy: Store,
) -> None:
    await make_customers(legacy)
    await install_capture(legacy, ["customers"])
    start = await register_consumer(legacy, "reporting")
    for n in range(5):
        await legacy.execute("INSERT INTO customers VALUES (?, ?, 'x')", n, f"c{n}")
    first = await read_changes(legacy, start, limit=3)
    await save_position(legacy, "reporting", first[-1].seq)

    reopened = await open_database(legacy.url)
    try:
        position = await consumer_position(reopened, "reporting")
        assert position is not None
        rest = await read_changes(reopened, position)
    finally:
        await reopened.close()

    assert [c.key for c in first + rest] == [(n,) for n in range(5)]


async def test_pruning_keeps_what_the_slowest_consumer_has_not_read(legacy: Store) -> None:
    await make_customers(legacy)
    await install_capture(legacy, ["customers"])
    await register_consumer(legacy, "fast")
    await register_consumer(legacy, "slow")
    for n in range(10):
        await legacy.execute("INSERT INTO customers VALUES (?, 'n', 'x')", n)
    changes = await read_changes(legacy, 0)
    await save_position(legacy, "fast", changes[-1].seq)
    await save_position(legacy, "slow", changes[3].seq)

    assert (await backlog(legacy)).consumers == {"fast": 0, "slow": 6}
    assert await prune(legacy) == 4
    assert [c.key for c in await read_changes(legacy, changes[3].seq)] == [
        (n,) for n in range(4, 10)
    ]
    after = await backlog(legacy)
    assert after.changes == 6 and after.head == changes[-1].seq


async def test_positions_keep_growing_after_everything_was_pruned(legacy: Store) -> None:
    await make_customers(legacy)
    await install_capture(legacy, ["customers"])
    await register_consumer(legacy, "only")
    await legacy.execute("INSERT INTO customers VALUES (1, 'a', 'x')")
    (first,) = await read_changes(legacy, 0)
    await save_position(legacy, "only", first.seq)
    await prune(legacy)
    await legacy.execute("INSERT INTO customers VALUES (2, 'b', 'x')")

    (second,) = await read_changes(legacy, first.seq)
    assert second.seq > first.seq and second.key == (2,)


async def test_uninstalling_stops_capture(legacy: Store) -> None:
    await make_customers(legacy)
    await install_capture(legacy, ["customers"])
    assert await captured_tables(legacy) == ["customers"]
    await uninstall_capture(legacy, ["customers"])
    await legacy.execute("INSERT INTO customers VALUES (1, 'a', 'x')")

    assert await captured_tables(legacy) == []
    assert await read_changes(legacy, 0) == []


@pytest.mark.postgres
async def test_a_change_committed_late_is_read_after_those_committed_before_it(
    postgres_url: str,
) -> None:
    """The case that ordering by insert id gets wrong: a transaction takes its id first and
    commits last. A reader that has passed the later ids must still get it."""
    db = await open_database(postgres_url)
    slow = await asyncpg.connect(postgres_url)
    try:
        await make_customers(db)
        await install_capture(db, ["customers"])
        late = slow.transaction()
        await late.start()
        await slow.execute("INSERT INTO customers VALUES (1, 'late', 'x')")  # id taken now
        await db.execute("INSERT INTO customers VALUES (2, 'early', 'x')")

        first = await read_changes(db, 0)
        assert [c.key for c in first] == [(2,)]
        await late.commit()
        second = await read_changes(db, first[-1].seq)
    finally:
        await slow.close()
        await db.close()

    assert [c.key for c in second] == [(1,)]
    assert second[0].seq > first[-1].seq
