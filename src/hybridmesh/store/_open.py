"""Choosing a backend from a database URL."""

from __future__ import annotations

from hybridmesh.core.errors import ConfigurationError
from hybridmesh.core.settings import DEFAULT_DATABASE_URL
from hybridmesh.store._base import Store, mask_password
from hybridmesh.store.postgres import PostgresStore
from hybridmesh.store.sqlite import SQLiteStore

ACCEPTED_URLS = (
    "sqlite:///relative/path, sqlite:////absolute/path, sqlite:///:memory:, "
    "postgresql://user@host:port/database (or postgres://)"
)


async def open_store(url: str | None = None) -> Store:
    """Open the store at ``url`` (default :data:`DEFAULT_DATABASE_URL`), not yet upgraded.

    ``sqlite:`` URLs open a :class:`SQLiteStore`, creating the file and its folder if
    needed; ``postgresql:`` and ``postgres:`` URLs open a :class:`PostgresStore` with a pool
    of 1 to 10 connections. Call :meth:`Store.upgrade` before use and :meth:`Store.close`
    after (or use the store as an ``async with`` block).

    Raises :class:`ConfigurationError` for any other URL scheme, and
    :class:`~hybridmesh.core.errors.StoreError` when the database cannot be reached.
    """
    if url is None:
        url = DEFAULT_DATABASE_URL
    scheme, colon, _ = url.partition(":")
    scheme = scheme.lower() if colon else ""
    if scheme == "sqlite":
        return await SQLiteStore.open(url)
    if scheme in ("postgresql", "postgres"):
        return await PostgresStore.open(url)
    raise ConfigurationError(
        f"unsupported database URL {mask_password(url)!r}: accepted are {ACCEPTED_URLS}"
    )


__all__ = ["ACCEPTED_URLS", "open_store"]
