"""Tables on real databases for the reconciliation tests, and the callables the test
replications name."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from hybridmesh.data.databases import open_database, quote
from hybridmesh.store import Store


def lower(value: Any) -> Any:
    """A transform: e-mail addresses are kept in lower case on the target."""
    return value.lower() if isinstance(value, str) else value


def display(row: Any) -> str:
    """A computed column: the name and the city."""
    return f"{row['name']} ({row['city'] or '-'})"


@asynccontextmanager
async def opened(urls: tuple[str, str]) -> AsyncIterator[tuple[Store, Store]]:
    source = await open_database(urls[0])
    target = await open_database(urls[1])
    try:
        yield source, target
    finally:
        await source.close()
        await target.close()


async def create(db: Store, table: str, columns: str, rows: Sequence[Sequence[Any]]) -> None:
    """Create ``table`` with ``columns`` (SQL) and insert ``rows``."""
    await db.execute(f"CREATE TABLE {quote(table)} ({columns})")
    if rows:
        marks = ", ".join("?" for _ in rows[0])
        await db.executemany(f"INSERT INTO {quote(table)} VALUES ({marks})", rows)


async def rows_of(db: Store, table: str, order: str) -> list[dict[str, Any]]:
    return await db.fetch_all(f"SELECT * FROM {quote(table)} ORDER BY {order}")


__all__ = ["create", "display", "lower", "opened", "rows_of"]
