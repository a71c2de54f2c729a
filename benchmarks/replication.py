"""Replication from a legacy database: backfill throughput, change-capture lag, trigger cost,
and reconciliation against reladiff.

One table, ``orders``, stands for a legacy table: a BIGINT key, a text, a NUMERIC amount, a
float, a timestamp and a boolean (about 80 bytes a row). Everything runs on SQLite (files in
a temporary folder) and on PostgreSQL (fresh databases of the local server, dropped after);
the replicator replicates between two databases of the same kind, as
:class:`~hybridmesh.data.replication.Replicator` does in production, in this process. The
legacy application's writes come from another process (``benchmarks/_replication_load.py``):
paced, open loop, each statement its own transaction, 50 % updates, 30 % inserts, 20 %
deletes of random keys.

1. **Backfill throughput.** Rows per second of the replicator's initial backfill of the
   table (from ``prepare()``, which installs the capture triggers and creates the target
   table, until no table is left in the backfill phase; the default ``chunk_size``) against a
   plain bulk copy of the same table between the same two kinds of database, into an empty
   table: on PostgreSQL ``COPY (SELECT * FROM orders) TO STDOUT`` into a buffer and ``COPY
   orders FROM STDIN`` (asyncpg, binary format), on SQLite ``SELECT *`` and one
   ``executemany`` in one transaction (``sqlite3``, with the store's WAL and
   ``synchronous=NORMAL``). Every round copies into a fresh target; the two run in rounds of
   alternating order, and the ratio is the median of the per-round ratios. The capture
   triggers are installed on the source before the first round, so every round reads the
   same source. Then the same rounds again while the application writes ``BACKFILL_WRITES``
   statements a second; after each replicator round under writes the writes stop, the
   replicator streams what is left, and the two tables must then be equal (same rows, same
   values: a digest of each, ordered by key). Goal: the backfill at least 0.5 times the
   plain copy's rows per second (without writes). On SQLite each round starts from a
   checkpointed source file: writes beside a long read grow the WAL, which slows all later
   reads, so a round would otherwise pay for the ones before it.

2. **Change-capture lag.** After a backfill of ``LAG_ROWS`` rows, the replicator runs
   (``Replicator.run()``, as ``hybridmesh replicate run`` does) while the application
   writes ``LAG_RATE`` statements a second for ``LAG_SECONDS`` seconds (``LAG_WRITERS``
   connections on PostgreSQL, one on SQLite). Meanwhile another connection to the target
   polls, every ``POLL_SECONDS``, the replication's position, which the replicator commits
   in the same transaction as the rows it applies. A change's lag is the time of the first
   poll that finds the position at or past the change's ``seq``, less the change's ``at``
   (the source database's clock when the trigger ran, on the same machine as this
   process's clock). That is the time from the write on the source to the change being
   committed, and visible, in the target; the poll adds up to ``POLL_SECONDS`` (and any
   delay of this process's event loop, which the replicator shares), so it errs on the
   long side. Goal: p95 at most 1 s. The achieved write rate is the writer's own count over
   its own time.

3. **Trigger write overhead.** The same writes on a table with capture installed and on one
   without: ``SINGLE_WRITES`` single-row statements one after another on one connection,
   each its own transaction (half inserts of new keys, then as many updates of random
   keys), and ``BATCHED_ROWS`` rows inserted in transactions of ``BATCH`` rows (one
   ``executemany`` each), with the database's own driver (asyncpg, ``sqlite3``). Each round
   writes into a fresh table with an empty change log; rounds alternate the two variants.
   Reported: each variant's writes per second (its median round), the ratio captured over
   plain and the time added per write (medians of the per-round figures). No goal.

4. **Reconciliation** (``benchmarks/replication_reconcile.py``, which also runs alone): two
   ``RECONCILE_ROWS``-row PostgreSQL tables in different databases with 0.1 % of the rows
   missing, extra or different, compared by our checksum bisection and by reladiff (PyPI)
   on the same tables. Every difference must be found; goal: at least reladiff's speed.

Command: ``python -m benchmarks replication`` (``--quick``: fewer rows, one round).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import hashlib
import io
import json
import os
import random
import signal
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any

from rich.progress import Progress, TaskID

from benchmarks._postgres import fresh_database
from benchmarks._report import ROOT, alternating, failed_round, machine, write_json, write_section
from benchmarks.replication_reconcile import run_reconcile_bench
from hybridmesh.data.capture import CHANGES, install_capture, sequence_changes
from hybridmesh.data.config import ReplicationSpec, parse_data
from hybridmesh.data.databases import open_database
from hybridmesh.data.replication import DIRECT_CHUNK_SIZE, POSITION, Replicator
from hybridmesh.store import Store
from hybridmesh.store.postgres import numbered_placeholders
from hybridmesh.store.sqlite import sqlite_path

DIALECTS = ("sqlite", "postgresql")
LABELS = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}

#: Backfill: rows in the table, rounds of (plain copy, replicator), writes a second during
#: the rounds under writes, and the writer connections for them on PostgreSQL.
BACKFILL_ROWS = 500_000
BACKFILL_ROUNDS = 3
BACKFILL_WRITES = 1_000
BACKFILL_WRITERS = 4
BACKFILL_GOAL = 0.5

#: Reconciliation: rows in each table (a quick run: fewer), and the speed goal against
#: reladiff's defaults.
RECONCILE_ROWS = 1_000_000
RECONCILE_QUICK_ROWS = 100_000
RECONCILE_GOAL = 1.0

#: Lag: rows backfilled first, then writes a second for LAG_SECONDS from LAG_WRITERS
#: connections (PostgreSQL; SQLite has one writer at a time).
LAG_ROWS = 100_000
LAG_RATE = 2_000
LAG_SECONDS = 20.0
LAG_WRITERS = 16
POLL_SECONDS = 0.005
LAG_GOAL = 1.0  # seconds, p95
#: How long the replicator may take to catch up once the writes stopped.
CATCH_UP_TIMEOUT = 120.0

#: Trigger overhead: single-row writes, batched rows and their batch size, rounds.
SINGLE_WRITES = 20_000
BATCHED_ROWS = 200_000
BATCH = 1_000
OVERHEAD_ROUNDS = 3

POSTGRES_TABLE = (
    "CREATE TABLE {name} (id BIGINT PRIMARY KEY, customer TEXT NOT NULL, "
    "amount NUMERIC(12,2) NOT NULL, weight DOUBLE PRECISION, placed_at TIMESTAMP NOT NULL, "
    "paid BOOLEAN NOT NULL)"
)
SQLITE_TABLE = (
    "CREATE TABLE {name} (id INTEGER PRIMARY KEY, customer TEXT NOT NULL, "
    "amount NUMERIC NOT NULL, weight REAL, placed_at TIMESTAMP NOT NULL, "
    "paid BOOLEAN NOT NULL)"
)
COLUMNS = "id, customer, amount, weight, placed_at, paid"


def _table(dialect: str, name: str = "orders") -> str:
    return (POSTGRES_TABLE if dialect == "postgresql" else SQLITE_TABLE).format(name=name)


def _row(key: int) -> tuple[Any, ...]:
    """Row ``key`` of the table as SQLite stores it. Amounts have two decimals and weights
    are quarters, so every value survives the change log's JSON unchanged."""
    cents = key * 7919 % 10_000_000
    minute = datetime.fromtimestamp(1_704_067_200 + key * 60).strftime("%Y-%m-%d %H:%M:%S")
    return (key, f"customer-{key}", cents / 100, key % 997 / 4, minute, key % 3 == 0)


