"""Choosing a backend from a database URL."""

from __future__ import annotations

from hybridmesh.core.settings import DEFAULT_DATABASE_URL
from hybridmesh.store._base import Store
from hybridmesh.store.postgres import PostgresStore
from hybridmesh.store.sqlite import SQLiteStore
from hybridmesh.store.urls import ACCEPTED_URLS, parse_database_url


async def open_store(url: str | None = None, *, create: bool = True) -> Store:
    """Open the store at ``url`` (default :data:`DEFAULT_DATABASE_URL`), not yet upgraded.

    ``sqlite:`` URLs open a :class:`SQLiteStore`, creating the file and its folder if
    needed; ``postgresql:`` and ``postgres:`` URLs open a :class:`PostgresStore` with a pool
    of 1 to 10 connections. Call :meth:`Store.upgrade` before use and :meth:`Store.close`
    after (or use the store as an ``async with`` block). ``create=False`` is for commands
    that only read: a SQLite file that does not exist is then not created, and the store
    reads as an empty database (:attr:`SQLiteStore.missing`).

    Raises :class:`~hybridmesh.core.errors.InvalidSettingError` (a ``ConfigurationError``)
    for a URL that is not one of the forms in :mod:`hybridmesh.store.urls`, and
    :class:`~hybridmesh.core.errors.StoreError` when the database cannot be reached.
    """
    parsed = parse_database_url(DEFAULT_DATABASE_URL if url is None else url)
    if parsed.dialect == "sqlite":
        return await SQLiteStore.open(parsed.url, create=create)
    return await PostgresStore.open(parsed.url)


__all__ = ["ACCEPTED_URLS", "open_store"]
