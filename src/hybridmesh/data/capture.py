"""Change capture from a legacy database, by triggers into a change table.

:func:`install_capture` adds, to the legacy database, a change table and one trigger per
captured table (SQLite: three, one per operation; PostgreSQL: one row trigger calling one
function). Every insert, update and delete then writes a row to ``hm_cdc_changes`` in the
same transaction as the change itself: the table, the key, the operation, the row's before
and after images as JSON, the time and, when hybridmesh itself made the change (replication
applying into this database), the name of the replication, so it is not carried back.

Triggers work on both databases, with any privileges that can create a trigger, on managed
servers and old versions alike, and need no server setting. PostgreSQL's logical decoding
needs ``wal_level = logical`` and a replication slot, which this project's own servers do not
run with and many managed databases refuse; it is not implemented (see docs/data.md).

**Commit order.** A change's ``seq`` is its place in the log. SQLite has one writer at a time,
so the row id, given as the trigger runs, is already commit order. On PostgreSQL the id is
given when the trigger runs, and transactions commit in another order; a reader that went by
id could pass a change that commits later with a smaller id. So ids there only order changes
inside a pass: a pass (:func:`sequence_changes`, run by every reader before it reads, and
serialised on a lock) gives ``seq`` numbers to every committed change that has none, in id
order. A change that commits after a pass gets its number in a later pass, so a reader that
has read up to ``seq`` N never sees a new change below N. Two changes to one row are in the
right order: the second waited for the first's commit (the row lock), so it has the larger
id, and it cannot be numbered in a pass before the first's.

**Consumers** (the event bridge, each replication) keep their position in
``hm_cdc_consumers``; :func:`prune` deletes the changes every consumer has passed, and
:func:`backlog` counts those not yet read by the slowest.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from hybridmesh.data.databases import TableShape, quote, table_shape
from hybridmesh.store import Store, Transaction

Operation = Literal["created", "updated", "deleted", "watermark"]

_OPS: dict[str, Operation] = {"c": "created", "u": "updated", "d": "deleted", "w": "watermark"}

CHANGES = "hm_cdc_changes"
CONSUMERS = "hm_cdc_consumers"
#: SQLite only: the replication writing in the current transaction (PostgreSQL uses the
#: transaction-local setting ``hybridmesh.origin`` instead).
SESSION = "hm_cdc_session"
#: PostgreSQL only: the last ``seq`` given, one row, locked by each numbering pass.
COUNTER = "hm_cdc_counter"

_SQLITE_NOW = "((julianday('now') - 2440587.5) * 86400.0)"


@dataclass(frozen=True, slots=True)
class Change:
    """One captured change, as a consumer reads it."""

    seq: int
    table: str
    #: The key's values, in the key columns' order (a watermark: its label).
    key: tuple[Any, ...]
    op: Operation
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    #: When the change was made, in seconds since the epoch (the database's clock).
    at: float
    #: The replication that made it, or None for the application's own writes.
    origin: str | None

    @property
    def key_text(self) -> str:
        """The key as compact JSON: the same text for the same key on either database."""
        return key_text(self.key)


def key_text(key: Sequence[Any]) -> str:
    return json.dumps(list(key), separators=(",", ":"), default=str)


# ---------------------------------------------------------------------------- installing


async def install_capture(db: Store, tables: Iterable[str]) -> dict[str, TableShape]:
    """Create the change log in ``db`` and capture changes of ``tables`` from now on.

    Idempotent: run again (after a table gained columns, say), it replaces the triggers.
    On PostgreSQL what is in place already is left alone (the trigger there reads whole
    rows, so only another key calls for a new one): dropping a trigger, or building an index
    that exists, locks the table against writes, and a replicator starting again must
    neither wait for the application's transactions nor deadlock with them.

    Returns each table's shape. Raises ConfigurationError for a table that does not exist or
    has no primary key.
    """
    shapes = {table: await table_shape(db, table) for table in tables}
    # Two transactions, so that none holds a lock on the change table while it waits for
    # a captured table: on PostgreSQL, building a missing index locks the change table, and
    # replacing a trigger waits for the application's transactions on the table, whose
    # triggers write into the change table: in one transaction, capturing under writes
    # deadlocks with them.
    async with db.transaction() as tx:
        for statement in _log_tables(db.dialect):
            await tx.execute(statement)
        if db.dialect == "postgresql":
            for index, statement in _LOG_INDEXES.items():
                # CREATE INDEX IF NOT EXISTS locks the table even when the index is there.
                if await tx.fetch_value("SELECT to_regclass(?)", index) is None:
                    await tx.execute(statement)
    async with db.transaction() as tx:
        for shape in shapes.values():
            if db.dialect == "postgresql" and await _trigger_in_place(tx, shape):
                continue
            for statement in _triggers(db.dialect, shape):
                await tx.execute(statement)
    return shapes


async def _trigger_in_place(tx: Transaction, shape: TableShape) -> bool:
    """PostgreSQL: whether ``shape``'s table has its capture trigger, enabled, on the same
    key columns."""
    args = await tx.fetch_value(
        "SELECT t.tgargs FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid "
        "WHERE t.tgrelid = to_regclass(?) AND t.tgname = ? AND p.proname = 'hm_cdc_capture' "
        "AND t.tgenabled <> 'D'",
        quote(shape.name),
        _trigger(shape.name, "x"),
    )
    expected = b"".join(column.encode() + b"\x00" for column in shape.key)
    return isinstance(args, bytes) and args == expected


async def uninstall_capture(db: Store, tables: Iterable[str]) -> None:
    """Stop capturing ``tables`` (their triggers are dropped); the log stays for its
    consumers to finish reading."""
    async with db.transaction() as tx:
        for table in tables:
            if db.dialect == "sqlite":
                for op in ("c", "u", "d"):
                    await tx.execute(f"DROP TRIGGER IF EXISTS {quote(_trigger(table, op))}")
            else:
                await tx.execute(
                    f"DROP TRIGGER IF EXISTS {quote(_trigger(table, 'x'))} ON {quote(table)}"
                )


async def captured_tables(db: Store) -> list[str]:
    """The tables of ``db`` whose changes are captured now."""
    if db.dialect == "sqlite":
        rows = await db.fetch_all(
            "SELECT DISTINCT tbl_name FROM sqlite_master WHERE type = 'trigger' "
            "AND name LIKE 'hm_cdc_%' ORDER BY tbl_name"
        )
        return [str(r["tbl_name"]) for r in rows]
    rows = await db.fetch_all(
        "SELECT DISTINCT c.relname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
        "WHERE t.tgname LIKE 'hm_cdc_%' AND pg_table_is_visible(c.oid) ORDER BY c.relname"
    )
    return [str(r["relname"]) for r in rows]


def _trigger(table: str, op: str) -> str:
    return f"hm_cdc_{table}_{op}"


def _log_tables(dialect: str) -> list[str]:
    if dialect == "sqlite":
        return [
            f"CREATE TABLE IF NOT EXISTS {CHANGES} (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
            "tbl TEXT, key TEXT NOT NULL, op TEXT NOT NULL, before TEXT, after TEXT, "
            "at REAL NOT NULL, origin TEXT)",
            f"CREATE TABLE IF NOT EXISTS {CONSUMERS} (name TEXT PRIMARY KEY, "
            "position INTEGER NOT NULL, updated_at REAL NOT NULL)",
            f"CREATE TABLE IF NOT EXISTS {SESSION} (origin TEXT NOT NULL)",
        ]
    return [
        f"CREATE TABLE IF NOT EXISTS {CHANGES} (id BIGSERIAL PRIMARY KEY, seq BIGINT, "
        "tbl TEXT, key TEXT NOT NULL, op TEXT NOT NULL, before TEXT, after TEXT, "
        "at DOUBLE PRECISION NOT NULL, origin TEXT)",
        f"CREATE TABLE IF NOT EXISTS {CONSUMERS} (name TEXT PRIMARY KEY, "
        "position BIGINT NOT NULL, updated_at DOUBLE PRECISION NOT NULL)",
        f"CREATE TABLE IF NOT EXISTS {COUNTER} (id INTEGER PRIMARY KEY CHECK (id = 1), "
        "last_seq BIGINT NOT NULL)",
        f"INSERT INTO {COUNTER} (id, last_seq) VALUES (1, 0) ON CONFLICT (id) DO NOTHING",
        # One function for every captured table; the key columns come as trigger arguments.
        f"""CREATE OR REPLACE FUNCTION hm_cdc_capture() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  old_row jsonb := CASE WHEN TG_OP <> 'INSERT' THEN to_jsonb(OLD) END;
  new_row jsonb := CASE WHEN TG_OP <> 'DELETE' THEN to_jsonb(NEW) END;
  key_row jsonb := COALESCE(new_row, old_row);
