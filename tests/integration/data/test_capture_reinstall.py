"""Installing capture again, as every replicator does when it starts, while the legacy
application is in the middle of a transaction."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from hybridmesh.data.capture import install_capture, read_changes
from hybridmesh.data.databases import open_database

pytestmark = pytest.mark.postgres


async def test_installing_again_waits_for_no_application_transaction(postgres_url: str) -> None:
    """A transaction that changed a captured row holds that table and the change log; a
    second install must not lock either (replacing the trigger would wait for that
    transaction, and deadlock with the next statement it makes)."""
    db = await open_database(postgres_url)
    app = await asyncpg.connect(postgres_url)
    try:
        await db.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
        await db.execute("INSERT INTO customers VALUES (1, 'Ada'), (2, 'Bo')")
        await install_capture(db, ["customers"])
        transaction = app.transaction()
        await transaction.start()
        await app.execute("UPDATE customers SET name = 'Ada Byron' WHERE id = 1")

        await asyncio.wait_for(install_capture(db, ["customers"]), 20)

        await app.execute("UPDATE customers SET name = 'Bo Ng' WHERE id = 2")
        await transaction.commit()
        changes = await read_changes(db, 0)
        assert [(c.key, c.after and c.after["name"]) for c in changes] == [
            ((1,), "Ada Byron"),
            ((2,), "Bo Ng"),
        ]
    finally:
        await app.close()
        await db.close()


async def test_installing_with_another_key_replaces_the_trigger(postgres_url: str) -> None:
    db = await open_database(postgres_url)
    try:
        await db.execute("CREATE TABLE lines (id INTEGER PRIMARY KEY, code TEXT NOT NULL)")
        await install_capture(db, ["lines"])
        await db.execute("ALTER TABLE lines DROP CONSTRAINT lines_pkey")
        await db.execute("ALTER TABLE lines ADD PRIMARY KEY (code)")
        await install_capture(db, ["lines"])
        await db.execute("INSERT INTO lines VALUES (7, 'L-7')")

        (change,) = await read_changes(db, 0)
        assert change.key == ("L-7",)
    finally:
        await db.close()
