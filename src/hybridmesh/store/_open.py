"""Choosing a backend from a database URL."""

from __future__ import annotations

from hybridmesh.core.settings import DEFAULT_DATABASE_URL
from hybridmesh.store._base import Store
from hybridmesh.store.postgres import PostgresStore
from hybridmesh.store.sqlite import SQLiteStore
from hybridmesh.store.urls import ACCEPTED_URLS, MEMORY, parse_database_url


async def open_store(url: str | None = None, *, create: bool = True) -> Store:
    """Open the store at ``url`` (default :data:`DEFAULT_DATABASE_URL`), not yet upgraded.

    ``sqlite:`` URLs open a :class:`SQLiteStore`, creating the file and its folder if
    needed; ``postgresql:`` and ``postgres:`` URLs open a :class:`PostgresStore` with a pool
    of 1 to 10 connections. Call :meth:`Store.upgrade` before use and :meth:`Store.close`
    after (or use the store as an ``async with`` block), or open with
    :func:`open_ready_store`, which does both the upgrade and what ``create=False`` needs.
    ``create=False`` is for commands that only read: a SQLite file that does not exist is
    then not created, and the store reads as an empty database (:attr:`Store.missing`); on
    either backend the store is :attr:`Store.read_only`, so :meth:`Store.upgrade` does not
    change an existing database's schema.

    Raises :class:`~hybridmesh.core.errors.InvalidSettingError` (a ``ConfigurationError``)
    for a URL that is not one of the forms in :mod:`hybridmesh.store.urls`, and
    :class:`~hybridmesh.core.errors.StoreError` when the database cannot be reached.
    """
    parsed = parse_database_url(DEFAULT_DATABASE_URL if url is None else url)
    if parsed.dialect == "sqlite":
        return await SQLiteStore.open(parsed.url, create=create)
    return await PostgresStore.open(parsed.url, create=create)


async def open_ready_store(url: str | None = None, *, create: bool = True) -> Store:
    """Open the store at ``url`` as :func:`open_store` does, with its schema ready to use.

    With ``create`` (the default) pending migrations are applied first. Without it, for
    commands that only read, the database is not written to at all, on either backend:

    - one without the hybridmesh schema (a SQLite file that does not exist, a PostgreSQL
      database or schema without its tables) reads as empty: the store returned is an empty
      one in memory (:attr:`Store.missing`), and the database is left as it was;
    - one whose schema is older than this release's raises
      :class:`~hybridmesh.core.errors.StoreError` saying to run ``hybridmesh db upgrade``
      (the tables a release reads may not be there yet);
    - one that is up to date is read as it is.
    """
    store = await open_store(url, create=create)
    try:
        if not create and not store.missing and await store.schema_version() == 0:
            await store.close()
            store = await _empty_store()
        await store.upgrade()
    except BaseException:
        await store.close()
        raise
    return store


async def _empty_store() -> Store:
    """An empty in-memory store standing in for a database without the schema."""
    store = await SQLiteStore.open(f"sqlite:///{MEMORY}")
    store.missing = True
    return store


__all__ = ["ACCEPTED_URLS", "open_ready_store", "open_store"]
