"""Fixtures for the SQL event log tests: backends on one fresh database, with a fake clock."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from hybridmesh.core.clock import FakeClock
from hybridmesh.events.backends.sql import SqlEventBackend

MakeSql = Callable[..., Awaitable[SqlEventBackend]]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def make_sql(database_url: str, clock: FakeClock) -> AsyncIterator[MakeSql]:
    """Open another started backend on the test's database (its own store, as another
    process would have); every one shares ``clock`` unless given its own."""
    opened: list[SqlEventBackend] = []

    async def make(**options: Any) -> SqlEventBackend:
        options.setdefault("clock", clock)
        backend = await SqlEventBackend.open(database_url, **options)
        await backend.start()
        opened.append(backend)
        return backend

    yield make
    for backend in opened:
        await backend.close()


@pytest.fixture
async def sql(make_sql: MakeSql) -> SqlEventBackend:
    return await make_sql()
