"""What the database itself can do with the SQL log's rows: the reference of its goal.

A plain loop appends the rows the bus would append (the same columns, bodies and batch
size, into a table with the log's indexes) and reads them back in seq order, in batches
of the bus's fetch size, with the database's own driver and nothing else: ``sqlite3`` for
SQLite (with the store's durability settings: WAL, ``synchronous=NORMAL``) and asyncpg
for PostgreSQL. Each chunk is one transaction, and what it appended is read back before
the next, as a publisher and a consumer take turns. Its events per second is the
storage's limit for this work in the run; the bus's rows are measured against it.
"""

from __future__ import annotations

import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._postgres import fresh_database

# The log's table and indexes (migrations 2 and 8), with each database's key column.
_TABLE = """
CREATE TABLE plain_log (
    seq {key}, event_id TEXT NOT NULL, source TEXT NOT NULL, type TEXT NOT NULL,
    partition INTEGER NOT NULL, only_group TEXT, body TEXT NOT NULL,
    published_at DOUBLE PRECISION NOT NULL
)
"""
_INDEXES = (
    "CREATE UNIQUE INDEX plain_dedupe ON plain_log (source, event_id) WHERE only_group IS NULL",
    "CREATE INDEX plain_scan ON plain_log (partition, seq, type, only_group)",
)
_COLUMNS = "event_id, source, type, partition, only_group, body, published_at"

Row = tuple[str, str, str, int, None, str, float]


def _result(count: int, seconds: float, read: int) -> dict[str, Any]:
    if read != count:
        raise RuntimeError(f"read back {read} rows of {count}")
    return {"events": count, "seconds": round(seconds, 4), "throughput": round(count / seconds, 1)}


def sqlite_loop(rows: list[Row], chunk: int, fetch: int) -> dict[str, Any]:
    """Append ``rows`` in chunks of ``chunk`` and read each back in batches of ``fetch``."""
    with tempfile.TemporaryDirectory(prefix="hm-bench-") as folder:
        conn = sqlite3.connect(Path(folder) / "plain.db", isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA wal_autocheckpoint=10000")  # as the store sets it
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(_TABLE.format(key="INTEGER PRIMARY KEY AUTOINCREMENT"))
            for index in _INDEXES:
                conn.execute(index)
            insert = f"INSERT INTO plain_log ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"
            select = "SELECT seq, type, body FROM plain_log WHERE seq > ? ORDER BY seq LIMIT ?"
            began = time.perf_counter()
            position = read = 0
            for start in range(0, len(rows), chunk):
                conn.execute("BEGIN")
                conn.executemany(insert, rows[start : start + chunk])
                conn.execute("COMMIT")
                while batch := conn.execute(select, (position, fetch)).fetchall():
                    position = batch[-1][0]
                    read += len(batch)
            seconds = time.perf_counter() - began
        finally:
            conn.close()
    return _result(len(rows), seconds, read)


async def postgres_loop(rows: list[Row], chunk: int, fetch: int) -> dict[str, Any]:
    """:func:`sqlite_loop` with asyncpg, on a fresh database of the local server."""
    import asyncpg

    async with fresh_database() as url:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(_TABLE.format(key="BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY"))
            for index in _INDEXES:
                await conn.execute(index)
            insert = f"INSERT INTO plain_log ({_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
            select = "SELECT seq, type, body FROM plain_log WHERE seq > $1 ORDER BY seq LIMIT $2"
            began = time.perf_counter()
            position = read = 0
            for start in range(0, len(rows), chunk):
                async with conn.transaction():
                    await conn.executemany(insert, rows[start : start + chunk])
                while batch := await conn.fetch(select, position, fetch):
                    position = batch[-1]["seq"]
                    read += len(batch)
            seconds = time.perf_counter() - began
        finally:
            await conn.close()
    return _result(len(rows), seconds, read)


__all__ = ["Row", "postgres_loop", "sqlite_loop"]
