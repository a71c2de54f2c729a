"""Fixtures of the data side's tests: a legacy database and a new service's database, on
SQLite or PostgreSQL, each the test's own."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from tests.conftest import fresh_postgres_database

from hybridmesh.data.databases import open_database
from hybridmesh.store import Store


@pytest.fixture
def second_postgres_url() -> Iterator[str]:
    """Another fresh PostgreSQL database, for the other side of a replication."""
    yield from fresh_postgres_database()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def urls(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    """A legacy database's URL and a new service's, both SQLite or both PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'legacy.db'}", f"sqlite:///{tmp_path / 'service.db'}"
    return (
        str(request.getfixturevalue("postgres_url")),
        str(request.getfixturevalue("second_postgres_url")),
    )


@pytest.fixture(
    params=[
        "sqlite-sqlite",
        pytest.param("postgresql-postgresql", marks=pytest.mark.postgres),
        pytest.param("sqlite-postgresql", marks=pytest.mark.postgres),
    ]
)
def pair_urls(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    """Source and target URLs: both SQLite, both PostgreSQL, or SQLite into PostgreSQL."""
    kinds = request.param.split("-")
    urls = []
    for index, kind in enumerate(kinds):
        if kind == "sqlite":
            urls.append(f"sqlite:///{tmp_path / f'db{index}.db'}")
        else:
            fixture = "postgres_url" if index == 0 else "second_postgres_url"
            urls.append(str(request.getfixturevalue(fixture)))
    return urls[0], urls[1]


@pytest.fixture
async def pair(pair_urls: tuple[str, str]) -> AsyncIterator[tuple[Store, Store]]:
    source = await open_database(pair_urls[0])
    target = await open_database(pair_urls[1])
    try:
        yield source, target
    finally:
        await source.close()
        await target.close()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def legacy_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A legacy database's URL, on SQLite or PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'legacy.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
async def legacy(legacy_url: str) -> AsyncIterator[Store]:
    """The legacy database, open."""
    db = await open_database(legacy_url)
    try:
        yield db
    finally:
        await db.close()
