"""The replicator's backfill chunks: rows copied as the source stores them when the mapping
only renames and drops, through the change log's JSON otherwise, and in either case never
over a change made while the chunk was selected."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from hybridmesh.data import replication
from hybridmesh.data.config import ReplicationSpec, parse_data
from hybridmesh.data.databases import open_database
from hybridmesh.data.replication import Replicator
from hybridmesh.store import Store
from hybridmesh.store.postgres import PostgresTransaction

ROWS = 120
#: A float that JSON with 15 significant digits (SQLite's) would not keep.
EXACT = 0.1 + 0.2


@pytest.fixture
async def dbs(urls: tuple[str, str]) -> AsyncIterator[tuple[Store, Store]]:
    source, target = await open_database(urls[0]), await open_database(urls[1])
    try:
        yield source, target
    finally:
        await source.close()
        await target.close()


def _spec(urls: tuple[str, str], table: str, chunk_size: int = 25) -> ReplicationSpec:
    text = f"""
replications:
  - name: orders-copy
    source: {{url: "{urls[0]}"}}
    target: {{url: "{urls[1]}"}}
    chunk_size: {chunk_size}
    tables:
      - {table}
"""
    return parse_data(text, "test.yaml").replications["orders-copy"]


PLAIN = "{source: orders, target: sales, columns: {name: customer, note: null}}"
TRANSFORMED = (
    "{source: orders, target: sales, columns: {name: customer, note: null}, "
    'transform: {name: "builtins:str.upper"}}'
)


async def _orders(db: Store, rows: int = ROWS) -> None:
    real = "DOUBLE PRECISION" if db.dialect == "postgresql" else "REAL"
    await db.execute(
        f"CREATE TABLE orders (id INTEGER PRIMARY KEY, name TEXT NOT NULL, amount {real}, "
        "note TEXT)"
    )
    await db.executemany(
        "INSERT INTO orders (id, name, amount, note) VALUES (?, ?, ?, ?)",
        [(key, f"name-{key}", key + EXACT, "dropped") for key in range(1, rows + 1)],
    )


async def _rows(db: Store, sql: str) -> dict[int, tuple[Any, ...]]:
    return {int(r["id"]): tuple(r.values())[1:] for r in await db.fetch_all(sql)}


async def _source_rows(db: Store, upper: bool = False) -> dict[int, tuple[Any, ...]]:
    rows = await _rows(db, "SELECT id, name, amount FROM orders")
    return {k: (v[0].upper() if upper else v[0], v[1]) for k, v in rows.items()}


async def _target_rows(db: Store) -> dict[int, tuple[Any, ...]]:
    return await _rows(db, "SELECT id, customer, amount FROM sales")


async def test_plain_mapping_copies_every_value_exactly(
    dbs: tuple[Store, Store], urls: tuple[str, str]
) -> None:
    source, target = dbs
    await _orders(source)
    replicator = Replicator(_spec(urls, PLAIN), source, target)
    await replicator.run(until_caught_up=True)

    assert await _target_rows(target) == await _source_rows(source)
    assert (await _target_rows(target))[1][1] == 1 + EXACT
    columns = {r for r in (await target.fetch_all("SELECT * FROM sales LIMIT 1"))[0]}
    assert columns == {"id", "customer", "amount"}
    status = await replicator.status()
    assert status.tables[0].rows_copied == ROWS
    assert status.tables[0].phase == "streaming"
    assert status.tables[0].chunk_after == f"[{ROWS}]"


@pytest.mark.parametrize("table", [PLAIN, TRANSFORMED], ids=["plain", "transformed"])
async def test_a_change_made_while_a_chunk_is_selected_is_not_overwritten(
    dbs: tuple[Store, Store], urls: tuple[str, str], table: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    source, target = dbs
    await _orders(source)
    select_chunk = replication._chunk
    done = False

    async def select_then_write(db: Store, *args: Any) -> Any:
        """Select the first chunk, then change two of its rows before the high watermark."""
        nonlocal done
        chunk = await select_chunk(db, *args)
        if not done:
            done = True
            await source.execute("UPDATE orders SET name = 'changed', amount = 0.5 WHERE id = 5")
            await source.execute("DELETE FROM orders WHERE id = 6")
        return chunk

    monkeypatch.setattr(replication, "_chunk", select_then_write)
    replicator = Replicator(_spec(urls, table), source, target)
    await replicator.run(until_caught_up=True)

    rows = await _target_rows(target)
    assert rows[5] == ("CHANGED" if table == TRANSFORMED else "changed", 0.5)
    assert 6 not in rows
    assert rows == await _source_rows(source, upper=table == TRANSFORMED)
    assert (await replicator.status()).tables[0].rows_copied == ROWS - 2


async def test_rows_the_target_already_has_are_replaced(
    dbs: tuple[Store, Store], urls: tuple[str, str]
) -> None:
    source, target = dbs
    await _orders(source)
    real = "DOUBLE PRECISION" if target.dialect == "postgresql" else "REAL"
    await target.execute(
        f"CREATE TABLE sales (id INTEGER, customer TEXT, amount {real}, PRIMARY KEY (id))"
    )
    await target.executemany(
        "INSERT INTO sales (id, customer, amount) VALUES (?, ?, ?)",
        [(3, "stale", -1.0), (40, "stale", -1.0)],
    )
    replicator = Replicator(_spec(urls, PLAIN), source, target)
    await replicator.run(until_caught_up=True)

    assert await _target_rows(target) == await _source_rows(source)


async def test_a_target_table_keyed_by_a_unique_index_is_filled(
    dbs: tuple[Store, Store], urls: tuple[str, str]
) -> None:
    source, target = dbs
    await _orders(source, rows=40)
    real = "DOUBLE PRECISION" if target.dialect == "postgresql" else "REAL"
    await target.execute(f"CREATE TABLE sales (id INTEGER NOT NULL, customer TEXT, amount {real})")
    await target.execute("CREATE UNIQUE INDEX sales_id ON sales (id)")
    replicator = Replicator(_spec(urls, PLAIN), source, target)
    await replicator.run(until_caught_up=True)

    assert await _target_rows(target) == await _source_rows(source)


@pytest.mark.postgres
async def test_a_row_written_into_the_chunk_range_meanwhile_does_not_fail_the_copy(
    postgres_url: str, second_postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The target's range looked empty, but holds a row by the time the chunk is copied
    (here: the look is made to miss it): the copy fails on that key, is undone to its
    savepoint, and the chunk is upserted instead, in the same transaction."""
    urls = (postgres_url, second_postgres_url)
    source, target = await open_database(postgres_url), await open_database(second_postgres_url)
    try:
        await _orders(source)
        await target.execute(
            "CREATE TABLE sales (id INTEGER, customer TEXT, amount DOUBLE PRECISION, "
            "PRIMARY KEY (id))"
        )
        await target.execute("INSERT INTO sales VALUES (7, 'stale', -1)")
        fetch_value = PostgresTransaction.fetch_value

        async def blind(self: PostgresTransaction, sql: str, *args: Any) -> Any:
            if sql.startswith('SELECT 1 FROM "sales"'):
                return None
            return await fetch_value(self, sql, *args)

        monkeypatch.setattr(PostgresTransaction, "fetch_value", blind)
        replicator = Replicator(_spec(urls, PLAIN), source, target)
        await replicator.run(until_caught_up=True)

        assert await _target_rows(target) == await _source_rows(source)
        assert (await replicator.status()).tables[0].rows_copied == ROWS
    finally:
        await source.close()
        await target.close()


