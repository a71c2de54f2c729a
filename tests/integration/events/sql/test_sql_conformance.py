"""The conformance suite on the SQL log, on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from tests.conformance.event_backend import EventBackendConformance, MakeBackend

from hybridmesh.events.backend import EventBackend
from hybridmesh.events.backends.sql import SqlEventBackend


@pytest.fixture
async def backend(database_url: str) -> AsyncIterator[EventBackend]:
    opened = await SqlEventBackend.open(database_url)
    await opened.start()
    yield opened
    await opened.close()


@pytest.fixture
async def make_backend(database_url: str) -> AsyncIterator[MakeBackend]:
    made: list[SqlEventBackend] = []

    async def make() -> EventBackend:
        # Its own store on the same database, as a second process would open it.
        another = await SqlEventBackend.open(database_url)
        await another.start()
        made.append(another)
        return another

    yield make
    for opened in made:
        await opened.close()


class TestSqlBackend(EventBackendConformance):
    pass
