"""The PostgreSQL backend: an asyncpg connection pool.

Queries arrive with ``?`` placeholders, as on every backend, and are rewritten to asyncpg's
``$1..$n`` once per distinct statement (the rewrite is cached). Schema upgrades hold a
transaction-scoped advisory lock, so processes that start together migrate one at a time.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, suppress
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

import asyncpg

from hybridmesh.core.clock import SYSTEM_CLOCK, Clock
from hybridmesh.core.errors import InvalidSettingError, StoreError, StoreUnavailableError
from hybridmesh.store._base import Migration, Queries, Store, Transaction, store_error
from hybridmesh.store.migrations import MIGRATIONS
from hybridmesh.store.urls import parse_database_url, shown_url

# What asyncpg raises: server errors, client-side misuse (wrong argument count or type),
# socket failures when a connection drops, and its protocol state errors when a connection
# dies in the middle of an operation.
_DRIVER_ERRORS = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
    TimeoutError,
)
# Of those, the ones that mean the connection is gone rather than the statement is wrong:
# connection exceptions (SQLSTATE class 08, including asyncpg's "connection was closed in
# the middle of operation"), operator intervention (57P: the session was terminated, the
# server is shutting down or starting), and client-side failures of a dying connection.
_CONNECTION_LOST = (
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.InternalClientError,
    OSError,
)

# Key of the advisory lock held while migrating: the bytes of "hmschema" as a bigint.
MIGRATION_LOCK_KEY = int.from_bytes(b"hmschema", "big")

_DIALECT = "postgresql"


class PostgresStore(Store):
    """A :class:`Store` on PostgreSQL. Open it with :meth:`open` (or :func:`open_store`)."""

    dialect = _DIALECT

    def __init__(
        self,
        url: str,
        pool: Any,
        *,
        create: bool = True,
        migrations: Sequence[Migration] = MIGRATIONS,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        super().__init__(url, migrations, clock)
        self._pool: Any = pool
        self._closed = False
        #: Opened with ``create=False``: upgrade() does not change the schema.
        self.read_only = not create

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        min_size: int = 1,
        max_size: int = 10,
        connect_timeout: float = 10.0,
        create: bool = True,
        migrations: Sequence[Migration] = MIGRATIONS,
        clock: Clock = SYSTEM_CLOCK,
    ) -> PostgresStore:
        """Connect a pool of ``min_size`` (default 1) to ``max_size`` (default 10) connections.
        Connecting writes nothing; with ``create=False`` the store is :attr:`read_only`, and
        :meth:`upgrade` does not create or change the schema either.

        Raises :class:`~hybridmesh.core.errors.InvalidSettingError` for a malformed URL (one
        that :mod:`hybridmesh.store.urls` refuses, or whose parameters asyncpg refuses), and
        :class:`StoreError` naming the server (never the password) when no connection can
        be made within ``connect_timeout`` seconds (default 10).
        """
        parse_database_url(url)
        try:
            pool = await asyncpg.create_pool(
                url,
                min_size=min_size,
                max_size=max_size,
                timeout=connect_timeout,
                reset=_keep_session,
            )
        except asyncpg.ClientConfigurationError as error:
            raise InvalidSettingError(
                f"bad database URL {shown_url(url)!r}: {_scrub(str(error), url)}"
            ) from None
        except (*_DRIVER_ERRORS, ValueError) as error:
            raise StoreError(
                f"postgresql: cannot connect to {server_of(url)}: {_scrub(str(error), url)}"
            ) from error
        return cls(url, pool, create=create, migrations=migrations, clock=clock)

    # -- queries ------------------------------------------------------------------------

    async def execute(self, sql: str, *args: Any) -> int:
        async with self._connection() as conn:
            return await _execute(conn, sql, args)

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        batch = [tuple(row) for row in rows]
        async with self._connection() as conn:
            try:
                async with conn.transaction():
                    await conn.executemany(numbered_placeholders(sql), batch)
            except _DRIVER_ERRORS as error:
                raise _failed(sql, error) from error

    async def fetch_all(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        async with self._connection() as conn:
            return await _fetch_all(conn, sql, args)

    async def copy_out(self, sql: str, *args: Any) -> tuple[bytes, int]:
        """The rows of query ``sql`` in COPY's binary format, and how many there are.

        For moving rows to another PostgreSQL database whose columns have the same types,
        unconverted (:meth:`PostgresTransaction.copy_in`); the binary form of a built-in
        type or an enum is the same in every database."""
        buffer = io.BytesIO()
        async with self._connection() as conn:
            try:
                status: str = await conn.copy_from_query(
                    numbered_placeholders(sql), *args, output=buffer, format="binary"
                )
            except _DRIVER_ERRORS as error:
                raise _failed(sql, error) from error
        return buffer.getvalue(), int(status.split()[-1])

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        async with self._connection() as conn:
            tx = conn.transaction()
            try:
                await tx.start()
            except _DRIVER_ERRORS as error:
                raise _failed("BEGIN", error) from error
            handle = PostgresTransaction(conn)
            try:
                yield handle
            except BaseException:
                handle.active = False
                # The error that caused the rollback is the one worth raising.
                with suppress(*_DRIVER_ERRORS):
                    await tx.rollback()
                raise
            handle.active = False
            try:
                await tx.commit()
            except _DRIVER_ERRORS as error:
                raise _failed("COMMIT", error) from error

    async def close(self) -> None:
        """Close the pool, waiting up to 10 s for borrowed connections to come back."""
        if self._closed:
            return
        self._closed = True
        try:
            await asyncio.wait_for(self._pool.close(), timeout=10)
        except TimeoutError:
            self._pool.terminate()

    # -- schema -------------------------------------------------------------------------

    def _migration_transaction(self) -> AbstractAsyncContextManager[Transaction]:
        return self._locked_transaction()

    @asynccontextmanager
    async def _locked_transaction(self) -> AsyncIterator[Transaction]:
        async with self.transaction() as tx:
            await tx.execute("SELECT pg_advisory_xact_lock(?)", MIGRATION_LOCK_KEY)
            yield tx

    async def _has_schema_table(self) -> bool:
        return bool(await self.fetch_value("SELECT to_regclass('schema_migrations') IS NOT NULL"))

    # -- plumbing -----------------------------------------------------------------------

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[Any]:
        """Borrow a pooled connection for the length of the block."""
        if self._closed:
            raise StoreError(f"postgresql: the store for {server_of(self.url)} is closed")
        try:
            conn = await self._pool.acquire()
        except _DRIVER_ERRORS as error:
            raise StoreUnavailableError(
                f"postgresql: cannot get a connection to {server_of(self.url)}: "
                f"{_scrub(str(error), self.url)}"
            ) from error
        try:
            yield conn
        finally:
            await self._pool.release(conn)


class PostgresTransaction(Queries):
    """The queries of one open :class:`PostgresStore` transaction, on its connection."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn
        self.active = True

    async def execute(self, sql: str, *args: Any) -> int:
        self._check()
        return await _execute(self._conn, sql, args)

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self._check()
        batch = [tuple(row) for row in rows]
        try:
            await self._conn.executemany(numbered_placeholders(sql), batch)
        except _DRIVER_ERRORS as error:
            raise _failed(sql, error) from error

    async def fetch_all(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        self._check()
        return await _fetch_all(self._conn, sql, args)

    async def copy_in(self, table: str, data: bytes, columns: Sequence[str] | None = None) -> int:
        """Load ``data``, rows in COPY's binary format (:meth:`PostgresStore.copy_out`),
        into the table named ``table`` (unquoted): into ``columns``, or all its columns,
        in order. Returns how many rows."""
        self._check()
        sql = f"COPY {table} FROM STDIN (FORMAT binary)"
        try:
            status: str = await self._conn.copy_to_table(
                table, source=io.BytesIO(data), columns=columns, format="binary"
            )
        except _DRIVER_ERRORS as error:
            raise _failed(sql, error) from error
        return int(status.split()[-1])

    def _check(self) -> None:
        if not self.active:
            raise StoreError("postgresql: the transaction has ended; open a new one")


async def _execute(conn: Any, sql: str, args: Sequence[Any]) -> int:
    try:
        status: str = await conn.execute(numbered_placeholders(sql), *args)
    except _DRIVER_ERRORS as error:
        raise _failed(sql, error) from error
    return rowcount(status)


async def _fetch_all(conn: Any, sql: str, args: Sequence[Any]) -> list[dict[str, Any]]:
    try:
        records = await conn.fetch(numbered_placeholders(sql), *args)
    except _DRIVER_ERRORS as error:
        raise _failed(sql, error) from error
    return [dict(record) for record in records]


_CHANGING_COMMANDS = frozenset({"INSERT", "UPDATE", "DELETE", "MERGE"})


async def _keep_session(conn: Any) -> None:
    """Connections go back to the pool as they are: the store leaves no session state behind
    (its transactions always end, its advisory locks are transaction-scoped, and LISTEN
    runs on a connection of its own), so asyncpg's reset round trip on every release would
    only cost time."""


def _failed(sql: str, error: BaseException) -> StoreError:
    """The store's error for a failed statement: :class:`StoreUnavailableError` when the
    connection was lost, else :class:`StoreError`; raise it ``from error``."""
    found = store_error(_DIALECT, sql, error)
    lost = isinstance(error, _CONNECTION_LOST) and not isinstance(error, asyncpg.QueryCanceledError)
    if lost or (isinstance(error, asyncpg.InterfaceError) and "closed" in str(error)):
        return StoreUnavailableError(str(found))
    return found


def rowcount(status: str) -> int:
    """The rows a statement changed, from its command tag (``"INSERT 0 3"`` → 3).

    0 for commands that change no rows (DDL, SELECT), matching the SQLite backend.
    """
    words = status.split()
    if words and words[0] in _CHANGING_COMMANDS and words[-1].isdigit():
        return int(words[-1])
    return 0


@lru_cache(maxsize=1024)
def numbered_placeholders(sql: str) -> str:
    """``sql`` with each ``?`` placeholder replaced by ``$1``, ``$2``, … in order.

    A ``?`` inside a quoted literal (``'…'``), a quoted identifier (``"…"``) or a comment
    (``-- …``, ``/* … */``) is left alone.
    """
    if "?" not in sql:
        return sql
    out: list[str] = []
    count = 0
    i, n = 0, len(sql)
    while i < n:
        ch = sql[i]
        if ch in "'\"":
            end = sql.find(ch, i + 1)  # a doubled quote ('') just closes and reopens
            end = n if end < 0 else end + 1
        elif sql.startswith("--", i):
            end = sql.find("\n", i)
            end = n if end < 0 else end + 1
        elif sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            end = n if end < 0 else end + 2
        elif ch == "?":
            count += 1
            out.append(f"${count}")
            i += 1
            continue
        else:
            end = i + 1
        out.append(sql[i:end])
        i = end
    return "".join(out)


def server_of(url: str) -> str:
    """``host:port/database`` of a PostgreSQL URL, with no user or password."""
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    try:
        port = parts.port or 5432
    except ValueError:  # not a number; the driver reports it, here we only name the host
        port = 5432
    database = parts.path.lstrip("/") or "(default database)"
    shown = f"[{host}]" if ":" in host else host
    return f"{shown}:{port}/{database}"


def _scrub(message: str, url: str) -> str:
    password = urlsplit(url).password
    return message.replace(password, "***") if password else message


__all__ = [
    "MIGRATION_LOCK_KEY",
    "PostgresStore",
    "PostgresTransaction",
    "numbered_placeholders",
    "rowcount",
]
