"""The SQLite backend: one file (or an in-memory database), one connection, one thread.

sqlite3 blocks, so every call on the connection runs on one worker thread owned by the
store; the event loop only awaits. Because the thread runs its queue in order and an
``asyncio.Lock`` admits one statement or one transaction at a time, a transaction's
statements are never interleaved with anyone else's.

Small batches on a file database are the exception (:attr:`SQLiteStore.batches_inline`):
they run on the event loop's thread, on a second connection that never waits for a lock.
A batch of a few dozen rows commits in well under a millisecond there (WAL commits do not
sync), while the hop to the worker thread and back costs several: the thread must win the
GIL from a busy loop, and the loop must win it back. When another process holds the write
lock, the batch goes to the worker thread instead, which waits for it (``busy_timeout``).
That connection never checkpoints by itself; the worker thread checkpoints the WAL on a
connection of its own once the file has grown past :data:`WAL_CHECKPOINT_PAGES`, so the
loop is never held up copying pages.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, suppress
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from hybridmesh.core.clock import SYSTEM_CLOCK, Clock
from hybridmesh.core.errors import InvalidSettingError, StoreError
from hybridmesh.store._base import (
    BatchResult,
    Migration,
    Queries,
    Statement,
    Store,
    Transaction,
    batch_due,
    batch_rows,
    store_error,
)
from hybridmesh.store._thread import ConnectionThread
from hybridmesh.store.migrations import MIGRATIONS
from hybridmesh.store.urls import MEMORY, parse_database_url, shown_url

T = TypeVar("T")

_log = logging.getLogger("hybridmesh.store.sqlite")

_BEGIN = "BEGIN IMMEDIATE"

#: A batch of at most this many statements and rows runs on the event loop's thread.
INLINE_ROWS = 256

#: Inline commits between two looks at the WAL's size.
_WAL_LOOK_EVERY = 64


def sqlite_path(url: str) -> str:
    """The database path in a ``sqlite:`` URL; ``":memory:"`` for an in-memory database.

    ``sqlite:///rel/path`` is relative to the working directory, ``sqlite:////abs/path``
    absolute, ``sqlite:///:memory:`` in memory. Raises
    :class:`~hybridmesh.core.errors.InvalidSettingError` for anything else, an empty path
    (``sqlite://``) included.
    """
    parsed = parse_database_url(url)
    if parsed.path is None:
        raise InvalidSettingError(f"not a SQLite URL: {shown_url(url)!r}")
    return parsed.path


class SQLiteStore(Store):
    """A :class:`Store` on SQLite. Open it with :meth:`open` (or :func:`open_store`).

    File databases use WAL journaling, so readers in other processes do not block the
    writer. Transactions begin with ``BEGIN IMMEDIATE``: they take the write lock at once
    and wait up to 5 s (``busy_timeout``) for another process to release it, rather than
    failing half-way through.

    With ``create=False`` a file that does not exist is not created: the store is an empty
    in-memory database instead, and :attr:`missing` is True. Commands that only read use
    this, so looking at a database that is not there yet leaves no file behind; an existing
    file is then :attr:`read_only`: :meth:`upgrade` does not change its schema.
    """

    dialect = "sqlite"

    def __init__(
        self,
        url: str,
        *,
        create: bool = True,
        migrations: Sequence[Migration] = MIGRATIONS,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        super().__init__(url, migrations, clock)
        self.path = sqlite_path(url)
        #: The file does not exist and was not created (``create=False``): reads see nothing.
        self.missing = not create and self.path != MEMORY and not Path(self.path).exists()
        if self.missing:
            self.path = MEMORY
        #: A file opened with ``create=False``: upgrade() does not change its schema.
        self.read_only = not create and self.path != MEMORY
        self._thread = ConnectionThread("hybridmesh-sqlite")
        self._conn: sqlite3.Connection | None = None
        self._lock = asyncio.Lock()
        self._holder: asyncio.Task[Any] | None = None
        self._closed = False
        self._inline: sqlite3.Connection | None = None  # the loop thread's (batches_inline)
        self._checkpointer: sqlite3.Connection | None = None  # the worker thread's second
        self._checkpointing: asyncio.Task[None] | None = None
        self._inline_commits = 0
        # Small batches run on the loop's thread on file databases; an in-memory database
        # is one connection's, the worker thread's.
        self.batches_inline = self.path != MEMORY

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        create: bool = True,
        migrations: Sequence[Migration] = MIGRATIONS,
        clock: Clock = SYSTEM_CLOCK,
    ) -> SQLiteStore:
        """Open the database at ``url``, creating it and its parent folder if needed (unless
        ``create`` is False: then a missing file is read as an empty database, see above).

        Raises :class:`StoreError` when the file cannot be created or opened.
        """
        store = cls(url, create=create, migrations=migrations, clock=clock)
        try:
            store._conn = await store._thread.submit(partial(_connect, store.path))
        except (sqlite3.Error, OSError) as error:
            store._thread.shutdown()
            raise StoreError(f"sqlite: cannot open database {store.path!r}: {error}") from error
        return store

    # -- queries ------------------------------------------------------------------------

    async def execute(self, sql: str, *args: Any) -> int:
        async with self._exclusive():
            return await self._call(sql, partial(_execute, sql, args))

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        batch = [tuple(row) for row in rows]
        async with self._exclusive():
            await self._call(sql, partial(_executemany, sql, batch))

    async def fetch_all(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        async with self._exclusive():
            return await self._call(sql, partial(_fetch_all, sql, args))

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        async with self._exclusive():
            try:
                await self._call(_BEGIN, partial(_execute, _BEGIN, ()))
            except BaseException:
                # Cancelled while the worker thread ran BEGIN: the transaction may have
                # begun all the same, and the next caller would find it open.
                await self._rollback()
                raise
            handle = _SQLiteTransaction(self)
            try:
                yield handle
                handle.active = False
                await self._call("COMMIT", partial(_execute, "COMMIT", ()))
            except BaseException:
                handle.active = False
                await self._rollback()
                raise

    async def batch(self, statements: Sequence[Statement]) -> list[BatchResult]:
        """Run ``statements`` in one transaction: a small batch on a file database at once
        on this thread (see the module's docstring), any other in one hop to the
        connection's thread."""
        work = list(statements)
        async with self._exclusive():
            if self.batches_inline and _size(work) <= INLINE_ROWS:
                results = self._batch_inline(work)
                if results is not None:
                    return results
            return await self._call(work[0].sql if work else "", partial(_batch, work))

    def _batch_inline(self, statements: list[Statement]) -> list[BatchResult] | None:
        """:meth:`batch` on the loop's connection; None when another process holds the
        write lock (the caller then waits for it on the worker thread)."""
        self._open_connection()  # refuses when closed
        conn = self._inline
        try:
            if conn is None:
                conn = self._inline = _connect(self.path, waits=False)
            conn.execute(_BEGIN)
        except sqlite3.OperationalError as error:
            if error.sqlite_errorcode == sqlite3.SQLITE_BUSY:
                return None
            raise store_error(self.dialect, _BEGIN, error) from error
        except sqlite3.Error as error:
            raise store_error(self.dialect, _BEGIN, error) from error
        try:
            results = _in_transaction(statements, conn)
        except sqlite3.Error as error:
            raise store_error(self.dialect, "COMMIT", error) from error
        self._inline_commits += 1
        if self._inline_commits % _WAL_LOOK_EVERY == 0:
            self._look_at_wal()
        return results

    def _look_at_wal(self) -> None:
        """Start a checkpoint once the WAL has outgrown its limit."""
        if self._checkpointing is not None:
            return
        try:
            size = os.stat(f"{self.path}-wal").st_size
        except OSError:
            return
        if size >= WAL_CHECKPOINT_PAGES * _PAGE_SIZE:
            self._checkpointing = asyncio.get_running_loop().create_task(
                self._checkpoint_wal(), name="hybridmesh-sqlite-checkpoint"
            )

    async def _checkpoint_wal(self) -> None:
        """Copy the WAL into the database on the worker thread: first beside the writers
        (most of it), then once more while they wait (the little they added meanwhile), so
        that the next write starts the WAL over instead of growing it."""
        try:
            await self._thread.submit(self._checkpoint)
            async with self._exclusive():
                if self._conn is not None:
                    await self._thread.submit(self._checkpoint)
        except sqlite3.Error as error:
            # A failed checkpoint leaves the WAL long, nothing else; the next look retries.
            _log.warning("sqlite: checkpoint of %s failed: %s", self.path, error)
        finally:
            self._checkpointing = None

    def _checkpoint(self) -> None:
        """(Worker thread.) Copy what the WAL holds into the database, waiting for no one."""
        if self._checkpointer is None:
            self._checkpointer = _connect(self.path)
        self._checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)").close()

    async def close(self) -> None:
        if self._closed:
            return
        if self._holder is not None and self._holder is asyncio.current_task():
            raise StoreError("sqlite: cannot close the store from inside one of its transactions")
        self._closed = True
        checkpointing = self._checkpointing
        if checkpointing is not None:
            checkpointing.cancel()
            with suppress(asyncio.CancelledError):
                await checkpointing
        async with self._lock:  # let a running transaction finish first
            conn, self._conn = self._conn, None
            inline, self._inline = self._inline, None
            if conn is not None:
                try:
                    if inline is not None:
                        inline.close()
                    await self._thread.submit(partial(self._close_on_thread, conn))
                except sqlite3.Error as error:
                    raise StoreError(f"sqlite: error closing {self.path!r}: {error}") from error
                finally:
                    self._thread.shutdown()

    def _close_on_thread(self, conn: sqlite3.Connection) -> None:
        """(Worker thread.) Close the connections the thread uses."""
        checkpointer, self._checkpointer = self._checkpointer, None
        if checkpointer is not None:
            checkpointer.close()
        conn.close()

    # -- schema -------------------------------------------------------------------------

    def _migration_transaction(self) -> AbstractAsyncContextManager[Transaction]:
        # BEGIN IMMEDIATE already excludes every other writer, in any process.
        return self.transaction()

    async def _has_schema_table(self) -> bool:
        found = await self.fetch_value(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
        )
        return found is not None

    # -- plumbing -----------------------------------------------------------------------

    @asynccontextmanager
    async def _exclusive(self) -> AsyncIterator[None]:
        """Hold the connection for one statement or one transaction."""
        if self._holder is not None and self._holder is asyncio.current_task():
            # Waiting for the lock this task holds would hang forever; say why instead.
            raise StoreError(
                "sqlite: this task is inside store.transaction(); run queries on the "
                "transaction object it yields, not on the store"
            )
        async with self._lock:
            self._holder = asyncio.current_task()
            try:
                yield
            finally:
                self._holder = None

    async def _call(self, sql: str, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``work`` on the worker thread; driver errors become :class:`StoreError`."""
        conn = self._open_connection()
        try:
            return await self._thread.submit(partial(work, conn))
        except sqlite3.Error as error:
            raise store_error(self.dialect, sql, error) from error

    def _open_connection(self) -> sqlite3.Connection:
        """The worker thread's connection; :class:`StoreError` once the store is closed."""
        conn = self._conn
        if conn is None:
            raise StoreError(f"sqlite: the store {self.path!r} is closed (or was never opened)")
        return conn

    async def _rollback(self) -> None:
        conn = self._conn
        if conn is None:
            return
        # The error that caused the rollback is the one worth raising.
        with suppress(sqlite3.Error):
            await self._thread.submit(partial(_rollback, conn))


class _SQLiteTransaction(Queries):
    """The queries of one open :class:`SQLiteStore` transaction."""

    def __init__(self, store: SQLiteStore) -> None:
        self._store = store
        self.active = True

    async def execute(self, sql: str, *args: Any) -> int:
        self._check()
        return await self._store._call(sql, partial(_execute, sql, args))

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self._check()
        batch = [tuple(row) for row in rows]
        await self._store._call(sql, partial(_executemany, sql, batch))

    async def fetch_all(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        self._check()
        return await self._store._call(sql, partial(_fetch_all, sql, args))

    def _check(self) -> None:
        if not self.active:
            raise StoreError("sqlite: the transaction has ended; open a new one")


# -- worker-thread functions: the only code that touches sqlite3 -----------------------


#: Pages the WAL may hold before SQLite checkpoints it into the database file.
WAL_CHECKPOINT_PAGES = 10_000
_PAGE_SIZE = 4096  # SQLite's default; the size is only compared, so close is enough

#: Run on every connection the stores open from now on; see :func:`on_connect`.
_CONNECT_HOOKS: list[Callable[[sqlite3.Connection], None]] = []


def on_connect(hook: Callable[[sqlite3.Connection], None]) -> None:
    """Run ``hook`` on each connection opened after this call, on the thread that owns it:
    the place to register SQL functions (``create_function``) that queries of a feature
    rely on. Registering the same hook twice runs it once."""
    if hook not in _CONNECT_HOOKS:
        _CONNECT_HOOKS.append(hook)


def _connect(path: str, *, waits: bool = True) -> sqlite3.Connection:
    """A connection to ``path``. With ``waits=False`` (the event loop thread's) it never
    waits for the write lock and never checkpoints: the worker thread does that."""
    if path != MEMORY:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    # isolation_level=None: no implicit BEGINs; transactions are explicit, see transaction().
    # timeout: how long a statement waits for another process's write lock (busy_timeout).
    conn = sqlite3.connect(
        path, timeout=5.0 if waits else 0, check_same_thread=False, isolation_level=None
    )
    try:
        if path != MEMORY:
            conn.execute("PRAGMA journal_mode=WAL")
            # Checkpoint the WAL every ~40 MB rather than every 4 MB: the event log appends in
            # bursts, and frequent checkpoints cost more than a larger WAL (inserts measured
            # 1.7x faster). Readers are not slowed: they look pages up in the WAL's index.
            pages = WAL_CHECKPOINT_PAGES if waits else 0
            conn.execute(f"PRAGMA wal_autocheckpoint={pages}")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        for hook in _CONNECT_HOOKS:
            hook(conn)
    except BaseException:
        conn.close()
        raise
    return conn


def _execute(sql: str, args: Sequence[Any], conn: sqlite3.Connection) -> int:
    cursor = conn.execute(sql, args)
    try:
        return max(cursor.rowcount, 0)
    finally:
        cursor.close()


def _executemany(sql: str, rows: list[tuple[Any, ...]], conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        conn.executemany(sql, rows).close()
        return
    conn.execute(_BEGIN)
    try:
        conn.executemany(sql, rows).close()
    except BaseException:
        _rollback(conn)
        raise
    conn.execute("COMMIT")


def _fetch_all(sql: str, args: Sequence[Any], conn: sqlite3.Connection) -> list[dict[str, Any]]:
    cursor = conn.execute(sql, args)
    try:
        if cursor.description is None:
            return []
        columns = [column[0] for column in cursor.description]
        return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
    finally:
        cursor.close()


def _size(statements: list[Statement]) -> int:
    """How many statements and rows a batch runs."""
    return sum(1 if statement.rows is None else len(statement.rows) for statement in statements)


def _batch(statements: list[Statement], conn: sqlite3.Connection) -> list[BatchResult]:
    conn.execute(_BEGIN)
    return _in_transaction(statements, conn)


def _in_transaction(statements: list[Statement], conn: sqlite3.Connection) -> list[BatchResult]:
    """Run a batch in the transaction just begun, then commit (or roll back)."""
    results: list[BatchResult] = []
    try:
        for statement in statements:
            try:
                if not batch_due(statement, results):
                    results.append(None)
                elif statement.rows is not None:
                    rows = batch_rows(statement, results)
                    if rows:
                        conn.executemany(statement.sql, rows).close()
                    results.append(len(rows))
                elif statement.fetch:
                    results.append(_fetch_all(statement.sql, statement.args, conn))
                else:
                    results.append(_execute(statement.sql, statement.args, conn))
            except sqlite3.Error as error:
                raise store_error("sqlite", statement.sql, error) from error
    except BaseException:
        _rollback(conn)
        raise
    conn.execute("COMMIT")
    return results


def _rollback(conn: sqlite3.Connection) -> None:
    # Some errors (SQLITE_FULL, SQLITE_IOERR, …) already rolled the transaction back.
    if conn.in_transaction:
        conn.execute("ROLLBACK")


__all__ = ["SQLiteStore", "on_connect", "sqlite_path"]