async def test_a_target_column_of_another_type_takes_the_converted_values(
    dbs: tuple[Store, Store], urls: tuple[str, str]
) -> None:
    """The target's own table stores the amount as text: rows cannot be copied as stored,
    so they go through the change log's JSON, as changes do."""
    source, target = dbs
    await _orders(source, rows=30)
    await target.execute("CREATE TABLE sales (id INTEGER PRIMARY KEY, customer TEXT, amount TEXT)")
    replicator = Replicator(_spec(urls, PLAIN), source, target)
    await replicator.run(until_caught_up=True)

    rows = await _target_rows(target)
    assert len(rows) == 30
    assert rows[2][0] == "name-2"
    assert float(rows[2][1]) == pytest.approx(2 + EXACT)


@pytest.mark.postgres
async def test_a_type_of_the_databases_own_is_matched_by_its_fields_names(
    postgres_url: str, second_postgres_url: str
) -> None:
    """A composite type of the same name has its fields in another order in the target:
    values go by the fields' names (through JSON), not by their place in the source's
    binary form."""
    urls = (postgres_url, second_postgres_url)
    source, target = await open_database(postgres_url), await open_database(second_postgres_url)
    try:
        await source.execute("CREATE TYPE parcel AS (label TEXT, grams INTEGER)")
        await target.execute("CREATE TYPE parcel AS (grams INTEGER, label TEXT)")
        await source.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, parcel parcel)")
        await source.execute(
            "INSERT INTO orders SELECT g, ROW('box-' || g, g * 10)::parcel "
            "FROM generate_series(1, 40) g"
        )
        text = f"""
replications:
  - name: parcels
    source: {{url: "{urls[0]}"}}
    target: {{url: "{urls[1]}"}}
    chunk_size: 15
    tables: [{{source: orders}}]
"""
        spec = parse_data(text, "test.yaml").replications["parcels"]
        await Replicator(spec, source, target).run(until_caught_up=True)

        rows = await target.fetch_all(
            "SELECT id, (parcel).label AS label, (parcel).grams AS grams FROM orders"
        )
        assert {(r["id"], r["label"], r["grams"]) for r in rows} == {
            (key, f"box-{key}", key * 10) for key in range(1, 41)
        }
    finally:
        await source.close()
        await target.close()