BEGIN
  INSERT INTO {CHANGES} (tbl, key, op, before, after, at, origin) VALUES (
    TG_TABLE_NAME,
    (SELECT jsonb_agg(key_row -> k ORDER BY n)
       FROM unnest(TG_ARGV) WITH ORDINALITY AS a(k, n))::text,
    CASE TG_OP WHEN 'INSERT' THEN 'c' WHEN 'UPDATE' THEN 'u' ELSE 'd' END,
    old_row::text, new_row::text,
    extract(epoch FROM clock_timestamp()),
    NULLIF(current_setting('hybridmesh.origin', true), ''));
  RETURN NULL;
END $$""",
    ]


#: PostgreSQL: the change log's indexes, by name; each built only when it is missing.
_LOG_INDEXES = {
    f"{CHANGES}_seq": f"CREATE UNIQUE INDEX IF NOT EXISTS {CHANGES}_seq ON {CHANGES} (seq)",
    f"{CHANGES}_unnumbered": (
        f"CREATE INDEX IF NOT EXISTS {CHANGES}_unnumbered ON {CHANGES} (id) WHERE seq IS NULL"
    ),
}


def _triggers(dialect: str, shape: TableShape) -> list[str]:
    table = quote(shape.name)
    if dialect == "postgresql":
        name = quote(_trigger(shape.name, "x"))
        args = ", ".join("'" + column.replace("'", "''") + "'" for column in shape.key)
        return [
            f"DROP TRIGGER IF EXISTS {name} ON {table}",
            f"CREATE TRIGGER {name} AFTER INSERT OR UPDATE OR DELETE ON {table} "
            f"FOR EACH ROW EXECUTE FUNCTION hm_cdc_capture({args})",
        ]
    literal = "'" + shape.name.replace("'", "''") + "'"
    statements = []
    for op, event, images in (
        ("c", "INSERT", ("NULL", "NEW")),
        ("u", "UPDATE", ("OLD", "NEW")),
        ("d", "DELETE", ("OLD", "NULL")),
    ):
        row = "OLD" if op == "d" else "NEW"
        key = "json_array(" + ", ".join(f"{row}.{quote(c)}" for c in shape.key) + ")"
        before, after = (_sqlite_image(shape, image) for image in images)
        name = quote(_trigger(shape.name, op))
        statements += [
            f"DROP TRIGGER IF EXISTS {name}",
            f"CREATE TRIGGER {name} AFTER {event} ON {table} BEGIN "
            f"INSERT INTO {CHANGES} (tbl, key, op, before, after, at, origin) VALUES "
            f"({literal}, {key}, '{op}', {before}, {after}, {_SQLITE_NOW}, "
            f"(SELECT origin FROM {SESSION} LIMIT 1)); END",
        ]
    return statements


def _sqlite_image(shape: TableShape, row: str) -> str:
    if row == "NULL":
        return "NULL"
    pairs = ", ".join(
        "'" + column.replace("'", "''") + f"', {row}.{quote(column)}" for column in shape.columns
    )
    return f"json_object({pairs})"


# ---------------------------------------------------------------------------- origin


async def mark_origin(tx: Transaction, dialect: str, origin: str) -> None:
    """Mark the changes ``tx`` makes as made by ``origin`` (a replication's name); call
    :func:`clear_origin` before it commits. Changes so marked are not carried back."""
    if dialect == "sqlite":
        await tx.execute(f"INSERT INTO {SESSION} (origin) VALUES (?)", origin)
    else:
        await tx.execute("SELECT set_config('hybridmesh.origin', ?, true)", origin)


async def clear_origin(tx: Transaction, dialect: str) -> None:
    if dialect == "sqlite":
        await tx.execute(f"DELETE FROM {SESSION}")


async def prepare_origin(db: Store) -> None:
    """Make :func:`mark_origin` work on ``db`` (a replication's target), captured or not."""
    if db.dialect == "sqlite":
        await db.execute(f"CREATE TABLE IF NOT EXISTS {SESSION} (origin TEXT NOT NULL)")


# ---------------------------------------------------------------------------- reading


async def sequence_changes(db: Store) -> int:
    """Number the committed changes that have no ``seq`` yet (PostgreSQL; a no-op on
    SQLite), in id order; returns the last ``seq`` given (the head of the log)."""
    if db.dialect == "sqlite":
        head = await db.fetch_value(f"SELECT MAX(seq) FROM {CHANGES}")
        if head is None:
            head = await db.fetch_value("SELECT seq FROM sqlite_sequence WHERE name = ?", CHANGES)
        return int(head or 0)
    async with db.transaction() as tx:
        # The lock is taken first, in a statement of its own: the numbering statement's
        # snapshot is then taken after any other pass has committed, so it cannot number
        # a change twice.
        last = int(await tx.fetch_value(f"SELECT last_seq FROM {COUNTER} WHERE id = 1 FOR UPDATE"))
        numbered = await tx.execute(
            f"UPDATE {CHANGES} c SET seq = ? + p.n FROM (SELECT id, row_number() OVER "
            f"(ORDER BY id) AS n FROM {CHANGES} WHERE seq IS NULL) p WHERE c.id = p.id",
            last,
        )
        if numbered:
            last += numbered
            await tx.execute(f"UPDATE {COUNTER} SET last_seq = ? WHERE id = 1", last)
    return last


async def read_changes(db: Store, after: int, limit: int = 500) -> list[Change]:
    """The changes after position ``after``, in commit order, at most ``limit``."""
    await sequence_changes(db)
    rows = await db.fetch_all(
        f"SELECT seq, tbl, key, op, before, after, at, origin FROM {CHANGES} "
        "WHERE seq > ? ORDER BY seq LIMIT ?",
        after,
        limit,
    )
    return [_change(row) for row in rows]


def _change(row: dict[str, Any]) -> Change:
    before, after = row["before"], row["after"]
    return Change(
        seq=int(row["seq"]),
        table=str(row["tbl"] or ""),
        key=tuple(json.loads(row["key"])),
        op=_OPS[row["op"]],
        before=None if before is None else json.loads(before),
        after=None if after is None else json.loads(after),
        at=float(row["at"]),
        origin=row["origin"],
    )


async def write_watermark(db: Store, label: str) -> int:
    """Write a watermark into the log and return its position (numbered at once, so every
    change committed after this call comes after it)."""
    async with db.transaction() as tx:
        now = time.time()
        await tx.execute(
            f"INSERT INTO {CHANGES} (tbl, key, op, at) VALUES (NULL, ?, 'w', ?)",
            key_text([label]),
            now,
        )
    if db.dialect == "postgresql":
        await sequence_changes(db)
    seq = await db.fetch_value(
        f"SELECT seq FROM {CHANGES} WHERE op = 'w' AND key = ? ORDER BY seq DESC LIMIT 1",
        key_text([label]),
    )
    return int(seq)


# ---------------------------------------------------------------------------- consumers


async def register_consumer(db: Store, name: str, position: int | None = None) -> int:
    """Make ``name`` a consumer of the log (at ``position``, or the head when it is new);
    returns its position. Changes it has not read are kept for it."""
    current = await db.fetch_value(f"SELECT position FROM {CONSUMERS} WHERE name = ?", name)
    if current is not None and position is None:
        return int(current)
    if position is None:
        position = await sequence_changes(db)
    await save_position(db, name, position)
    return position


async def save_position(db: Store | Transaction, name: str, position: int) -> None:
    await db.execute(
        f"INSERT INTO {CONSUMERS} (name, position, updated_at) VALUES (?, ?, ?) "
        "ON CONFLICT (name) DO UPDATE SET position = excluded.position, "
        "updated_at = excluded.updated_at",
        name,
        position,
        time.time(),
    )


async def consumer_position(db: Store, name: str) -> int | None:
    value = await db.fetch_value(f"SELECT position FROM {CONSUMERS} WHERE name = ?", name)
    return None if value is None else int(value)


async def drop_consumer(db: Store, name: str) -> None:
    """Forget consumer ``name``: the log no longer keeps changes for it."""
    await db.execute(f"DELETE FROM {CONSUMERS} WHERE name = ?", name)


async def prune(db: Store) -> int:
    """Delete the changes every consumer has read; returns how many. With no consumer,
    nothing is deleted."""
    low = await db.fetch_value(f"SELECT MIN(position) FROM {CONSUMERS}")
    if low is None:
        return 0
    return await db.execute(f"DELETE FROM {CHANGES} WHERE seq <= ?", int(low))


@dataclass(frozen=True)
class Backlog:
    """How far each consumer is behind the head of the log."""

    head: int
    changes: int
    consumers: dict[str, int]


async def backlog(db: Store) -> Backlog:
    """The head of the log, the changes kept in it, and each consumer's distance from the
    head (a metric: ``hybridmesh_cdc_backlog_changes``)."""
    head = await sequence_changes(db)
    kept = int(await db.fetch_value(f"SELECT COUNT(*) FROM {CHANGES}") or 0)
    rows = await db.fetch_all(f"SELECT name, position FROM {CONSUMERS} ORDER BY name")
    return Backlog(head, kept, {str(r["name"]): head - int(r["position"]) for r in rows})


__all__ = [
    "Backlog",
    "Change",
    "Operation",
    "backlog",
    "captured_tables",
    "clear_origin",
    "consumer_position",
    "drop_consumer",
    "install_capture",
    "key_text",
    "mark_origin",
    "prepare_origin",
    "prune",
    "read_changes",
    "register_consumer",
    "save_position",
    "sequence_changes",
    "uninstall_capture",
    "write_watermark",
]
