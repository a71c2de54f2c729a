"""A fresh PostgreSQL database for one benchmark section, dropped afterwards."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator

#: The local server's maintenance database, and the URL of a database on it.
PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
PG_URL = "postgresql://postgres@127.0.0.1:5432/{database}"


@contextlib.asynccontextmanager
async def fresh_database() -> AsyncIterator[str]:
    """Create a database with a random name, yield its URL, drop it (forcibly) after."""
    import asyncpg

    database = f"hm_bench_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(PG_ADMIN_URL)
    try:
        await admin.execute(f'CREATE DATABASE "{database}"')
        try:
            yield PG_URL.format(database=database)
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    finally:
        await admin.close()


__all__ = ["PG_ADMIN_URL", "PG_URL", "fresh_database"]