# -- databases ---------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def _database(dialect: str, folder: Path) -> AsyncIterator[str]:
    """The URL of a new, empty database (a file in ``folder``, or a fresh PostgreSQL
    database dropped afterwards)."""
    if dialect == "postgresql":
        async with fresh_database() as url:
            yield url
        return
    yield f"sqlite:///{folder / f'{uuid.uuid4().hex[:12]}.db'}"


async def _fill(dialect: str, url: str, rows: int) -> None:
    """Create ``orders`` at ``url`` with keys 1..``rows``."""
    if dialect == "postgresql":
        import asyncpg

        conn = await asyncpg.connect(url)
        try:
            await conn.execute(_table(dialect))
            await conn.execute(
                f"INSERT INTO orders ({COLUMNS}) SELECT g, 'customer-' || g, "
                "(g * 7919 % 10000000) / 100.0, (g % 997) / 4.0, "
                "timestamp '2024-01-01' + g * interval '1 minute', g % 3 = 0 "
                "FROM generate_series(1, $1::bigint) g",
                rows,
            )
            await conn.execute("VACUUM ANALYZE orders")
        finally:
            await conn.close()
        return
    conn = _sqlite(url)
    try:
        conn.execute(_table(dialect))
        conn.execute("BEGIN")
        conn.executemany(
            f"INSERT INTO orders ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
            (_row(key) for key in range(1, rows + 1)),
        )
        conn.execute("COMMIT")
    finally:
        conn.close()


def _sqlite(url: str) -> sqlite3.Connection:
    """A ``sqlite3`` connection with the store's settings (WAL, ``synchronous=NORMAL``)."""
    conn = sqlite3.connect(sqlite_path(url), isolation_level=None, timeout=5.0)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


async def _digest(dialect: str, url: str, table: str) -> dict[str, Any]:
    """The rows of ``table`` and a digest of their values in key order."""
    if dialect == "postgresql":
        import asyncpg

        conn = await asyncpg.connect(url)
        try:
            row = await conn.fetchrow(
                f"SELECT count(*) AS n, md5(string_agg(t::text, '|' ORDER BY id)) AS digest "
                f"FROM {table} t"
            )
        finally:
            await conn.close()
        return {"rows": int(row["n"]), "digest": row["digest"]}
    conn = _sqlite(url)
    try:
        digest, count = hashlib.sha256(), 0
        for values in conn.execute(f"SELECT {COLUMNS} FROM {table} ORDER BY id"):
            digest.update(repr(values).encode())
            count += 1
    finally:
        conn.close()
    return {"rows": count, "digest": digest.hexdigest()}


def _spec(name: str, source: str, target: str) -> ReplicationSpec:
    """A replication of ``orders`` as a user writes it: no settings but the defaults."""
    text = (
        "replications:\n"
        f"  - name: {name}\n"
        f'    source: {{url: "{source}"}}\n'
        f'    target: {{url: "{target}"}}\n'
        "    tables: [{source: orders}]\n"
    )
    return parse_data(text, "benchmark.yaml").replications[name]


