"""Taking a test's PostgreSQL database away from its clients and giving it back, as a server
restart would: sessions terminated, new connections refused for a while. With the
``pg_admin`` fixture (tests/conftest.py), a connection of the test's own to the server."""

from __future__ import annotations

from typing import Any


def database_name(url: str) -> str:
    return url.rsplit("/", 1)[1]


async def terminate_all(admin: Any, url: str) -> int:
    """End every session on the test's database; returns how many there were."""
    ended: int = await admin.fetchval(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        "WHERE datname = $1 AND pid <> pg_backend_pid()",
        database_name(url),
    )
    return ended


async def take_down(admin: Any, url: str) -> None:
    """End every session on the database and take no new one."""
    await admin.execute(f'ALTER DATABASE "{database_name(url)}" ALLOW_CONNECTIONS false')
    await terminate_all(admin, url)


async def bring_back(admin: Any, url: str) -> None:
    await admin.execute(f'ALTER DATABASE "{database_name(url)}" ALLOW_CONNECTIONS true')
