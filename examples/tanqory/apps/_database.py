"""A service's SQLite file, used from one worker thread so the event loop never blocks."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Concatenate, ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

#: Every service keeps its idempotency answers next to its own data.
IDEMPOTENCY_SCHEMA = """
CREATE TABLE IF NOT EXISTS idempotency (
    key TEXT PRIMARY KEY,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    status INTEGER NOT NULL,
    body TEXT NOT NULL,
    created_at TEXT NOT NULL
);
"""


class ServiceDatabase:
    """One SQLite connection owned by one thread.

    :meth:`run` calls a function with the connection inside a transaction: it commits when
    the function returns and rolls back when it raises, so a function is all-or-nothing.
    Calls run one at a time, in the order they were made.
    """

    def __init__(self, path: Path, schema: str) -> None:
        self.path = path
        self._schema = IDEMPOTENCY_SCHEMA + schema
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"db-{path.stem}")
        self._conn: sqlite3.Connection | None = None

    async def open(self, seed: Callable[[sqlite3.Connection], None] | None = None) -> None:
        """Creates the file and tables when missing, then runs ``seed`` (must be idempotent)."""
        await self._submit(self._open)
        if seed is not None:
            await self.run(seed)

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, isolation_level=None)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.executescript(self._schema)
        self._conn = conn

    async def run(
        self,
        fn: Callable[Concatenate[sqlite3.Connection, P], T],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """``fn(connection, *args, **kwargs)`` in one transaction, on the database thread."""

        def transaction() -> T:
            conn = self._conn
            if conn is None:
                raise RuntimeError(f"database {self.path} is not open")
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn, *args, **kwargs)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return result

        return await self._submit(transaction)

    async def close(self) -> None:
        """Closes the connection and stops the thread; safe to call twice."""
        if self._conn is not None:
            await self._submit(self._close)
        self._executor.shutdown(wait=True)

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    async def _submit(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)


def seq_of(ref: str, prefix: str) -> int | None:
    """The row number in a public id such as ``U-12`` (prefix ``U``); None when ``ref`` is
    not one of ``prefix``'s ids."""
    head, _, number = ref.partition("-")
    return int(number) if head == prefix and number.isdigit() else None
