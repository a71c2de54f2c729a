"""The schema of the state store, as an ordered list of migrations.

Append new migrations with the next version number; never edit or reorder one that has
shipped, since databases record which versions they have applied. Keep the SQL portable
between SQLite and PostgreSQL: TEXT, INTEGER and BIGINT columns, no dialect-only syntax.
"""

from __future__ import annotations

from hybridmesh.store._base import Migration, check_migrations

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        version=1,
        name="services",
        statements=(
            """
            CREATE TABLE services (
                name TEXT PRIMARY KEY,
                architecture TEXT NOT NULL,
                version TEXT NOT NULL,
                base_url TEXT NOT NULL,
                owner TEXT,
                lifecycle TEXT,
                definition TEXT NOT NULL, -- the full service definition, as JSON
                source TEXT,
                updated_at TEXT NOT NULL
            )
            """,
        ),
    ),
)
"""Every migration, in version order. :meth:`Store.upgrade` applies the missing ones."""

check_migrations(MIGRATIONS)

__all__ = ["MIGRATIONS"]
