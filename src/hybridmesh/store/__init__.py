"""The state store: one async API over SQLite and PostgreSQL, with versioned migrations.

::

    store = await open_store("sqlite:///.hybridmesh/mesh.db")   # or postgresql://…
    await store.upgrade()
    async with store.transaction() as tx:
        await tx.execute("INSERT INTO services (name, ...) VALUES (?, ...)", "orders", ...)
    rows = await store.fetch_all("SELECT name FROM services WHERE owner = ?", "team-a")
    await store.close()

:func:`open_ready_store` opens and upgrades in one step; with ``create=False`` (commands
that only read) it writes nothing, and a database without the schema reads as empty.
SQL uses ``?`` placeholders on every backend. Failures raise
:class:`~hybridmesh.core.errors.StoreError`; bad URLs raise
:class:`~hybridmesh.core.errors.ConfigurationError`.
"""

from hybridmesh.store._base import BatchResult, Migration, Statement, Store, Transaction
from hybridmesh.store._open import open_ready_store, open_store
from hybridmesh.store.migrations import MIGRATIONS
from hybridmesh.store.postgres import PostgresStore
from hybridmesh.store.sqlite import SQLiteStore

__all__ = [
    "MIGRATIONS",
    "BatchResult",
    "Migration",
    "PostgresStore",
    "SQLiteStore",
    "Statement",
    "Store",
    "Transaction",
    "open_ready_store",
    "open_store",
]