@pytest.mark.parametrize("table", [PLAIN, TRANSFORMED], ids=["plain", "transformed"])
async def test_a_backfill_under_writes_ends_with_equal_tables(
    dbs: tuple[Store, Store], urls: tuple[str, str], table: str
) -> None:
    source, target = dbs
    await _orders(source, rows=2_000)
    replicator = Replicator(_spec(urls, table, chunk_size=150), source, target)
    await replicator.prepare()
    stop = False

    async def write(seed: int) -> None:
        rng = random.Random(seed)
        while not stop:
            key = rng.randint(1, 2_400)
            pick = rng.random()
            if pick < 0.4:
                await source.execute("UPDATE orders SET name = ? WHERE id = ?", f"u{key}", key)
            elif pick < 0.7:
                await source.execute(
                    "INSERT INTO orders (id, name, amount) VALUES (?, ?, ?) "
                    "ON CONFLICT (id) DO UPDATE SET amount = excluded.amount",
                    key,
                    f"i{key}",
                    rng.randint(0, 400) / 4,
                )
            else:
                await source.execute("DELETE FROM orders WHERE id = ?", key)
            await asyncio.sleep(0)

    writers = [asyncio.create_task(write(seed)) for seed in range(3)]
    try:
        while replicator.backfilling:
            await replicator.step()
    finally:
        stop = True
        await asyncio.gather(*writers)
    await replicator.run(until_caught_up=True)

    assert await _target_rows(target) == await _source_rows(source, upper=table == TRANSFORMED)


async def test_a_table_of_keys_only_is_copied(
    dbs: tuple[Store, Store], urls: tuple[str, str]
) -> None:
    source, target = dbs
    await source.execute("CREATE TABLE tags (tag TEXT PRIMARY KEY)")
    await source.executemany("INSERT INTO tags VALUES (?)", [(f"t{n:03}",) for n in range(60)])
    await Replicator(_spec(urls, "{source: tags}"), source, target).run(until_caught_up=True)

    rows = await target.fetch_all("SELECT tag FROM tags ORDER BY tag")
    assert [r["tag"] for r in rows] == [f"t{n:03}" for n in range(60)]


async def test_a_real_key_changed_while_its_chunk_is_selected_is_matched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite's JSON keeps 15 digits of a REAL, so a change's key is not the stored value;
    the chunk row of that key is still known for the one the change made newer."""
    urls = (f"sqlite:///{tmp_path / 'legacy.db'}", f"sqlite:///{tmp_path / 'service.db'}")
    source, target = await open_database(urls[0]), await open_database(urls[1])
    try:
        await source.execute("CREATE TABLE readings (at REAL PRIMARY KEY, value TEXT)")
        await source.executemany(
            "INSERT INTO readings VALUES (?, 'first')", [(n / 3,) for n in range(1, 20)]
        )
        select_chunk = replication._chunk

        async def select_then_write(db: Store, *args: Any) -> Any:
            chunk = await select_chunk(db, *args)
            await source.execute("UPDATE readings SET value = 'second' WHERE at = ?", 5 / 3)
            return chunk

        monkeypatch.setattr(replication, "_chunk", select_then_write)
        spec = _spec(urls, "{source: readings}", chunk_size=100)
        await Replicator(spec, source, target).run(until_caught_up=True)

        near = await target.fetch_all("SELECT value FROM readings WHERE abs(at - ?) < 1e-9", 5 / 3)
        assert [r["value"] for r in near] == ["second"]
    finally:
        await source.close()
        await target.close()
