"""The store contract on PostgreSQL, and what only PostgreSQL does."""

from __future__ import annotations

import pytest
from tests.conformance.store import StoreConformance

from hybridmesh.store import open_store

pytestmark = pytest.mark.postgres


@pytest.fixture
def database_url(postgres_url: str) -> str:
    return postgres_url


class TestPostgresStore(StoreConformance):
    pass


async def test_execution_pages_leave_room_for_in_place_updates(postgres_url: str) -> None:
    async with await open_store(postgres_url) as store:
        await store.upgrade()
        options = await store.fetch_value(
            "SELECT reloptions FROM pg_class WHERE relname = 'orch_executions'"
        )
    assert "fillfactor=50" in options
