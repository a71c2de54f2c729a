"""What the replication reliability tests share: a legacy ``accounts`` table mapped onto a
new service's ``ledger``, an application writing to it the whole time (inserts, updates,
deletes, key changes, several of them in one transaction), and a row-by-row comparison of
the two sides through the mapping."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from typing import Any

from hybridmesh.core.errors import StoreUnavailableError
from hybridmesh.data.config import TableSpec
from hybridmesh.data.reconcile import compare_table
from hybridmesh.store import Store

NAME = "ledger"

ACCOUNTS = (
    "CREATE TABLE accounts (id INTEGER PRIMARY KEY, holder TEXT NOT NULL, "
    "balance INTEGER NOT NULL, version INTEGER NOT NULL, note TEXT)"
)

#: How ``accounts`` becomes ``ledger``, as :func:`definitions` says.
MAPPING = TableSpec(source="accounts", target="ledger", columns={"holder": "owner", "note": None})
#: The source's columns, and the target's they become (``note`` is dropped).
SOURCE_COLUMNS = ("id", "holder", "balance", "version")
TARGET_COLUMNS = ("id", "owner", "balance", "version")


def definitions(
    source_url: str, target_url: str, *, chunk_size: int = 500, batch_size: int = 500
) -> str:
    """The YAML of replication :data:`NAME`: ``accounts`` into ``ledger``, ``holder``
    renamed ``owner`` and ``note`` dropped."""
    return f"""\
replications:
  - name: {NAME}
    source: {{url: "{source_url}", system: legacy-bank}}
    target: {{url: "{target_url}"}}
    chunk_size: {chunk_size}
    batch_size: {batch_size}
    tables:
      - source: accounts
        target: ledger
        columns: {{holder: owner, note: null}}
"""


async def create_accounts(db: Store, rows: int) -> None:
    """The ``accounts`` table with ``rows`` rows, ids 1 to ``rows``."""
    await db.execute(ACCOUNTS)
    if db.dialect == "postgresql":
        await db.execute(
            "INSERT INTO accounts SELECT n, 'holder ' || n, n % 1000, 1, 'note' "
            "FROM generate_series(1, ?::int) AS n",
            rows,
        )
        return
    async with db.transaction() as tx:
        await tx.executemany(
            "INSERT INTO accounts VALUES (?, ?, ?, 1, 'note')",
            [(n, f"holder {n}", n % 1000) for n in range(1, rows + 1)],
        )


@dataclass
class Writer:
    """The legacy application: keeps changing ``accounts`` until :attr:`stop` is set, from
    ``connections`` tasks at once. A transaction does one to four things to rows it picks
    (updates, inserts, deletes, and now and then a change of a row's key), always in key
    order so that two of them never deadlock. With ``tolerate_outage``, a transaction the
    database refuses (its connections ended, or none taken) is tried again later."""

    db: Store
    first_free_id: int
    connections: int = 1
    tolerate_outage: bool = False
    seed: int = 7
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    committed: int = 0
    refused: int = 0
    _next_id: int = 0
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self) -> None:
        self._next_id = self.first_free_id
        self._tasks = [
            asyncio.create_task(self._loop(random.Random(self.seed + n)))
            for n in range(self.connections)
        ]

    async def finish(self) -> None:
        """Stop writing and wait for the transactions under way; a writer's own failure
        is raised here."""
        self.stop.set()
        await asyncio.gather(*self._tasks)

    async def close(self) -> None:
        """Stop writing, whatever state the tasks are in (for clean-up)."""
        self.stop.set()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def alive(self) -> bool:
        """True while every writing task runs; a task's failure is raised here."""
        for task in self._tasks:
            if task.done():
                task.result()
                raise AssertionError("a writer ended before it was asked to")
        return True

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    async def _loop(self, rng: random.Random) -> None:
        while not self.stop.is_set():
            try:
                await self._transaction(rng)
                self.committed += 1
            except StoreUnavailableError:
                if not self.tolerate_outage:
                    raise
                self.refused += 1
                await asyncio.sleep(0.05)
            await asyncio.sleep(0)

    async def _transaction(self, rng: random.Random) -> None:
        high = self._next_id
        picks = sorted({rng.randint(1, high) for _ in range(rng.randint(1, 4))})
        async with self.db.transaction() as tx:
            for row in picks:
                roll = rng.random()
                if roll < 0.55:
                    await tx.execute(
                        "UPDATE accounts SET balance = balance + ?, version = version + 1, "
                        "holder = ? WHERE id = ?",
                        rng.randint(-50, 50),
                        f"holder {row} v{rng.randint(0, 99)}",
                        row,
                    )
                elif roll < 0.75:
                    await tx.execute("DELETE FROM accounts WHERE id = ?", row)
                elif roll < 0.8:
                    await tx.execute(
                        "UPDATE accounts SET id = ?, version = version + 1 WHERE id = ?",
                        self._new_id(),
                        row,
                    )
                else:
                    new = self._new_id()
                    await tx.execute(
                        "INSERT INTO accounts VALUES (?, ?, ?, 1, 'new')", new, f"holder {new}", 0
                    )


async def source_rows(db: Store) -> list[tuple[Any, ...]]:
    """The source's accounts in key order, as the target should hold them."""
    columns = ", ".join(SOURCE_COLUMNS)
    rows = await db.fetch_all(f"SELECT {columns} FROM accounts ORDER BY id")
    return [tuple(r[c] for c in SOURCE_COLUMNS) for r in rows]


async def target_rows(db: Store) -> list[tuple[Any, ...]]:
    columns = ", ".join(TARGET_COLUMNS)
    rows = await db.fetch_all(f"SELECT {columns} FROM ledger ORDER BY id")
    return [tuple(r[c] for c in TARGET_COLUMNS) for r in rows]


async def assert_same_rows(source: Store, target: Store) -> int:
    """Assert that the target holds exactly the source's rows, mapped; returns how many.
    On a difference the message names the first keys that differ, not a huge diff. The
    reconciliation's comparison (checksums on each side) must find the same: nothing."""
    expected = {row[0]: row for row in await source_rows(source)}
    found = {row[0]: row for row in await target_rows(target)}
    missing = sorted(expected.keys() - found.keys())
    extra = sorted(found.keys() - expected.keys())
    stale = sorted(k for k in expected.keys() & found.keys() if expected[k] != found[k])
    assert not (missing or extra or stale), (
        f"target differs from source: {len(missing)} rows missing {missing[:5]}, "
        f"{len(extra)} rows that are gone from the source {extra[:5]}, "
        f"{len(stale)} rows with other values "
        f"{[(expected[k], found[k]) for k in stale[:3]]}"
    )
    report = await compare_table(source, target, MAPPING.mapping(("id",)))
    assert (report.missing, report.extra, report.different) == (0, 0, 0), report
    assert report.source_rows == report.target_rows == len(expected)
    return len(expected)