# -- the legacy application's writes -----------------------------------------------------------


class Writes:
    """The writer process (``benchmarks/_replication_load.py``) for the length of a block."""

    _started = 0

    def __init__(self, dialect: str, url: str, rate: float, writers: int, keys: int) -> None:
        Writes._started += 1
        self.args = [
            *(sys.executable, "-m", "benchmarks._replication_load", dialect, url),
            *(str(rate), str(writers if dialect == "postgresql" else 1), str(keys)),
            str(100_000_000 * Writes._started),  # new keys, apart from every other run's
        ]
        self.out = Path(tempfile.mkdtemp(prefix="hm-repl-load-")) / "load.json"
        self.process: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> Writes:
        self.process = await asyncio.create_subprocess_exec(
            *self.args, str(self.out), cwd=ROOT, stdout=asyncio.subprocess.PIPE
        )
        assert self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), 30)
        if line.strip() != b"ready":
            raise RuntimeError(f"the writer did not start: {line!r}")
        return self

    async def stop(self) -> dict[str, Any]:
        """Stop writing; what the writer did."""
        process = self.process
        if process is None:
            raise RuntimeError("the writer is not running")
        self.process = None
        process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(process.wait(), 30)
        if code != 0:
            raise RuntimeError(f"the writer exited with {code}")
        figures: dict[str, Any] = json.loads(self.out.read_text())
        return figures

    async def __aexit__(self, *_exc: object) -> None:
        process, self.process = self.process, None
        if process is not None and process.returncode is None:
            process.kill()
            await process.wait()


# -- 1. backfill -------------------------------------------------------------------------------


async def _plain_copy(dialect: str, source: str, target: str) -> dict[str, Any]:
    """Copy ``orders`` into an empty table of the same shape at ``target``, the plain way."""
    if dialect == "postgresql":
        import asyncpg

        src, dst = await asyncpg.connect(source), await asyncpg.connect(target)
        try:
            await dst.execute(_table(dialect))
            began = time.perf_counter()
            buffer = io.BytesIO()
            status = await src.copy_from_query(
                "SELECT * FROM orders", output=buffer, format="binary"
            )
            buffer.seek(0)
            await dst.copy_to_table("orders", source=buffer, format="binary")
            seconds = time.perf_counter() - began
        finally:
            await src.close()
            await dst.close()
        rows = int(status.split()[-1])
    else:
        src, dst = _sqlite(source), _sqlite(target)
        try:
            dst.execute(_table(dialect))
            began = time.perf_counter()
            dst.execute("BEGIN")
            dst.executemany(
                f"INSERT INTO orders ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
                src.execute(f"SELECT {COLUMNS} FROM orders"),
            )
            dst.execute("COMMIT")
            seconds = time.perf_counter() - began
            rows = int(dst.execute("SELECT count(*) FROM orders").fetchone()[0])
        finally:
            src.close()
            dst.close()
    return {"rows": rows, "seconds": round(seconds, 3), "throughput": round(rows / seconds, 1)}


async def _backfill_once(
    dialect: str, source: str, target: str, name: str, writes: Writes | None
) -> dict[str, Any]:
    """The replicator's backfill of ``orders`` into ``target``; under ``writes``, then
    stops them, streams the rest and compares the two tables."""
    src, dst = await open_database(source), await open_database(target)
    try:
        replicator = Replicator(_spec(name, source, target), src, dst)
        began = time.perf_counter()
        await replicator.prepare()
        steps = 0
        while replicator.backfilling:
            await replicator.step()
            steps += 1
        seconds = time.perf_counter() - began
        status = await replicator.status()
        rows = status.tables[0].rows_copied
        result: dict[str, Any] = {
            "rows": rows,
            "seconds": round(seconds, 3),
            "throughput": round(rows / seconds, 1),
            "steps": steps,
        }
        if writes is not None:
            result["writes"] = await writes.stop()
            began = time.perf_counter()
            await replicator.run(until_caught_up=True)
            result["catch_up_seconds"] = round(time.perf_counter() - began, 3)
            result["changes_applied"] = replicator.applied - rows
            ours, theirs = (
                await _digest(dialect, target, "orders"),
                await _digest(dialect, source, "orders"),
            )
            result["equal"] = ours == theirs
            result["source_rows"] = theirs["rows"]
            result["target_rows"] = ours["rows"]
        return result
    finally:
        await src.close()
        await dst.close()


async def _backfill(
    dialect: str, rows: int, rounds: int, progress: Progress, task: TaskID
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="hm-repl-bench-") as folder:
        async with _database(dialect, Path(folder)) as source:
            await _fill(dialect, source, rows)
            db = await open_database(source)
            try:
                await install_capture(db, ["orders"])
            finally:
                await db.close()
            attempts: dict[str, list[dict[str, Any]]] = {
                name: [] for name in ("plain", "replicator", "plain_writes", "replicator_writes")
            }
            for index, name in enumerate(
                alternating(["plain", "replicator"], rounds)
                + alternating(["plain_writes", "replicator_writes"], rounds)
            ):
                try:
                    async with _database(dialect, Path(folder)) as target:
                        attempts[name].append(
                            await _backfill_round(dialect, name, index, source, target, rows)
                        )
                except Exception as error:
                    attempts[name].append(failed_round(error))
                    print(f"replication benchmark: {dialect} {name}: {error!r}", file=sys.stderr)
                progress.advance(task)
    return {
        "rows": rows,
        "rounds": attempts,
        "ratio": _paired(attempts, "replicator", "plain"),
        "ratio_writes": _paired(attempts, "replicator_writes", "plain_writes"),
        "write_rate": BACKFILL_WRITES,
    }


