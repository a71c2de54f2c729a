"""No change is ever applied out of order for its key: the new service's copy of a row only
moves forward, whether the row comes from a backfill chunk or from the change log, and
however the application's transactions interleave their commits."""

from __future__ import annotations

import asyncio
import itertools
import random
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, cast

import pytest
from tests.integration.data.replication_load import (
    NAME,
    assert_same_rows,
    create_accounts,
    definitions,
)
from tests.waiting import eventually

from hybridmesh.data.config import ReplicationSpec, parse_data
from hybridmesh.data.databases import open_database
from hybridmesh.data.replication import Replicator
from hybridmesh.store import Store


def spec(source_url: str, target_url: str, **sizes: int) -> ReplicationSpec:
    return parse_data(definitions(source_url, target_url, **sizes), "test.yaml").replications[NAME]


async def replicate_until_caught_up(replicator: Replicator) -> None:
    """Step until the backfill is done and the log is read to its head."""
    while await replicator.step() or replicator.backfilling:
        pass


@pytest.fixture
async def sides(urls: tuple[str, str]) -> AsyncIterator[tuple[Store, Store]]:
    source = await open_database(urls[0])
    target = await open_database(urls[1])
    try:
        yield source, target
    finally:
        await source.close()
        await target.close()


class AfterEachChunk:
    """The legacy database, where ``then`` runs each time the backfill has selected a
    chunk, before the chunk's high watermark is written: the moment in which the chunk's
    copy of its rows can be older than the log."""

    def __init__(self, db: Store, then: Callable[[], Awaitable[None]]) -> None:
        self._db = db
        self._then = then

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)

    async def fetch_all(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        rows = await self._db.fetch_all(sql, *args)
        if "AS image FROM" in sql or "AS hm_key" in sql:  # as JSON images, or as stored
            await self._then()
        return rows

    async def copy_out(self, sql: str, *args: Any) -> tuple[bytes, int]:
        """PostgreSQL: a chunk copied as stored."""
        copied: tuple[bytes, int] = await self._db.copy_out(sql, *args)
        await self._then()
        return copied


async def test_a_key_changed_while_its_chunk_is_open_leaves_no_row_under_the_old_key(
    sides: tuple[Store, Store], urls: tuple[str, str]
) -> None:
    source, target = sides
    await create_accounts(source, 10)
    moved: list[int] = []

    async def move_row_2() -> None:
        if not moved:
            moved.append(await source.execute("UPDATE accounts SET id = 500 WHERE id = 2"))

    replicator = Replicator(
        spec(*urls, chunk_size=100), cast(Store, AfterEachChunk(source, move_row_2)), target
    )

    await replicate_until_caught_up(replicator)

    assert moved == [1]  # the key did change inside the chunk's window
    assert await assert_same_rows(source, target) == 10
    assert await target.fetch_value("SELECT COUNT(*) FROM ledger WHERE id = 2") == 0


#: One hot row in each backfill chunk.
HOT = tuple(range(50, 3_000, 100))
COUNTERS = "CREATE TABLE counters (id INTEGER PRIMARY KEY, n BIGINT NOT NULL, filler TEXT NOT NULL)"
#: In the target: every row the replicator writes into ``counters``, in the order written.
AUDIT = [
    "CREATE TABLE applied (seq BIGSERIAL PRIMARY KEY, id INTEGER NOT NULL, n BIGINT NOT NULL)",
    """CREATE FUNCTION audit_applied() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO applied (id, n) VALUES (NEW.id, NEW.n);
  RETURN NULL;
END $$""",
    "CREATE TRIGGER audit_applied AFTER INSERT OR UPDATE ON counters "
    "FOR EACH ROW EXECUTE FUNCTION audit_applied()",
]


async def count_up(
    db: Store, rng: random.Random, cold: itertools.count[int], stop: asyncio.Event
) -> int:
    """One application connection: transactions that each add 1 to one to three hot
    counters (in key order, pausing after each so that other transactions commit in the
    meantime) and insert a cold row; returns how many committed."""
    committed = 0
    while not stop.is_set():
        keys = sorted(rng.sample(HOT, rng.randint(1, 3)))
        async with db.transaction() as tx:
            for key in keys:
                await tx.execute("UPDATE counters SET n = n + 1 WHERE id = ?", key)
                await asyncio.sleep(rng.random() * 0.003)
            await tx.execute(
                "INSERT INTO counters (id, n, filler) VALUES (?, 0, 'cold')", next(cold)
            )
        committed += 1
    return committed


async def replicate_while(replicator: Replicator, writing: asyncio.Event) -> None:
    """Step the replicator while the writers write, and until caught up once they stop."""
    while True:
        read = await replicator.step()
        if not writing.is_set() and not read and not replicator.backfilling:
            return
        if not read:
            await asyncio.sleep(0.01)


@pytest.mark.postgres
async def test_hot_keys_never_go_backwards_under_concurrent_writers(
    postgres_url: str, second_postgres_url: str
) -> None:
    source = await open_database(postgres_url)
    target = await open_database(second_postgres_url)
    try:
        await source.execute(COUNTERS)
        await source.execute(
            "INSERT INTO counters SELECT n, 0, 'row ' || n FROM generate_series(1, 3000) AS n"
        )
        await target.execute(COUNTERS)
        for statement in AUDIT:
            await target.execute(statement)
        found = parse_data(
            f"""\
replications:
  - name: counters
    source: {{url: "{postgres_url}"}}
    target: {{url: "{second_postgres_url}"}}
    chunk_size: 100
    batch_size: 50
    tables: [{{source: counters}}]
""",
            "test.yaml",
        )
        # A chunk's select takes a while, as on a busy database: the writers commit
        # changes to its hot row before its high watermark.
        slow = AfterEachChunk(source, lambda: asyncio.sleep(0.02))
        replicator = Replicator(found.replications["counters"], cast(Store, slow), target)
        await replicator.prepare()
        writing, stop = asyncio.Event(), asyncio.Event()
        writing.set()
        cold = itertools.count(10_000)
        writers = [
            asyncio.create_task(count_up(source, random.Random(n), cold, stop)) for n in range(6)
        ]
        replicating = asyncio.create_task(replicate_while(replicator, writing))

        def streamed_a_while() -> bool:
            for task in (*writers, replicating):
                if task.done():
                    task.result()  # its error
                    raise AssertionError("a task ended before it was asked to")
            # The backfill counts in ``applied`` too: 3,000 rows.
            return not replicator.backfilling and replicator.applied > 4_000

        try:
            await eventually(streamed_a_while, what="the backfill done and changes streamed")
        finally:
            stop.set()
            committed = await asyncio.gather(*writers)
            writing.clear()
            await replicating

        assert sum(committed) > 100
        # The writers did commit changes in another order than their ids were given in.
        assert await source.fetch_value(
            "SELECT COUNT(*) FROM (SELECT seq, lag(seq) OVER (ORDER BY id) AS previous "
            "FROM hm_cdc_changes WHERE seq IS NOT NULL) s WHERE seq < previous"
        )
        history: dict[int, list[int]] = defaultdict(list)
        for row in await target.fetch_all("SELECT id, n FROM applied ORDER BY seq"):
            if row["id"] in HOT:
                history[row["id"]].append(int(row["n"]))
        for key in HOT:
            values = history[key]
            backwards = [(a, b) for a, b in itertools.pairwise(values) if b < a]
            assert not backwards, f"counter {key} went back: {backwards[:3]} in {values}"
            assert len(set(values)) > 5, (key, values)
        expected = await source.fetch_all("SELECT * FROM counters ORDER BY id")
        assert await target.fetch_all("SELECT * FROM counters ORDER BY id") == expected
    finally:
        await source.close()
        await target.close()
