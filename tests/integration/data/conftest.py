"""Pairs of databases for the data tests: SQLite and SQLite, PostgreSQL and PostgreSQL (two
databases), SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.conftest import PG_ADMIN_URL, REQUIRE_SERVICES


async def _admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN_URL, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture
def second_postgres_url() -> Iterator[str]:
    """Another fresh PostgreSQL database, beside ``postgres_url``'s, dropped after."""
    name = f"hm_test_{uuid.uuid4().hex[:12]}"
    try:
        asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    except Exception as error:
        message = f"PostgreSQL is not reachable: {type(error).__name__}: {error}"
        if REQUIRE_SERVICES:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    try:
        yield f"{PG_ADMIN_URL.rpartition('/')[0]}/{name}"
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


PAIRS = [
    "sqlite-sqlite",
    pytest.param("postgresql-postgresql", marks=pytest.mark.postgres),
    pytest.param("sqlite-postgresql", marks=pytest.mark.postgres),
]


@pytest.fixture(params=PAIRS)
def pair(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    """The URLs of a source and a target database, each pair of dialects in turn."""
    first, second = str(request.param).split("-")
    urls = []
    for index, dialect in enumerate((first, second)):
        if dialect == "sqlite":
            urls.append(f"sqlite:///{tmp_path / f'side{index}.db'}")
        elif not any(u.startswith("postgresql") for u in urls):
            urls.append(str(request.getfixturevalue("postgres_url")))
        else:
            urls.append(str(request.getfixturevalue("second_postgres_url")))
    return urls[0], urls[1]