async def _backfill_round(
    dialect: str, name: str, index: int, source: str, target: str, rows: int
) -> dict[str, Any]:
    under_writes = name.endswith("_writes")
    if dialect == "sqlite":
        # Writes beside a long read grow the WAL, which slows every later read; each
        # round starts from a checkpointed file, as the first did.
        conn = _sqlite(source)
        try:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.close()
    async with contextlib.AsyncExitStack() as stack:
        writes = None
        if under_writes:
            writes = await stack.enter_async_context(
                Writes(dialect, source, BACKFILL_WRITES, BACKFILL_WRITERS, rows)
            )
        if name.startswith("plain"):
            result = await _plain_copy(dialect, source, target)
            if writes is not None:
                result["writes"] = await writes.stop()
            return result
        return await _backfill_once(dialect, source, target, f"backfill-{index}", writes)


def _paired(attempts: dict[str, list[dict[str, Any]]], ours: str, theirs: str) -> dict[str, Any]:
    """Round by round, ``ours``' rows per second over ``theirs``'; their median."""
    ratios = [
        round(a["throughput"] / b["throughput"], 3)
        for a, b in zip(attempts[ours], attempts[theirs], strict=False)
        if "error" not in a and "error" not in b
    ]
    return {"median": round(statistics.median(ratios), 3) if ratios else None, "rounds": ratios}


# -- 2. lag ------------------------------------------------------------------------------------


@dataclass
class _Observer:
    """Polls the replication's committed position in the target."""

    url: str
    name: str
    samples: list[tuple[float, int]]
    stop: asyncio.Event
    advanced: asyncio.Event

    async def run(self) -> None:
        db = await open_database(self.url)
        try:
            last = -1
            while not self.stop.is_set():
                position = await db.fetch_value(
                    f"SELECT position FROM {POSITION} WHERE name = ?", self.name
                )
                now = time.time()
                if position is not None and int(position) != last:
                    last = int(position)
                    self.samples.append((now, last))
                    self.advanced.set()
                await asyncio.sleep(POLL_SECONDS)
        finally:
            await db.close()

    async def reached(self, position: int) -> None:
        """Wait until a poll finds ``position``."""
        while self.samples[-1][1] < position:
            self.advanced.clear()
            await self.advanced.wait()

    def applied_at(self, seq: int) -> float | None:
        """When the first poll found the position at or past ``seq``."""
        index = bisect.bisect_left([p for _, p in self.samples], seq)
        return self.samples[index][0] if index < len(self.samples) else None


async def _lag(dialect: str, rows: int, seconds: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="hm-repl-bench-") as folder:
        async with (
            _database(dialect, Path(folder)) as source,
            _database(dialect, Path(folder)) as target,
        ):
            await _fill(dialect, source, rows)
            src, dst = await open_database(source), await open_database(target)
            try:
                return await _lag_run(dialect, src, dst, source, target, rows, seconds)
            finally:
                await src.close()
                await dst.close()


async def _lag_run(
    dialect: str, src: Store, dst: Store, source: str, target: str, rows: int, seconds: float
) -> dict[str, Any]:
    name = "lag"
    replicator = Replicator(_spec(name, source, target), src, dst)
    await replicator.run(until_caught_up=True)  # the backfill
    start = replicator.position
    stopping = False

    async def desired() -> Any:
        return "stopped" if stopping else "running"

    observer = _Observer(target, name, [(time.time(), start)], asyncio.Event(), asyncio.Event())
    watching = asyncio.create_task(observer.run())
    running = asyncio.create_task(replicator.run(desired=desired))
    try:
        async with Writes(dialect, source, LAG_RATE, LAG_WRITERS, rows) as writes:
            await asyncio.sleep(seconds)
            load = await writes.stop()
        head = await sequence_changes(src)
        try:
            async with asyncio.timeout(CATCH_UP_TIMEOUT):
                await observer.reached(head)
            caught_up = True
        except TimeoutError:
            caught_up = False
    finally:
        stopping = True
        await running
        observer.stop.set()
        await watching
    changes = await src.fetch_all(
        f"SELECT seq, at FROM {CHANGES} WHERE seq > ? AND op <> 'w' ORDER BY seq", start
    )
    lags: list[float] = []
    for change in changes:
        applied = observer.applied_at(int(change["seq"]))
        if applied is not None:
            lags.append(applied - float(change["at"]))
    first, last = (float(changes[0]["at"]), float(changes[-1]["at"])) if changes else (0, 0)
    return {
        "rows": rows,
        "writes": load,
        "changes": len(changes),
        "change_rate": round(len(changes) / (last - first), 1) if last > first else None,
        "applied": len(lags),
        "caught_up": caught_up,
        "polls_seen": len(observer.samples),
        **_percentiles(lags),
    }


