"""Shared fixtures.

PostgreSQL tests connect to ``HYBRIDMESH_TEST_POSTGRES_URL`` (default
``postgresql://postgres@127.0.0.1:5432/postgres``), create a database of their own and drop
it afterwards. Redis tests use ``HYBRIDMESH_TEST_REDIS_URL`` (default
``redis://127.0.0.1:6379/0``) and remove the keys they made. When a server is unreachable
its tests skip, unless ``HYBRIDMESH_REQUIRE_SERVICES=1`` is set (as CI does), in which case
they fail.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

PG_ADMIN_URL = os.environ.get(
    "HYBRIDMESH_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("HYBRIDMESH_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
REQUIRE_SERVICES = os.environ.get("HYBRIDMESH_REQUIRE_SERVICES", "") not in ("", "0", "false")


def _service_unavailable(what: str, error: BaseException) -> None:
    message = f"{what} is not reachable: {type(error).__name__}: {error}"
    if REQUIRE_SERVICES:
        pytest.fail(f"{message} (HYBRIDMESH_REQUIRE_SERVICES is set)", pytrace=False)
    pytest.skip(message)


async def _admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN_URL, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def _database_url(name: str) -> str:
    base, _, _ = PG_ADMIN_URL.rpartition("/")
    return f"{base}/{name}"


def fresh_postgres_database() -> Iterator[str]:
    """A fresh, empty PostgreSQL database's URL, dropped afterwards: the body of a fixture
    (a test that needs two databases has two fixtures of it)."""
    name = f"hm_test_{uuid.uuid4().hex[:12]}"
    try:
        asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    except Exception as error:
        _service_unavailable("PostgreSQL", error)
    try:
        yield _database_url(name)
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A URL to a fresh, empty PostgreSQL database, dropped after the test."""
    yield from fresh_postgres_database()


@pytest.fixture
async def pg_admin(postgres_url: str) -> AsyncIterator[object]:
    """A connection of the test's own to the PostgreSQL server, to act on ``postgres_url``'s
    database from the server's side (see tests/pg_outage.py); it lets connections in again
    at the end, whatever the test did."""
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN_URL)
    try:
        yield conn
    finally:
        name = postgres_url.rsplit("/", 1)[1]
        await conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        await conn.close()


@pytest.fixture
async def redis_url() -> str:
    """The test Redis server's URL, once it answers a PING."""
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(REDIS_URL, socket_connect_timeout=5)
    try:
        await client.ping()
    except Exception as error:
        _service_unavailable("Redis", error)
    finally:
        await client.aclose()
    return REDIS_URL


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A URL to a new SQLite file in the test's temporary folder."""
    return f"sqlite:///{tmp_path / 'mesh.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each store test runs once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'mesh.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[object]:
    """An open, upgraded store on each database."""
    from hybridmesh.store import open_store

    s = await open_store(database_url)
    await s.upgrade()
    try:
        yield s
    finally:
        await s.close()
