"""The store contract every backend implements, and the schema bookkeeping they share.

A :class:`Store` is one database (SQLite file or PostgreSQL database) behind one async API.
SQL is written once, with ``?`` placeholders and portable types (TEXT, INTEGER, BIGINT);
each backend adapts it to its driver. Backends implement the query primitives and how a
migration run is made exclusive; :class:`Store` builds :meth:`Store.upgrade`,
:meth:`Store.schema_version` and :meth:`Store.pending_migrations` on top of them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Protocol, Self
from urllib.parse import urlsplit, urlunsplit

from hybridmesh.core.clock import SYSTEM_CLOCK, Clock
from hybridmesh.core.errors import StoreError


@dataclass(frozen=True)
class Migration:
    """One step of the schema: applied once, in ``version`` order, inside a transaction.

    ``statements`` run one after another, each a single SQL statement without parameters;
    keep them portable between SQLite and PostgreSQL. Where a dialect needs its own form (an
    auto-incrementing key, say), ``dialect_statements`` maps the dialect's name
    (:attr:`Store.dialect`) to the statements it runs instead.
    """

    version: int
    name: str
    statements: tuple[str, ...]
    dialect_statements: Mapping[str, tuple[str, ...]] = field(default_factory=dict, hash=False)

    def statements_for(self, dialect: str) -> tuple[str, ...]:
        """The statements to run on ``dialect``."""
        return self.dialect_statements.get(dialect, self.statements)


@dataclass(frozen=True, slots=True)
class Statement:
    """One statement of :meth:`Store.batch`.

    ``rows`` runs it once per row (as ``executemany``) instead of once with ``args``;
    ``fetch`` returns its rows instead of the count of rows it changed; ``after`` (the index
    of an earlier statement) runs it only when that one returned rows or changed some;
    ``rows_after`` does the same per row (one index per row), so changes to several things
    can share one ``executemany``.
    """

    sql: str
    args: Sequence[Any] = ()
    rows: Sequence[Sequence[Any]] | None = None
    fetch: bool = False
    after: int | None = None
    rows_after: Sequence[int] | None = None


#: What :meth:`Store.batch` gives back per statement: its rows, its count, or None (skipped).
BatchResult = list[dict[str, Any]] | int | None


class Transaction(Protocol):
    """The queries of a :class:`Store`, bound to one open transaction.

    Obtained from :meth:`Store.transaction`; valid only inside its ``async with`` block.
    A :class:`Store` has the same methods, so code that only runs queries can take a
    ``Transaction`` and be handed either one.
    """

    async def execute(self, sql: str, *args: Any) -> int:
        """Run one statement; return the number of rows it changed (0 when none or DDL)."""
        ...

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """Run one statement once per row of arguments."""
        ...

    async def fetch_all(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        """Every row of a query, each as a dict keyed by column name."""
        ...

    async def fetch_one(self, sql: str, *args: Any) -> dict[str, Any] | None:
        """The first row of a query, or None when it has no rows."""
        ...

    async def fetch_value(self, sql: str, *args: Any) -> Any:
        """The first column of the first row, or None when the query has no rows."""
        ...


SCHEMA_TABLE_SQL = (
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
)


class Queries(ABC):
    """The query methods shared by a :class:`Store` and its transactions' handles."""

    @abstractmethod
    async def execute(self, sql: str, *args: Any) -> int:
        """Run one statement; return the number of rows it changed (0 when none or DDL)."""

    @abstractmethod
    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """Run one statement once per row of arguments, all or nothing."""

    @abstractmethod
    async def fetch_all(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        """Every row of a query, each as a dict keyed by column name."""

    async def fetch_one(self, sql: str, *args: Any) -> dict[str, Any] | None:
        """The first row of a query, or None when it has no rows."""
        rows = await self.fetch_all(sql, *args)
        return rows[0] if rows else None

    async def fetch_value(self, sql: str, *args: Any) -> Any:
        """The first column of the first row, or None when the query has no rows."""
        row = await self.fetch_one(sql, *args)
        return next(iter(row.values())) if row else None


class Store(Queries):
    """One database behind one async API; see :func:`hybridmesh.store.open_store`.

    Queries run on the store itself commit one by one (``executemany`` as one batch); group
    statements that must commit together in :meth:`transaction`. Every method may raise
    :class:`~hybridmesh.core.errors.StoreError` when the database refuses or fails; the
    message names the statement's first line.
    """

    url: str
    """The URL the store was opened with (may hold a password; show :attr:`display_url`)."""
    dialect: str
    """``"sqlite"`` or ``"postgresql"``."""

    batches_inline = False
    """Whether :meth:`batch` may finish without giving the event loop a turn (it runs on
    the loop's own thread), so group commits gather their writes first."""

    read_only = False
    """Opened with ``create=False``, for commands that only read: :meth:`upgrade` never
    changes this database's schema, and raises instead when migrations are pending."""

    missing = False
    """The database has no hybridmesh schema and was left so (``create=False``): this store
    is an empty one in memory standing in for it, so reads find nothing."""

    def __init__(
        self, url: str, migrations: Sequence[Migration], clock: Clock = SYSTEM_CLOCK
    ) -> None:
        check_migrations(migrations)
        self.url = url
        self.migrations: tuple[Migration, ...] = tuple(migrations)
        self._clock = clock

    @property
    def display_url(self) -> str:
        """:attr:`url` with any password replaced by ``***``, safe to print and log."""
        return mask_password(self.url)

    @abstractmethod
    def transaction(self) -> AbstractAsyncContextManager[Transaction]:
        """A transaction: committed when the block ends, rolled back if it raises.

        Inside the block, run queries on the yielded :class:`Transaction`, not on the store.
        """

    @abstractmethod
    async def close(self) -> None:
        """Release the connection(s). Idempotent; the store is unusable afterwards."""

    async def batch(self, statements: Sequence[Statement]) -> list[BatchResult]:
        """Run ``statements`` in order in one transaction; one result per statement.

        The same as a :meth:`transaction` running them one by one, but backends may run it
        in one round trip (SQLite: one hop to its thread), so hot writers put a whole
        change in one batch, and several changes in one (see ``group_commit``).
        """
        results: list[BatchResult] = []
        async with self.transaction() as tx:
            for statement in statements:
                if not batch_due(statement, results):
                    results.append(None)
                elif statement.rows is not None:
                    rows = batch_rows(statement, results)
                    if rows:
                        await tx.executemany(statement.sql, rows)
                    results.append(len(rows))
                elif statement.fetch:
                    results.append(await tx.fetch_all(statement.sql, *statement.args))
                else:
                    results.append(await tx.execute(statement.sql, *statement.args))
        return results

    # -- schema -------------------------------------------------------------------------

    @abstractmethod
    def _migration_transaction(self) -> AbstractAsyncContextManager[Transaction]:
        """A transaction that holds the backend's exclusive migration lock until it ends."""

    @abstractmethod
    async def _has_schema_table(self) -> bool:
        """Whether ``schema_migrations`` exists yet."""

    async def upgrade(self) -> list[Migration]:
        """Apply every pending migration, in version order; return the ones applied.

        Idempotent: a second call applies nothing and returns ``[]`` (and, finding nothing
        pending, neither locks nor writes). Concurrent calls, from this process or others,
        are serialised by a database lock, so each migration is applied exactly once. All
        pending migrations commit together or not at all.

        A :attr:`read_only` store is never changed: it raises :class:`StoreError` when
        migrations are pending, saying to run ``hybridmesh db upgrade``.
        """
        if not await self.pending_migrations():
            return []
        if self.read_only:
            raise StoreError(await self._not_upgraded())
        applied: list[Migration] = []
        async with self._migration_transaction() as tx:
            await tx.execute(SCHEMA_TABLE_SQL)
            done = {row["version"] for row in await tx.fetch_all(_APPLIED_SQL)}
            for migration in self.migrations:
                if migration.version in done:
                    continue
                for statement in migration.statements_for(self.dialect):
                    await tx.execute(statement)
                await tx.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                    migration.version,
                    migration.name,
                    self._clock.now().isoformat(),
                )
                applied.append(migration)
        return applied

    async def _not_upgraded(self) -> str:
        """Why a read-only store cannot be used as it is: its schema is missing or old."""
        version = await self.schema_version()
        latest = self.migrations[-1].version if self.migrations else 0
        where = f"{self.dialect}: the database {self.display_url}"
        if version == 0:
            state = "has no hybridmesh schema"
        else:
            state = f"is at schema version {version}, and this release reads version {latest}"
        return (
            f"{where} {state}; a command that only reads does not change it: run "
            "`hybridmesh db upgrade` first"
        )

    async def schema_version(self) -> int:
        """The highest applied migration version; 0 for a database never upgraded."""
        if not await self._has_schema_table():
            return 0
        version = await self.fetch_value("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
        return int(version)

    async def pending_migrations(self) -> list[Migration]:
        """The known migrations not yet applied to this database, in version order."""
        if not await self._has_schema_table():
            return list(self.migrations)
        done = {row["version"] for row in await self.fetch_all(_APPLIED_SQL)}
        return [m for m in self.migrations if m.version not in done]

    # -- context manager ----------------------------------------------------------------

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.display_url}>"