def _percentiles(values: list[float]) -> dict[str, Any]:
    if len(values) < 2:
        return {"p50_s": None, "p95_s": None, "p99_s": None, "max_s": None}
    q = statistics.quantiles(values, n=100, method="inclusive")
    return {
        "p50_s": round(q[49], 4),
        "p95_s": round(q[94], 4),
        "p99_s": round(q[98], 4),
        "max_s": round(max(values), 4),
    }


# -- 3. trigger overhead -----------------------------------------------------------------------


class _Writer:
    """Single-row and batched writes through the database's own driver."""

    def __init__(self, dialect: str, url: str) -> None:
        self.dialect, self.url = dialect, url
        self.conn: Any = None

    async def __aenter__(self) -> _Writer:
        if self.dialect == "postgresql":
            import asyncpg

            self.conn = await asyncpg.connect(self.url)
        else:
            self.conn = _sqlite(self.url)
        return self

    async def __aexit__(self, *_exc: object) -> None:
        if self.dialect == "postgresql":
            await self.conn.close()
        else:
            self.conn.close()

    def _sql(self, sql: str) -> str:
        return numbered_placeholders(sql) if self.dialect == "postgresql" else sql

    def row(self, key: int) -> tuple[Any, ...]:
        values = _row(key)
        if self.dialect != "postgresql":
            return values
        return (
            values[0],
            values[1],
            Decimal(str(values[2])),
            values[3],
            _stamp(values[4]),
            values[5],
        )

    async def execute(self, sql: str, *args: Any) -> None:
        if self.dialect == "postgresql":
            await self.conn.execute(self._sql(sql), *args)
        else:
            self.conn.execute(sql, args)

    async def insert_batch(self, table: str, rows: list[tuple[Any, ...]]) -> None:
        sql = f"INSERT INTO {table} ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)"
        if self.dialect == "postgresql":
            async with self.conn.transaction():
                await self.conn.executemany(self._sql(sql), rows)
        else:
            self.conn.execute("BEGIN")
            self.conn.executemany(sql, rows)
            self.conn.execute("COMMIT")


def _stamp(text: str) -> datetime:
    return datetime.fromisoformat(text)


