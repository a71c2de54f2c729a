"""Replication into a new service's database: backfill by watermarks while writes go on,
streaming apply, mappings, restarts; SQLite and PostgreSQL on either side."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from hybridmesh.data import replication
from hybridmesh.data.capture import backlog
from hybridmesh.data.config import ReplicationSpec, parse_data
from hybridmesh.data.replication import Replicator
from hybridmesh.store import Store

MAPPING = "tests.integration.data.mappings"


def spec_for(
    source: Store, target: Store, *, chunk_size: int = 50, extra: str = ""
) -> ReplicationSpec:
    text = f"""
replications:
  - name: erp-customers
    source: {{url: "{source.url}", system: legacy-erp}}
    target: {{url: "{target.url}"}}
    chunk_size: {chunk_size}
    batch_size: 40
    tables:
      - source: customers
        target: users
        columns: {{name: full_name, fax: null}}
        transform: {{email: "{MAPPING}:lower"}}
        reverse_transform: {{email: "{MAPPING}:upper"}}
        computed: {{initials: "{MAPPING}:initials"}}
{extra}"""
    return parse_data(text, "replication.yaml").replications["erp-customers"]


async def make_customers(db: Store, rows: int) -> None:
    await db.execute(
        "CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT, email TEXT, fax TEXT)"
    )
    await db.executemany(
        "INSERT INTO customers VALUES (?, ?, ?, ?)",
        [(n, f"Ada Byron {n}", f"ADA{n}@EXAMPLE.COM", "01-555") for n in range(1, rows + 1)],
    )


async def source_rows(db: Store) -> dict[int, tuple[Any, ...]]:
    rows = await db.fetch_all("SELECT id, name, email FROM customers")
    return {
        int(r["id"]): (
            r["name"],
            r["email"].lower(),
            "".join(p[:1] for p in r["name"].split()).upper(),
        )
        for r in rows
    }


async def target_rows(db: Store) -> dict[int, tuple[Any, ...]]:
    rows = await db.fetch_all("SELECT id, full_name, email, initials FROM users")
    return {int(r["id"]): (r["full_name"], r["email"], r["initials"]) for r in rows}


async def write_randomly(db: Store, stop: asyncio.Event, seed: int) -> int:
    """Inserts, updates and deletes across (and beyond) the table until ``stop``."""
    rng = random.Random(seed)
    done = 0
    while not stop.is_set():
        key = rng.randint(1, 700)
        roll = rng.random()
        if roll < 0.45:
            await db.execute("UPDATE customers SET name = ? WHERE id = ?", f"Bo Ng {done}", key)
        elif roll < 0.75:
            await db.execute(
                "INSERT INTO customers VALUES (?, ?, ?, 'x') ON CONFLICT (id) DO UPDATE "
                "SET email = excluded.email",
                key,
                f"Cy Dee {done}",
                f"CY{done}@EXAMPLE.COM",
            )
        else:
            await db.execute("DELETE FROM customers WHERE id = ?", key)
        done += 1
        await asyncio.sleep(0)
    return done


async def test_backfill_while_writes_go_on_ends_equal(pair: tuple[Store, Store]) -> None:
    source, target = pair
    await make_customers(source, 600)
    replicator = Replicator(spec_for(source, target), source, target)
    await replicator.prepare()
    stop = asyncio.Event()
    writer = asyncio.create_task(write_randomly(source, stop, seed=7))
    chunks_seen = 0
    while replicator.backfilling:
        await replicator.step()
        chunks_seen += 1
        await asyncio.sleep(0)
    stop.set()
    writes = await writer
    await replicator.run(until_caught_up=True)

    assert writes > 20 and chunks_seen > 5
    assert await target_rows(target) == await source_rows(source)
    status = await replicator.status()
    assert status.lag_changes == 0 and status.phase == "streaming"
    (table,) = status.tables
    assert table.rows_total == 600 and table.rows_copied > 0


async def test_a_chunk_row_never_overwrites_a_newer_change(
    pair: tuple[Store, Store], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A row changes right after its chunk was selected, before the high watermark: the
    change is in the window, so the row selected before it is not written over it."""
    source, target = pair
    await make_customers(source, 30)
    selecting = replication._chunk

    async def chunk_then_change(db: Store, *args: Any) -> list[dict[str, Any]]:
        rows = await selecting(db, *args)
        await db.execute("UPDATE customers SET name = 'Changed After Select' WHERE id = 3")
        return rows

    monkeypatch.setattr(replication, "_chunk", chunk_then_change)
    replicator = Replicator(spec_for(source, target, chunk_size=100), source, target)
    await replicator.run(until_caught_up=True)

    rows = await target_rows(target)
    assert rows[3][0] == "Changed After Select"
    assert rows == await source_rows(source)


