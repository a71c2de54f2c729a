"""The databases the data side works on, that are not hybridmesh's own: the legacy system's
and the new services'. They are opened as :class:`~hybridmesh.store.Store` objects without
hybridmesh's schema, and read for the shape of their tables.
"""

from __future__ import annotations

from dataclasses import dataclass

from hybridmesh.core.errors import ConfigurationError
from hybridmesh.store import PostgresStore, SQLiteStore, Store
from hybridmesh.store.urls import parse_database_url


async def open_database(url: str) -> Store:
    """An application database at ``url`` (``sqlite:`` or ``postgresql:``), with no
    hybridmesh migrations: the tables hybridmesh adds to it (change capture's) are created by
    the code that needs them. Close it after use."""
    parsed = parse_database_url(url)
    if parsed.dialect == "sqlite":
        return await SQLiteStore.open(parsed.url, migrations=())
    return await PostgresStore.open(parsed.url, migrations=())


@dataclass(frozen=True)
class TableShape:
    """A table's columns in order, their declared types, and its primary key."""

    name: str
    columns: tuple[str, ...]
    types: dict[str, str]
    key: tuple[str, ...]


def quote(identifier: str) -> str:
    """``identifier`` as a quoted SQL identifier (the same on SQLite and PostgreSQL)."""
    return '"' + identifier.replace('"', '""') + '"'


async def table_shape(db: Store, table: str) -> TableShape:
    """The shape of ``table``; :class:`ConfigurationError` when it does not exist or has no
    primary key (rows could not be matched between two databases without one)."""
    if db.dialect == "sqlite":
        rows = await db.fetch_all(f"PRAGMA table_info({quote(table)})")
        columns = tuple(str(r["name"]) for r in rows)
        types = {str(r["name"]): str(r["type"] or "").lower() for r in rows}
        key = tuple(str(r["name"]) for r in sorted(rows, key=lambda r: r["pk"]) if r["pk"])
    else:
        rows = await db.fetch_all(
            "SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type, "
            # int2vector arrays count from 0.
            "COALESCE(array_position(i.indkey::int2[], a.attnum) + 1, 0) AS pk "
            "FROM pg_attribute a LEFT JOIN pg_index i "
            "ON i.indrelid = a.attrelid AND i.indisprimary "
            "WHERE a.attrelid = to_regclass(?) AND a.attnum > 0 AND NOT a.attisdropped "
            "ORDER BY a.attnum",
            quote(table),
        )
        columns = tuple(str(r["name"]) for r in rows)
        types = {str(r["name"]): str(r["type"]) for r in rows}
        key = tuple(str(r["name"]) for r in sorted(rows, key=lambda r: r["pk"]) if r["pk"])
    if not columns:
        raise ConfigurationError(f"{db.display_url}: no table {table!r}")
    if not key:
        raise ConfigurationError(
            f"{db.display_url}: table {table!r} has no primary key; name its key columns"
        )
    return TableShape(table, columns, types, key)


__all__ = ["TableShape", "open_database", "quote", "table_shape"]
