"""The state store an action or probe reads: the one named, or the settings' default."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from hybridmesh.core.settings import get_settings
from hybridmesh.store import Store, open_store


@asynccontextmanager
async def opened(database_url: str | None) -> AsyncIterator[Store]:
    """``database_url`` (default ``HYBRIDMESH_DATABASE_URL``), open for one activity: an
    activity runs on its own, in whatever process the Chaos Toolkit gives it."""
    store = await open_store(database_url or get_settings().database_url)
    try:
        yield store
    finally:
        await store.close()