async def test_a_change_after_the_high_watermark_is_applied_after_the_chunk(
    pair: tuple[Store, Store], monkeypatch: pytest.MonkeyPatch
) -> None:
    source, target = pair
    await make_customers(source, 30)
    writing = replication.write_watermark

    async def watermark_then_delete(db: Store, label: str) -> int:
        seq = await writing(db, label)
        if label.endswith(":high"):
            await db.execute("DELETE FROM customers WHERE id = 5")
        return seq

    monkeypatch.setattr(replication, "write_watermark", watermark_then_delete)
    replicator = Replicator(spec_for(source, target, chunk_size=100), source, target)
    await replicator.run(until_caught_up=True)

    rows = await target_rows(target)
    assert 5 not in rows
    assert rows == await source_rows(source)


async def test_a_new_replicator_takes_up_a_backfill_where_the_last_one_committed(
    pair: tuple[Store, Store],
) -> None:
    source, target = pair
    await make_customers(source, 400)
    spec = spec_for(source, target, chunk_size=60)
    first = Replicator(spec, source, target)
    for _ in range(4):
        await first.step()
    copied = (await first.status()).tables[0].rows_copied
    assert 0 < copied < 400
    await source.execute("UPDATE customers SET name = 'Late Edit' WHERE id = 399")

    second = Replicator(spec, source, target)  # as after a crash: nothing kept in memory
    await second.run(until_caught_up=True)

    assert await target_rows(target) == await source_rows(source)
    assert (await second.status()).tables[0].rows_copied == 400


async def test_streaming_applies_updates_key_changes_and_deletes(
    pair: tuple[Store, Store],
) -> None:
    source, target = pair
    await make_customers(source, 5)
    replicator = Replicator(spec_for(source, target), source, target)
    await replicator.run(until_caught_up=True)

    await source.execute("UPDATE customers SET id = 50 WHERE id = 1")
    await source.execute("DELETE FROM customers WHERE id = 2")
    await source.execute("INSERT INTO customers VALUES (9, 'Di Eve', 'DI@X.ORG', 'f')")
    await source.execute("UPDATE customers SET email = 'NEW@X.ORG' WHERE id = 9")
    assert (await replicator.status()).lag_changes == 4
    await replicator.run(until_caught_up=True)

    rows = await target_rows(target)
    assert set(rows) == {3, 4, 5, 9, 50}
    assert rows[9] == ("Di Eve", "new@x.org", "DE")
    assert rows == await source_rows(source)
    assert (await replicator.status()).lag_changes == 0


async def test_streaming_is_idempotent_when_a_batch_is_applied_again(
    pair: tuple[Store, Store],
) -> None:
    """A replicator that dies after writing a batch but before its position is seen by the
    next one (here: its position is rewound by hand) applies the batch again harmlessly."""
    source, target = pair
    await make_customers(source, 3)
    spec = spec_for(source, target)
    replicator = Replicator(spec, source, target)
    await replicator.run(until_caught_up=True)
    start = replicator.position
    await source.execute("UPDATE customers SET name = 'Once Twice' WHERE id = 1")
    await source.execute("DELETE FROM customers WHERE id = 2")
    await replicator.run(until_caught_up=True)
    await target.execute(
        "UPDATE hm_replication_position SET position = ? WHERE name = ?", start, spec.name
    )

    again = Replicator(spec, source, target)
    await again.run(until_caught_up=True)

    assert await target_rows(target) == await source_rows(source)


async def test_the_target_table_is_made_when_missing_and_its_own_columns_are_kept(
    pair: tuple[Store, Store],
) -> None:
    source, target = pair
    await make_customers(source, 2)
    await target.execute(
        "CREATE TABLE users (id INTEGER PRIMARY KEY, full_name TEXT, email TEXT, "
        "initials TEXT, loyalty INTEGER DEFAULT 0)"
    )
    await target.execute("INSERT INTO users (id, loyalty) VALUES (1, 42)")
    replicator = Replicator(spec_for(source, target), source, target)
    await replicator.run(until_caught_up=True)
    await source.execute("UPDATE customers SET name = 'Al Bo' WHERE id = 1")
    await replicator.run(until_caught_up=True)

    row = await target.fetch_one("SELECT full_name, loyalty FROM users WHERE id = 1")
    assert row == {"full_name": "Al Bo", "loyalty": 42}


async def test_changes_every_consumer_has_read_are_pruned_from_the_source(
    pair: tuple[Store, Store],
) -> None:
    source, target = pair
    await make_customers(source, 30)
    replicator = Replicator(spec_for(source, target), source, target)
    await replicator.run(until_caught_up=True)
    for n in range(1, 11):
        await source.execute("UPDATE customers SET name = ? WHERE id = ?", f"Re Named {n}", n)
    assert (await backlog(source)).consumers == {"erp-customers": 10}

    await replicator.run(until_caught_up=True)

    log = await backlog(source)
    assert log.consumers == {"erp-customers": 0}
    assert log.changes == 0
    assert await target_rows(target) == await source_rows(source)