async def _overhead_round(
    dialect: str, url: str, db: Store, captured: bool, singles: int, batched: int
) -> dict[str, Any]:
    """One round of both workloads on fresh tables, captured or not."""
    for table in ("w_single", "w_batch"):
        await db.execute(f"DROP TABLE IF EXISTS {table}")
        await db.execute(_table(dialect, table))
    if captured:
        await install_capture(db, ["w_single", "w_batch"])
    await db.execute(f"DELETE FROM {CHANGES}")
    rng = random.Random(11)
    half = singles // 2
    latencies: list[float] = []
    async with _Writer(dialect, url) as writer:
        insert = f"INSERT INTO w_single ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)"
        update = "UPDATE w_single SET amount = ?, paid = NOT paid WHERE id = ?"
        rows = [writer.row(key) for key in range(1, half + 1)]
        amounts = [writer.row(rng.randint(1, 10_000_000))[2] for _ in range(half)]
        began = time.perf_counter()
        for values in rows:
            sent = time.perf_counter()
            await writer.execute(insert, *values)
            latencies.append(time.perf_counter() - sent)
        for amount in amounts:
            sent = time.perf_counter()
            await writer.execute(update, amount, rng.randint(1, half))
            latencies.append(time.perf_counter() - sent)
        single_seconds = time.perf_counter() - began
        batch_rows = [writer.row(key) for key in range(1, batched + 1)]
        began = time.perf_counter()
        for start in range(0, batched, BATCH):
            await writer.insert_batch("w_batch", batch_rows[start : start + BATCH])
        batch_seconds = time.perf_counter() - began
    captured_changes = int(await db.fetch_value(f"SELECT count(*) FROM {CHANGES}") or 0)
    ordered = sorted(latencies)
    return {
        "single_writes": singles,
        "single_seconds": round(single_seconds, 3),
        "single_rate": round(singles / single_seconds, 1),
        "single_p50_us": round(ordered[len(ordered) // 2] * 1e6, 1),
        "batched_rows": batched,
        "batched_seconds": round(batch_seconds, 3),
        "batched_rate": round(batched / batch_seconds, 1),
        "changes_captured": captured_changes,
    }


async def _overhead(
    dialect: str, singles: int, batched: int, rounds: int, progress: Progress, task: TaskID
) -> dict[str, Any]:
    attempts: dict[str, list[dict[str, Any]]] = {"plain": [], "captured": []}
    with tempfile.TemporaryDirectory(prefix="hm-repl-bench-") as folder:
        async with _database(dialect, Path(folder)) as url:
            db = await open_database(url)
            try:
                await install_capture(db, [])  # the change log, before any round
                for name in alternating(["plain", "captured"], rounds):
                    try:
                        attempts[name].append(
                            await _overhead_round(
                                dialect, url, db, name == "captured", singles, batched
                            )
                        )
                    except Exception as error:
                        attempts[name].append(failed_round(error))
                        print(f"replication benchmark: {dialect} overhead {name}: {error!r}")
                    progress.advance(task)
            finally:
                await db.close()
    return {"rounds": attempts, **_overhead_figures(attempts)}


def _overhead_figures(attempts: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    pairs = [
        (c, p)
        for c, p in zip(attempts["captured"], attempts["plain"], strict=False)
        if "error" not in c and "error" not in p
    ]
    if not pairs:
        return {}

    def median(values: list[float]) -> float:
        return round(statistics.median(values), 3)

    figures: dict[str, Any] = {}
    for kind in ("single", "batched"):
        rate = f"{kind}_rate"
        figures[kind] = {
            "plain_rate": median([p[rate] for _, p in pairs]),
            "captured_rate": median([c[rate] for c, _ in pairs]),
            "ratio": median([c[rate] / p[rate] for c, p in pairs]),
            "added_us_per_write": median([(1 / c[rate] - 1 / p[rate]) * 1e6 for c, p in pairs]),
        }
    figures["single"]["plain_p50_us"] = median([p["single_p50_us"] for _, p in pairs])
    figures["single"]["captured_p50_us"] = median([c["single_p50_us"] for c, _ in pairs])
    return figures


# -- the run -----------------------------------------------------------------------------------


async def _section(label: str, call: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
    try:
        return await call()
    except Exception as error:
        print(f"replication benchmark: {label} failed: {error!r}", file=sys.stderr)
        return failed_round(error)


async def run(*, quick: bool = False) -> dict[str, Any]:
    """Run the benchmark, write its JSON and its section of docs/benchmarks.md."""
    rows = 50_000 if quick else BACKFILL_ROWS
    rounds = 1 if quick else BACKFILL_ROUNDS
    lag_seconds = 5.0 if quick else LAG_SECONDS
    singles = 2_000 if quick else SINGLE_WRITES
    batched = 20_000 if quick else BATCHED_ROWS
    overhead_rounds = 1 if quick else OVERHEAD_ROUNDS
    results: dict[str, Any] = {
        "benchmark": "replication",
        "machine": machine(),
        "quick": quick,
        "load_before": [round(x, 2) for x in os.getloadavg()],
        "settings": {
            "backfill_rows": rows,
            "backfill_rounds": rounds,
            "backfill_write_rate": BACKFILL_WRITES,
            "backfill_writers_postgresql": BACKFILL_WRITERS,
            "lag_rows": LAG_ROWS,
            "lag_rate": LAG_RATE,
            "lag_seconds": lag_seconds,
            "lag_writers_postgresql": LAG_WRITERS,
            "poll_seconds": POLL_SECONDS,
            "single_writes": singles,
            "batched_rows": batched,
            "batch": BATCH,
            "overhead_rounds": overhead_rounds,
        },
        "backfill": {},
        "lag": {},
        "overhead": {},
    }
    with Progress(transient=True) as progress:
        for dialect in DIALECTS:
            task = progress.add_task(f"backfill, {dialect}", total=4 * rounds)
            results["backfill"][dialect] = await _section(
                f"backfill, {dialect}", partial(_backfill, dialect, rows, rounds, progress, task)
            )
            progress.remove_task(task)
        for dialect in DIALECTS:
            task = progress.add_task(f"lag at {LAG_RATE:,} writes/s, {dialect}", total=None)
            results["lag"][dialect] = await _section(
                f"lag, {dialect}", partial(_lag, dialect, LAG_ROWS, lag_seconds)
            )
            progress.remove_task(task)
        for dialect in DIALECTS:
            task = progress.add_task(f"trigger overhead, {dialect}", total=2 * overhead_rounds)
            results["overhead"][dialect] = await _section(
                f"overhead, {dialect}",
                partial(_overhead, dialect, singles, batched, overhead_rounds, progress, task),
            )
            progress.remove_task(task)
        task = progress.add_task("reconciliation against reladiff", total=None)
        results["reconcile"] = await _section(
            "reconciliation",
            partial(run_reconcile_bench, RECONCILE_QUICK_ROWS if quick else RECONCILE_ROWS),
        )
        progress.remove_task(task)
    results["load_after"] = [round(x, 2) for x in os.getloadavg()]
    results["goals"] = _goals(results)
    write_json("replication", results)
    write_section("replication", _markdown(results, quick))
    _print(results)
    return results


def _median_round(tries: list[dict[str, Any]]) -> dict[str, Any]:
    """The round of median rows per second (of an even number, the higher of the middle
    two); the last failure when none worked."""
    good = sorted((t for t in tries if "error" not in t), key=lambda t: float(t["throughput"]))
    return good[len(good) // 2] if good else (tries[-1] if tries else {"error": "not run"})


def _goals(results: dict[str, Any]) -> dict[str, Any]:
    goals: dict[str, Any] = {}
    for dialect in DIALECTS:
        backfill = results["backfill"].get(dialect, {})
        value = backfill.get("ratio", {}).get("median")
        goals[f"backfill_{dialect}"] = {
            "value": value,
            "goal": BACKFILL_GOAL,
            "met": value is not None and value >= BACKFILL_GOAL,
        }
        lag = results["lag"].get(dialect, {})
        p95 = lag.get("p95_s")
        goals[f"lag_{dialect}"] = {
            "value": p95,
            "goal": LAG_GOAL,
            "met": p95 is not None and p95 <= LAG_GOAL and bool(lag.get("caught_up")),
        }
    reconcile = results.get("reconcile", {})
    speed = reconcile.get("speed_vs_reladiff")
    exact = bool(reconcile.get("runs", {}).get("hybridmesh", {}).get("exact"))
    goals["reconcile"] = {
        "value": speed,
        "goal": RECONCILE_GOAL,
        "met": speed is not None and speed >= RECONCILE_GOAL and exact,
    }
    return goals


def _verdict(goal: dict[str, Any]) -> str:
    return "met" if goal["met"] else "missed"


def _error(found: dict[str, Any]) -> str:
    return str(found.get("error", "?")).replace("|", "\\|").replace("\n", " ")[:160]


def _markdown(results: dict[str, Any], quick: bool) -> str:
    m, goals, settings = results["machine"], results["goals"], results["settings"]
    flag = " --quick" if quick else ""
    lines = [
        "## Replication (`benchmarks/replication.py`)" + (" (quick run)" if quick else ""),
        "",
        "One legacy table `orders` (BIGINT key, text, NUMERIC, float, timestamp, boolean) "
        "replicated by `Replicator` between two SQLite files or two databases of the local "
        "PostgreSQL server; the legacy application's writes come from another process, "
        "paced, one transaction per statement (50 % updates, 30 % inserts, 20 % deletes). "
        f"Command: `make bench` (`python -m benchmarks replication{flag}`). Machine: "
        f"{m['cpus']} CPUs, Python {m['python']}, {m['date']}; load average "
        f"{results['load_before'][0]} before, {results['load_after'][0]} after.",
        "",
        f"**Backfill throughput** of {settings['backfill_rows']:,} rows (from `prepare()` to "
        "the end of the backfill; the default `chunk_size`, "
        f"{DIRECT_CHUNK_SIZE:,} rows, as this table's rows are copied as stored) against a "
        "plain bulk copy into an "
        "empty table (PostgreSQL: `COPY … TO STDOUT` into a buffer and `COPY … FROM STDIN`, "
        "binary, asyncpg; SQLite: `SELECT` and one `executemany` in one transaction, "
        f"`sqlite3`), {settings['backfill_rounds']} rounds of alternating order each; the "
        "ratio is the median of the per-round ratios, each figure the median round. Under "
        f"writes: {settings['backfill_write_rate']:,} statements/s meanwhile "
        f"({settings['backfill_writers_postgresql']} connections on PostgreSQL); after each "
        "such backfill the writes stop, the replicator streams the rest, and both tables "
        "must be equal (a digest of every row in key order).",
        "",
        "| database | plain copy rows/s | backfill rows/s | ratio (goal ≥ 0.5) "
        "| under writes: plain / backfill rows/s | ratio | tables equal after "
        "| writes/s achieved (statements failed) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for dialect in DIALECTS:
        found = results["backfill"].get(dialect, {"error": "not run"})
        if "error" in found:
            lines.append(f"| {LABELS[dialect]} | failed: {_error(found)} | | | | | | |")
            continue
        tries = found["rounds"]
        plain, ours = _median_round(tries["plain"]), _median_round(tries["replicator"])
        plain_w = _median_round(tries["plain_writes"])
        ours_w = _median_round(tries["replicator_writes"])
        equal = [t.get("equal") for t in tries["replicator_writes"] if "error" not in t]
        loads = [t["writes"] for t in tries["replicator_writes"] if "writes" in t]
        rates = ", ".join(f"{w['rate']:,.0f} ({sum(w['errors'].values())})" for w in loads)
        goal = goals[f"backfill_{dialect}"]
        lines.append(
            f"| {LABELS[dialect]} | {_rate(plain)} | {_rate(ours)} "
            f"| **{goal['value']}** ({_verdict(goal)}) | {_rate(plain_w)} / {_rate(ours_w)} "
            f"| {found['ratio_writes']['median']} "
            f"| {sum(1 for e in equal if e)} of {len(tries['replicator_writes'])} | {rates} |"
        )
    lines += [
        "",
        f"**Change-capture lag** at {settings['lag_rate']:,} statements/s for "
        f"{settings['lag_seconds']:g} s ({settings['lag_writers_postgresql']} connections on "
        "PostgreSQL, one on SQLite), after a backfill of "
        f"{settings['lag_rows']:,} rows, with `Replicator.run()` defaults. A change's lag is "
        "the time of the first poll of the target (every "
        f"{settings['poll_seconds'] * 1000:g} ms, another connection) that finds the "
        "replication's committed position at or past the change, less the change's `at` "
        "(the source's clock when the trigger ran): from the write to the row committed "
        "in the target, erring long by up to one poll.",
        "",
        "| database | statements/s asked / achieved | changes/s captured "
        "| lag p50 / p95 / p99 / max s | goal p95 ≤ 1 s |",
        "|---|---|---|---|---|",
    ]
    for dialect in DIALECTS:
        found = results["lag"].get(dialect, {"error": "not run"})
        if "error" in found:
            lines.append(f"| {LABELS[dialect]} | failed: {_error(found)} | | | |")
            continue
        goal = goals[f"lag_{dialect}"]
        writes = found["writes"]
        caught = "" if found["caught_up"] else " (did not catch up)"
        lines.append(
            f"| {LABELS[dialect]} | {writes['rate_asked']:,.0f} / {writes['rate']:,.0f} "
            f"| {found['change_rate'] or 0:,.0f} | {found['p50_s']} / **{found['p95_s']}** / "
            f"{found['p99_s']} / {found['max_s']} | {_verdict(goal)}{caught} |"
        )
    lines += [
        "",
        "**Trigger write overhead**: the same writes into a table with capture installed "
        f"and into one without: {settings['single_writes']:,} single-row statements on one "
        "connection, each its own transaction (half inserts, half updates), and "
        f"{settings['batched_rows']:,} rows inserted in transactions of {settings['batch']:,}"
        " (`executemany`), with asyncpg and `sqlite3`; "
        f"{settings['overhead_rounds']} rounds of alternating order, medians of the "
        "per-round figures.",
        "",
        "| database | single-row writes/s plain / captured | ratio | p50 µs plain / captured "
        "| added µs per write | batched rows/s plain / captured | ratio | added µs per row |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for dialect in DIALECTS:
        found = results["overhead"].get(dialect, {"error": "not run"})
        if "error" in found or "single" not in found:
            lines.append(f"| {LABELS[dialect]} | failed: {_error(found)} | | | | | | |")
            continue
        single, batched = found["single"], found["batched"]
        lines.append(
            f"| {LABELS[dialect]} | {single['plain_rate']:,.0f} / {single['captured_rate']:,.0f} "
            f"| {single['ratio']:.2f} | {single['plain_p50_us']:,.0f} / "
            f"{single['captured_p50_us']:,.0f} | {single['added_us_per_write']:,.1f} "
            f"| {batched['plain_rate']:,.0f} / {batched['captured_rate']:,.0f} "
            f"| {batched['ratio']:.2f} | {batched['added_us_per_write']:,.1f} |"
        )
    lines += _reconcile_markdown(results)
    return "\n".join(lines)


def _reconcile_markdown(results: dict[str, Any]) -> list[str]:
    found, goal = results.get("reconcile", {"error": "not run"}), results["goals"]["reconcile"]
    lines = [
        "",
        "**Reconciliation** of two PostgreSQL tables in different databases (BIGINT key, "
        "text with NULLs, integer, NUMERIC, timestamp) with about 0.1 % of the rows "
        "missing, extra or different, against reladiff (PyPI) on the same tables: our "
        "checksum bisection (`compare_table`, segments of 64 rows) and reladiff's "
        "`diff_tables` with its defaults and with 4 threads per database; the median of "
        "the rounds. Every difference must be found (the sets of keys compared, not only "
        "the counts).",
        "",
    ]
    if "error" in found:
        return [*lines, f"Failed: {_error(found)}"]
    runs, made = found["runs"], found["differences"]
    lines += [
        f"{found['rows']:,} rows; {sum(made.values()):,} differences made "
        f"({made['missing']} missing, {made['extra']} extra, {made['different']} different).",
        "",
        "| system | median s | found missing / extra / different | exact |",
        "|---|---|---|---|",
    ]
    for key, label in (
        ("hybridmesh", "hybridmesh"),
        ("reladiff", "reladiff, defaults"),
        ("reladiff_threads", "reladiff, 4 threads per database"),
    ):
        run = runs.get(key, {})
        seen = run.get("found", {})
        lines.append(
            f"| {label} | {run.get('median_s', 'failed')} | {seen.get('missing')} / "
            f"{seen.get('extra')} / {seen.get('different')} | {run.get('exact')} |"
        )
    lines += [
        "",
        f"Speed against reladiff's defaults: **{goal['value']}x** (goal ≥ "
        f"{RECONCILE_GOAL:g}x: {_verdict(goal)}); against reladiff with 4 threads: "
        f"{found.get('speed_vs_reladiff_threads')}x.",
    ]
    return lines


def _rate(found: dict[str, Any]) -> str:
    return f"{found['throughput']:,.0f}" if "throughput" in found else "failed"


def _print(results: dict[str, Any]) -> None:
    for dialect in DIALECTS:
        found = results["backfill"].get(dialect, {})
        if "rounds" in found:
            tries = found["rounds"]
            print(
                f"backfill {dialect:10}  plain {_rate(_median_round(tries['plain']))} rows/s  "
                f"replicator {_rate(_median_round(tries['replicator']))} rows/s  "
                f"ratio {found['ratio']['median']}  under writes {found['ratio_writes']['median']}"
            )
        else:
            print(f"backfill {dialect:10}  failed: {found.get('error')}")
    for dialect in DIALECTS:
        found = results["lag"].get(dialect, {})
        if "p95_s" in found:
            print(
                f"lag      {dialect:10}  {found['writes']['rate']:,.0f} writes/s  p50 "
                f"{found['p50_s']} s  p95 {found['p95_s']} s  max {found['max_s']} s"
            )
        else:
            print(f"lag      {dialect:10}  failed: {found.get('error')}")
    for dialect in DIALECTS:
        found = results["overhead"].get(dialect, {})
        if "single" in found:
            single, batched = found["single"], found["batched"]
            print(
                f"overhead {dialect:10}  single-row x{single['ratio']:.2f} "
                f"(+{single['added_us_per_write']:.1f} us/write)  batched "
                f"x{batched['ratio']:.2f} (+{batched['added_us_per_write']:.1f} us/row)"
            )
        else:
            print(f"overhead {dialect:10}  failed: {found.get('error')}")
    goal = results["goals"]["reconcile"]
    print(f"reconcile           {goal['value']}x reladiff's defaults ({_verdict(goal)})")


__all__ = ["run"]
