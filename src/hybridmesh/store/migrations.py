"""The schema of the state store, as an ordered list of migrations.

Append new migrations with the next version number; never edit or reorder one that has
shipped, since databases record which versions they have applied. Keep the SQL portable
between SQLite and PostgreSQL: TEXT, INTEGER, BIGINT and DOUBLE PRECISION columns, no
dialect-only syntax. Where a dialect needs its own form (an auto-incrementing key), give it
in :attr:`Migration.dialect_statements`.
"""

from __future__ import annotations

from hybridmesh.store._base import Migration, check_migrations


def _event_log(seq_column: str) -> str:
    return f"""
    CREATE TABLE event_log (
        seq {seq_column},
        event_id TEXT NOT NULL,
        source TEXT NOT NULL,
        type TEXT NOT NULL,
        partition INTEGER NOT NULL,
        only_group TEXT, -- set for a replay: only this group receives it, and no dedupe
        body TEXT NOT NULL, -- the CloudEvent, structured-mode JSON
        published_at DOUBLE PRECISION NOT NULL -- epoch seconds
    )
    """


# The event log of backends/sql.py. Times are epoch seconds from the injected clock; seq
# never goes back, even when retention deletes the newest rows (AUTOINCREMENT, identity).
_EVENTS = (
    # Dedupe on (source, id); replays (only_group set) bypass it.
    "CREATE UNIQUE INDEX event_log_dedupe ON event_log (source, event_id) WHERE only_group IS NULL",
    "CREATE INDEX event_log_partition ON event_log (partition, seq)",
    """
    CREATE TABLE event_groups (
        name TEXT PRIMARY KEY,
        pattern TEXT NOT NULL,
        start TEXT NOT NULL,
        max_deliveries INTEGER NOT NULL,
        ack_wait DOUBLE PRECISION NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL
    )
    """,
    """
    CREATE TABLE event_positions (
        group_name TEXT NOT NULL REFERENCES event_groups (name) ON DELETE CASCADE,
        partition INTEGER NOT NULL,
        position BIGINT NOT NULL, -- the group has dealt with every seq up to this one
        head_attempts INTEGER NOT NULL DEFAULT 0, -- deliveries so far of the next event
        not_before DOUBLE PRECISION NOT NULL DEFAULT 0, -- a retry waits until then
        lease_owner TEXT, -- the consumer holding the partition
        lease_token TEXT, -- unique per lease: a settle must present it
        lease_until DOUBLE PRECISION,
        PRIMARY KEY (group_name, partition)
    )
    """,
    """
    CREATE TABLE event_dead_letters (
        id TEXT PRIMARY KEY,
        group_name TEXT NOT NULL,
        event_id TEXT,
        source TEXT,
        type TEXT,
        reason TEXT NOT NULL,
        attempts INTEGER NOT NULL,
        body TEXT NOT NULL,
        failed_at DOUBLE PRECISION NOT NULL,
        replayed_at DOUBLE PRECISION
    )
    """,
    "CREATE INDEX event_dead_letters_group ON event_dead_letters (group_name, failed_at)",
)


def _outbox(seq: str) -> str:
    # Events written with business rows in one transaction; events/outbox.py relays them.
    return f"""
    CREATE TABLE event_outbox (
        seq {seq},
        event_id TEXT NOT NULL,
        source TEXT NOT NULL,
        type TEXT NOT NULL,
        body TEXT NOT NULL, -- the event, structured JSON
        created_at TEXT NOT NULL
    )
    """


# Receipts of idempotent consumers (events/idempotency.py): one row per handled event.
_RECEIPTS = (
    """
    CREATE TABLE event_receipts (
        consumer TEXT NOT NULL,
        source TEXT NOT NULL,
        event_id TEXT NOT NULL,
        handled_at TEXT NOT NULL,
        PRIMARY KEY (consumer, source, event_id)
    )
    """,
    "CREATE INDEX event_receipts_age ON event_receipts (consumer, handled_at)",
)

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
    Migration(
        version=2,
        name="events",
        statements=(_event_log("INTEGER PRIMARY KEY AUTOINCREMENT"), *_EVENTS),
        dialect_statements={
            "postgresql": (_event_log("BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY"), *_EVENTS),
        },
    ),
    Migration(
        version=3,
        name="outbox and receipts",
        statements=(_outbox("INTEGER PRIMARY KEY AUTOINCREMENT"), *_RECEIPTS),
        dialect_statements={
            "postgresql": (_outbox("BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY"), *_RECEIPTS),
        },
    ),
)
"""Every migration, in version order. :meth:`Store.upgrade` applies the missing ones."""

check_migrations(MIGRATIONS)

__all__ = ["MIGRATIONS"]