_APPLIED_SQL = "SELECT version FROM schema_migrations"


def batch_rows(statement: Statement, results: Sequence[BatchResult]) -> Sequence[Sequence[Any]]:
    """The rows of ``statement`` whose guard (``rows_after``) let them run."""
    rows = statement.rows or ()
    guards = statement.rows_after
    if guards is None:
        return rows
    if len(guards) != len(rows):
        raise ValueError("Statement.rows_after needs one index per row")
    return [row for row, guard in zip(rows, guards, strict=True) if results[guard]]


def batch_due(statement: Statement, results: Sequence[BatchResult]) -> bool:
    """Whether ``statement`` runs, given the results of the statements before it."""
    if statement.after is None:
        return True
    if not 0 <= statement.after < len(results):
        raise ValueError(f"Statement.after={statement.after} does not name an earlier statement")
    return bool(results[statement.after])


def check_migrations(migrations: Sequence[Migration]) -> None:
    """Raise ValueError unless versions are positive and strictly increasing."""
    previous = 0
    for migration in migrations:
        if migration.version <= previous:
            raise ValueError(
                f"migration {migration.version} {migration.name!r} is out of order: "
                f"versions must be positive and strictly increasing (previous: {previous})"
            )
        previous = migration.version


def mask_password(url: str) -> str:
    """``url`` with the password (if any) replaced by ``***``."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:  # unparseable (a bad port or IPv6 host): hide everything after "//"
        scheme, sep, _ = url.partition("//")
        return f"{scheme}{sep}***" if sep else url
    if password is None:
        return url
    userinfo, _, hostinfo = parts.netloc.rpartition("@")
    user = userinfo.partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{hostinfo}"))


def first_line(sql: str, limit: int = 200) -> str:
    """The first non-blank line of a statement, trimmed, to name it in error messages."""
    for line in sql.strip().splitlines():
        if line.strip():
            text = line.strip()
            return text if len(text) <= limit else text[: limit - 1] + "…"
    return "<empty statement>"


def store_error(dialect: str, sql: str, error: BaseException) -> StoreError:
    """A :class:`StoreError` for a failed statement; raise it ``from error``."""
    return StoreError(f"{dialect}: {error} (statement: {first_line(sql)})")


__all__ = [
    "SCHEMA_TABLE_SQL",
    "BatchResult",
    "Migration",
    "Queries",
    "Statement",
    "Store",
    "Transaction",
    "batch_due",
    "batch_rows",
    "check_migrations",
    "first_line",
    "mask_password",
    "store_error",
]
