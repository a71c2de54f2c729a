"""Replication of a legacy database's tables into a new service's database.

A :class:`Replicator` reads the source's change log (:mod:`hybridmesh.data.capture`) and
writes each table's rows, through its :class:`~hybridmesh.data.mapping.TableMapping`, into
the target. It starts with an initial **backfill** while the source keeps taking writes, then
**streams** changes as they come.

**Backfill, by watermarks** (Netflix's DBLog; Debezium's incremental snapshots). Tables are
copied in chunks of primary-key order, interleaved with the log and without locks. For each
chunk the replicator writes a low watermark into the log, selects the chunk, and writes a
high watermark. Reading the log on, every change between the two watermarks removes its key
from the chunk: the log has a change at least as new as the selected row. At the high
watermark the rows left are written, in the log's order at that point. A chunk row
therefore never overwrites a newer change; a change made after the selection comes after
the high watermark, so it is applied after the chunk's row. The rows travel as the source
stores them when nothing has to be converted (:func:`_direct`; on PostgreSQL by COPY), and
otherwise as the triggers' JSON images, mapped and written as changes are.

**Streaming apply.** Changes are applied in log order, in batches, each batch in one target
transaction together with the replicator's position (kept in the target database), so
after a crash it resumes where the last batch committed and applies nothing twice. Within a
batch only each key's last state is written (an upsert of the after image, or a delete),
which is what applying them one by one would leave. Applying is idempotent too: an upsert
or delete of a row's state can be repeated.

**Two directions.** During a cut-over's reverse-sync window a second replicator carries the
new owner's writes back to the legacy database (:meth:`ReplicationSpec` reversed by
:func:`reverse_spec`). Each replicator marks what it writes with its name, and the other
skips those changes, so nothing goes round in circles. When both sides changed a row since
they last agreed, that is a conflict: last writer wins by change time, or the source
(legacy) wins, as configured; every conflict is counted and filed in the review queue with
both versions.
"""

from __future__ import annotations

import contextlib
import json
import operator
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, cast

from hybridmesh.core.errors import ConfigurationError, StoreError, StoreUnavailableError
from hybridmesh.data._follow import follow
from hybridmesh.data.capture import (
    CHANGES,
    Change,
    clear_origin,
    install_capture,
    key_text,
    mark_origin,
    prepare_origin,
    prune,
    read_changes,
    register_consumer,
    save_position,
    sequence_changes,
    write_watermark,
)
from hybridmesh.data.config import ReplicationSpec, TableSpec
from hybridmesh.data.databases import TableShape, quote, table_shape
from hybridmesh.data.mapping import TableMapping
from hybridmesh.store import PostgresStore, Store, Transaction
from hybridmesh.store.postgres import PostgresTransaction

Phase = Literal["backfill", "streaming"]
Desired = Literal["running", "paused", "stopped"]

STATE = "hm_replication_state"
POSITION = "hm_replication_position"

#: Rows per backfill chunk when the spec names none: for rows copied as the source stores
#: them (see :func:`_direct`), which move at several hundred thousand a second, and for
#: rows converted to JSON and back, several times slower and larger in memory. A chunk
#: costs a few dozen round trips besides its rows (two watermarks, reading the log, its
#: transaction): some 20 ms, measured on a local PostgreSQL.
DIRECT_CHUNK_SIZE = 50_000
CHUNK_SIZE = 10_000


@dataclass
class TableProgress:
    """One table's place in the replication."""

    source: str
    target: str
    phase: Phase
    #: The key of the last row the backfill copied (JSON), None before the first chunk.
    chunk_after: str | None
    rows_copied: int
    #: Rows in the source table when the backfill started (for progress).
    rows_total: int


@dataclass
class ReplicationStatus:
    """Where a replication stands; what ``hybridmesh replicate status`` shows."""

    name: str
    position: int
    head: int
    applied: int
    conflicts: int
    lag_changes: int
    lag_seconds: float
    tables: list[TableProgress]
    updated_at: float

    @property
    def phase(self) -> str:
        return "backfill" if any(t.phase == "backfill" for t in self.tables) else "streaming"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "phase": self.phase,
            "position": self.position,
            "head": self.head,
            "applied": self.applied,
            "conflicts": self.conflicts,
            "lag_changes": self.lag_changes,
            "lag_seconds": round(self.lag_seconds, 3),
            "tables": [vars(t) for t in self.tables],
            "updated_at": self.updated_at,
        }


@dataclass
class _Window:
    """A backfill chunk between its watermarks."""

    table: str
    low: int
    high: int
    chunk: _Chunk
    #: The keys changed between the watermarks: the log has a change at least as new as
    #: their rows in the chunk, which are therefore not written.
    changed: set[str] = field(default_factory=set)


@dataclass
class _Table:
    """What the replicator knows of one replicated table."""

    mapping: TableMapping
    shape: TableShape
    columns: list[str]  # the target's columns that the mapping writes
    progress: TableProgress
    #: Backfill chunks go to the target as the source stores them (see :func:`_direct`).
    direct: bool = False


@dataclass(frozen=True)
class Conflict:
    """Both sides changed a row since they last agreed."""

    replication: str
    table: str
    key: tuple[Any, ...]
    incoming: dict[str, Any] | None
    incoming_at: float
    local: dict[str, Any] | None
    local_at: float
    winner: Literal["incoming", "local"]
    #: The systems the two versions come from (the replication's source and target).
    incoming_from: str = "source"
    local_to: str = "target"
    #: How it was resolved: ``last_writer_wins`` or ``source_wins``.
    policy: str = "last_writer_wins"

    @property
    def winner_system(self) -> str:
        return self.incoming_from if self.winner == "incoming" else self.local_to


ConflictSink = Callable[[Conflict], Awaitable[None]]


def reverse_spec(spec: ReplicationSpec) -> ReplicationSpec:
    """``spec`` the other way round: the new owner's tables back into the legacy database.

    Renames are inverted, computed columns are left out, and a transformed column comes
    back only through its ``reverse_transform``.
    """
    tables = []
    for table in spec.tables:
        target = table.target or table.source
        renames = {t: s for s, t in table.columns.items() if t is not None}
        reverse: dict[str, str | None] = dict(renames)
        for column in table.computed:
            reverse[column] = None
        for column in table.transform:
            name = table.columns.get(column) or column
            if name not in table.reverse_transform:
                reverse[name] = None
        tables.append(
            TableSpec(
                source=target,
                target=table.source,
                key=[table.columns.get(k) or k for k in table.key] if table.key else None,
                columns=reverse,
                transform=dict(table.reverse_transform),
            )
        )
    return spec.model_copy(
        update={
            "name": f"{spec.name}-reverse",
            "source": spec.target,
            "target": spec.source,
            "tables": tables,
        }
    )


class Replicator:
    """Replicates ``spec``'s tables from ``source`` into ``target``.

    ``peer`` names the replication running the other way during a reverse-sync window (its
    writes are skipped, and conflicts with it are resolved by ``spec.conflicts``);
    ``legacy_is_source`` says which side is the legacy one (for ``source_wins``).
    ``on_conflict`` files a conflict (in the review queue) before the batch commits, so a
    conflict is never lost; it may be filed again if the batch is applied again.
    """

    def __init__(
        self,
        spec: ReplicationSpec,
        source: Store,
        target: Store,
        *,
        peer: str | None = None,
        legacy_is_source: bool = True,
        on_conflict: ConflictSink | None = None,
        backfill: bool = True,
    ) -> None:
        self.spec = spec
        self.name = spec.name
        self.source = source
        self.target = target
        self.peer = peer
        self.legacy_is_source = legacy_is_source
        self.on_conflict = on_conflict
        self.backfill = backfill
        self.position = 0
        self.applied = 0
        self.conflicts = 0
        self.last_change_at = 0.0
        self.head = 0
        self._tables: dict[str, _Table] = {}
        self._window: _Window | None = None
        self._prepared = False

    # -- setting up ------------------------------------------------------------------------

    async def prepare(self) -> None:
        """Capture the source's tables, create what the target needs, and take up the
        position and progress a previous run left (or start: backfill from the head)."""
        names = [t.source for t in self.spec.tables]
        shapes = await install_capture(self.source, names)
        await prepare_origin(self.target)
        async with self.target.transaction() as tx:
            for statement in _state_tables(self.target.dialect):
                await tx.execute(statement)
        stored = {
            str(r["tbl"]): r
            for r in await self.target.fetch_all(
                f"SELECT tbl, phase, chunk_after, rows_copied, rows_total FROM {STATE} "
                "WHERE name = ?",
                self.name,
            )
        }
        for table in self.spec.tables:
            shape = shapes[table.source]
            mapping = table.mapping(shape.key)
            columns = mapping.target_columns(shape.columns)
            await self._ensure_target_table(mapping, shape, columns)
            direct = await _direct(self.source, self.target, mapping, shape)
            row = stored.get(mapping.target)
            if row is None:
                progress = TableProgress(
                    table.source,
                    mapping.target,
                    "backfill" if self.backfill else "streaming",
                    None,
                    0,
                    await _count(self.source, table.source),
                )
            else:
                progress = TableProgress(
                    table.source,
                    mapping.target,
                    row["phase"],
                    row["chunk_after"],
                    int(row["rows_copied"]),
                    int(row["rows_total"]),
                )
            self._tables[table.source] = _Table(mapping, shape, columns, progress, direct)
        if self.peer is not None:
            # Conflicts are found in both logs (the target's is the peer's source), and the
            # peer's position is kept in the source (its target).
            await install_capture(self.target, [t.mapping.target for t in self._tables.values()])
            for db in (self.source, self.target):
                await _index_keys(db)
            async with self.source.transaction() as tx:
                for statement in _state_tables(self.source.dialect):
                    await tx.execute(statement)
        saved = await self.target.fetch_one(
            f"SELECT position, applied, conflicts, last_change_at FROM {POSITION} WHERE name = ?",
            self.name,
        )
        if saved is None:
            self.position = await register_consumer(self.source, self.name)
            async with self.target.transaction() as tx:
                await self._save(tx)
        else:
            self.position = int(saved["position"])
            self.applied = int(saved["applied"])
            self.conflicts = int(saved["conflicts"])
            self.last_change_at = float(saved["last_change_at"])
            await register_consumer(self.source, self.name, self.position)
        self._prepared = True

    async def _ensure_target_table(
        self, mapping: TableMapping, shape: TableShape, columns: list[str]
    ) -> None:
        existing = await _table_exists(self.target, mapping.target)
        if existing:
            return
        types = {
            mapping.target_name(c): _column_type(
                shape.types.get(c, ""), self.source.dialect, self.target.dialect
            )
            for c in shape.columns
            if c not in mapping.drop and c not in mapping.transform
        }
        cols = ", ".join(f"{quote(c)} {types.get(c, 'TEXT')}" for c in columns)
        key = ", ".join(quote(c) for c in mapping.target_key)
        await self.target.execute(
            f"CREATE TABLE IF NOT EXISTS {quote(mapping.target)} ({cols}, PRIMARY KEY ({key}))"
        )

    # -- running ---------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget what is only in memory (an open backfill chunk) and prepare again on the
        next step: after a connection was lost."""
        self._window = None
        self._prepared = False

    @property
    def backfilling(self) -> bool:
        return any(t.progress.phase == "backfill" for t in self._tables.values())

    async def step(self) -> int:
        """Do one round: open a backfill chunk if one is due, then read and apply a batch
        of changes. Returns how many changes it read (0: caught up)."""
        if not self._prepared:
            await self.prepare()
        if self._window is None and self.backfill:
            await self._open_window()
        changes = await read_changes(self.source, self.position, self.spec.batch_size)
        if not changes:
            return 0
        async with self.target.transaction() as tx:
            await mark_origin(tx, self.target.dialect, self.name)
            await self._apply(tx, changes)
            self.position = changes[-1].seq
            await self._save(tx)
            await clear_origin(tx, self.target.dialect)
        return len(changes)

    async def run(
        self,
        *,
        desired: Callable[[], Awaitable[Desired]] | None = None,
        idle: float = 0.05,
        report: Callable[[ReplicationStatus], Awaitable[None]] | None = None,
        report_every: float = 1.0,
        until_caught_up: bool = False,
    ) -> None:
        """Replicate until ``desired()`` says ``stopped`` (or, with ``until_caught_up``,
        until the backfill is done and the log is read to its head). ``paused`` holds the
        position. Source or target unreachable: it waits and tries again."""
        await follow(
            self.step,
            reset=self.reset,
            status=self.status,
            desired=desired,
            report=report,
            report_every=report_every,
            until_caught_up=until_caught_up,
            settled=lambda: not self.backfilling and self._window is None,
            idle=idle,
            housekeeping=self.report_position,
        )
        with contextlib.suppress(StoreUnavailableError):
            await self.report_position()

    async def report_position(self) -> None:
        """Tell the source how far this replication has read (its position in the target
        is the one that counts; this one lags it), and prune the changes every consumer of
        the source's log has read."""
        await save_position(self.source, self.name, self.position)
        await prune(self.source)

    async def status(self) -> ReplicationStatus:
        """Position, lag (changes and seconds) and each table's progress."""
        self.head = await sequence_changes(self.source)
        oldest = await self.source.fetch_value(
            f"SELECT at FROM {CHANGES} WHERE seq > ? ORDER BY seq LIMIT 1", self.position
        )
        lag_seconds = 0.0 if oldest is None else max(0.0, time.time() - float(oldest))
        return ReplicationStatus(
            name=self.name,
            position=self.position,
            head=self.head,
            applied=self.applied,
            conflicts=self.conflicts,
            lag_changes=max(0, self.head - self.position),
            lag_seconds=lag_seconds,
            tables=[t.progress for t in self._tables.values()],
            updated_at=time.time(),
        )

    # -- backfill --------------------------------------------------------------------------

    async def _open_window(self) -> None:
        table = next((t for t in self._tables.values() if t.progress.phase == "backfill"), None)
        if table is None:
            return
        label = f"{self.name}:{table.progress.source}:{uuid.uuid4().hex}"
        low = await write_watermark(self.source, label + ":low")
        size = self.spec.chunk_size or (DIRECT_CHUNK_SIZE if table.direct else CHUNK_SIZE)
        chunk = await _chunk(self.source, table, table.progress.chunk_after, size)
        high = await write_watermark(self.source, label + ":high")
        self._window = _Window(table.progress.source, low, high, chunk)

    async def _close_window(self, tx: Transaction, window: _Window) -> None:
        """Write the chunk's rows but those changed between its watermarks."""
        table = self._tables[window.table]
        written = await window.chunk.write(tx, self.target.dialect, table, window.changed)
        self.applied += written
        progress = table.progress
        progress.rows_copied += written
        progress.chunk_after = window.chunk.last_key or progress.chunk_after
        if window.chunk.complete:
            progress.phase = "streaming"
        self._window = None

    # -- applying --------------------------------------------------------------------------

    async def _apply(self, tx: Transaction, changes: Sequence[Change]) -> None:
        ops = _Ops()
        window = self._window
        for change in changes:
            if change.op == "watermark":
                if window is not None and change.seq == window.high:
                    # The chunk's rows take their place in the log here: after what the
                    # batch read before the high watermark, before what comes after it.
                    self.applied += await ops.write(tx, self.target.dialect)
                    ops = _Ops()
                    await self._close_window(tx, window)
                    window = None
                continue
            table = self._tables.get(change.table)
            if table is None or (self.peer is not None and change.origin == self.peer):
                continue
            if window is not None and change.table == window.table and change.seq > window.low:
                window.changed.add(change.key_text)
                if change.before is not None:
                    # A key change: the chunk's copy under the old key is stale too.
                    window.changed.add(_key_of(table, change.before))
            if self.peer is not None and not await self._wins(tx, table, change):
                continue
            self.last_change_at = change.at
            old_key = (
                change.before is not None
                and change.after is not None
                and (_key_of(table, change.before) != change.key_text)
            )
            if old_key and change.before is not None:
                ops.delete(table, _key_of(table, change.before), change.before)
            if change.after is None:
                ops.delete(table, change.key_text, change.before or {})
            else:
                ops.upsert(table, change.key_text, change.after)
        self.applied += await ops.write(tx, self.target.dialect)

    async def _wins(self, tx: Transaction, table: _Table, change: Change) -> bool:
        """In a reverse-sync window: whether ``change`` is applied. It is not when the peer
        has since written the row on the source side (the peer's value is already on both
        sides), nor when it loses a conflict with a change the target has not sent yet."""
        assert self.peer is not None
        superseded = await self.source.fetch_value(
            f"SELECT 1 FROM {CHANGES} WHERE tbl = ? AND key = ? AND origin = ? "
            "AND (seq > ? OR seq IS NULL) LIMIT 1",
            change.table,
            _stored_key(self.source.dialect, change.key),
            self.peer,
            change.seq,
        )
        if superseded:
            return False
        mapping = table.mapping
        peer_position = await self.source.fetch_value(
            f"SELECT position FROM {POSITION} WHERE name = ?", self.peer
        )
        target_key = [
            mapping.map_key(dict(zip(mapping.key, change.key, strict=True)))[c]
            for c in mapping.target_key
        ]
        local = await tx.fetch_one(
            f"SELECT after, at FROM {CHANGES} WHERE tbl = ? AND key = ? "
            "AND (origin IS NULL OR origin <> ?) AND (seq > ? OR seq IS NULL) "
            "ORDER BY at DESC LIMIT 1",
            mapping.target,
            _stored_key(self.target.dialect, target_key),
            self.name,
            int(peer_position or 0),
        )
        if local is None:
            return True
        local_at = float(local["at"])
        if self.spec.conflicts == "source_wins":
            incoming_wins = self.legacy_is_source
        else:
            incoming_wins = change.at > local_at or (
                change.at == local_at and self.legacy_is_source
            )
        self.conflicts += 1
        if self.on_conflict is not None:
            await self.on_conflict(
                Conflict(
                    replication=self.name,
                    table=change.table,
                    key=change.key,
                    incoming=change.after,
                    incoming_at=change.at,
                    local=None if local["after"] is None else json.loads(local["after"]),
                    local_at=local_at,
                    winner="incoming" if incoming_wins else "local",
                    incoming_from=self.spec.source.system or self.source.display_url,
                    local_to=self.spec.target.system or self.target.display_url,
                    policy=self.spec.conflicts,
                )
            )
        return incoming_wins

    async def _save(self, tx: Transaction) -> None:
        now = time.time()
        await tx.execute(
            f"INSERT INTO {POSITION} (name, position, applied, conflicts, last_change_at, "
            "updated_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
            "position = excluded.position, applied = excluded.applied, "
            "conflicts = excluded.conflicts, last_change_at = excluded.last_change_at, "
            "updated_at = excluded.updated_at",
            self.name,
            self.position,
            self.applied,
            self.conflicts,
            self.last_change_at,
            now,
        )
        for table in self._tables.values():
            p = table.progress
            await tx.execute(
                f"INSERT INTO {STATE} (name, tbl, phase, chunk_after, rows_copied, "
                "rows_total) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (name, tbl) DO UPDATE SET "
                "phase = excluded.phase, chunk_after = excluded.chunk_after, "
                "rows_copied = excluded.rows_copied, rows_total = excluded.rows_total",
                self.name,
                p.target,
                p.phase,
                p.chunk_after,
                p.rows_copied,
                p.rows_total,
            )


class _Ops:
    """The last state of each key a batch touched: a row to upsert, or None to delete."""

    def __init__(self) -> None:
        self._last: dict[tuple[str, str], tuple[_Table, dict[str, Any], bool]] = {}

    def upsert(self, table: _Table, key: str, row: Mapping[str, Any]) -> None:
        self._last[(table.progress.source, key)] = (table, table.mapping.map_row(row), True)

    def delete(self, table: _Table, key: str, row: Mapping[str, Any]) -> None:
        mapped_key = table.mapping.map_key({c: row.get(c) for c in table.mapping.key})
        self._last[(table.progress.source, key)] = (table, mapped_key, False)

    async def write(self, tx: Transaction, dialect: str) -> int:
        """Delete, then upsert, table by table; returns the keys written. (Each key appears
        once, with its last state, so the order between keys does not matter.)"""
        groups: dict[str, tuple[_Table, list[dict[str, Any]], list[dict[str, Any]]]] = {}
        for table, row, keep in self._last.values():
            _, upserts, deletes = groups.setdefault(table.progress.source, (table, [], []))
            (upserts if keep else deletes).append(row)
        for table, upserts, deletes in groups.values():
            if deletes:
                await _delete_rows(tx, table, deletes)
            if upserts:
                await _upsert_rows(tx, dialect, table, upserts)
        return len(self._last)


# ---------------------------------------------------------------------------- SQL


async def _upsert_rows(
    tx: Transaction, dialect: str, table: _Table, rows: list[dict[str, Any]]
) -> None:
    mapping = table.mapping
    columns = table.columns
    names = ", ".join(quote(c) for c in columns)
    if dialect == "postgresql":
        # PostgreSQL turns JSON values into the columns' types itself (a timestamp written
        # as text in the log, say), and takes a whole batch in one statement.
        await tx.execute(
            f"INSERT INTO {quote(mapping.target)} ({names}) SELECT {names} FROM "
            f"jsonb_populate_recordset(NULL::{quote(mapping.target)}, ?::jsonb) "
            f"{_on_conflict(table)}",
            json.dumps(rows, default=str),
        )
        return
    await tx.executemany(
        _insert_values(table), [[_sqlite_value(row.get(c)) for c in columns] for row in rows]
    )


def _insert_values(table: _Table) -> str:
    """An upsert of one row of the target's columns, its values as ``?`` in order."""
    names = ", ".join(quote(c) for c in table.columns)
    marks = ", ".join("?" for _ in table.columns)
    return (
        f"INSERT INTO {quote(table.mapping.target)} ({names}) VALUES ({marks}) "
        f"{_on_conflict(table)}"
    )


def _on_conflict(table: _Table) -> str:
    """What an insert does with a row whose key the target has: replace its values."""
    key = ", ".join(quote(c) for c in table.mapping.target_key)
    others = [c for c in table.columns if c not in table.mapping.target_key]
    if not others:
        return f"ON CONFLICT ({key}) DO NOTHING"
    return f"ON CONFLICT ({key}) DO UPDATE SET " + ", ".join(
        f"{quote(c)} = excluded.{quote(c)}" for c in others
    )


async def _delete_rows(tx: Transaction, table: _Table, keys: list[dict[str, Any]]) -> None:
    columns = table.mapping.target_key
    where = " AND ".join(f"{quote(c)} = ?" for c in columns)
    await tx.executemany(
        f"DELETE FROM {quote(table.mapping.target)} WHERE {where}",
        [[k[c] for c in columns] for k in keys],
    )


def _sqlite_value(value: Any) -> Any:
    if isinstance(value, dict | list):
        return json.dumps(value)
    if isinstance(value, bool):
        return int(value)
    return value


# ---------------------------------------------------------------------------- backfill chunks


class _Chunk(Protocol):
    """The rows of one backfill chunk, as selected between its watermarks."""

    @property
    def last_key(self) -> str | None:
        """The key (JSON) the chunk ends at: the next one starts after it. None when it
        has no row."""

    @property
    def complete(self) -> bool:
        """Fewer rows than a chunk's were left: the table's backfill ends with this one."""

    async def write(self, tx: Transaction, dialect: str, table: _Table, changed: set[str]) -> int:
        """Write into the target the rows whose keys are not in ``changed``; how many."""
        ...


@dataclass
class _Images:
    """A chunk as the triggers' images of its rows (JSON values), keyed by key: mapped and
    written the same way as changes are. For any mapping between any two databases."""

    rows: dict[str, dict[str, Any]]
    last_key: str | None
    complete: bool

    async def write(self, tx: Transaction, dialect: str, table: _Table, changed: set[str]) -> int:
        mapping = table.mapping
        rows = [mapping.map_row(row) for key, row in self.rows.items() if key not in changed]
        if rows:
            await _upsert_rows(tx, dialect, table, rows)
        return len(rows)


@dataclass
class _Values:
    """A chunk of SQLite rows as SQLite stores them (the copied columns' values, in the
    target's column order). A row's key is its key columns' values, which is what the
    change log's JSON gives back for an integer, a text or NULL; a key holding a REAL,
    which that JSON keeps to 15 digits, comes as the triggers write it (``json_array()``)
    to be matched with the keys of changes."""

    rows: list[tuple[Any, ...]]
    key_at: list[int]  # where the key columns are in a row
    json_keys: list[str | None]  # json_array() of a key holding a REAL, else None
    complete: bool

    @property
    def last_key(self) -> str | None:
        return key_text(self._key(self.rows[-1], self.json_keys[-1])) if self.rows else None

    def _key(self, row: tuple[Any, ...], text: str | None) -> tuple[Any, ...]:
        return tuple(row[i] for i in self.key_at) if text is None else tuple(json.loads(text))

    async def write(self, tx: Transaction, dialect: str, table: _Table, changed: set[str]) -> int:
        rows = self.rows
        if changed:
            skip = {tuple(json.loads(text)) for text in changed}
            pairs = zip(self.rows, self.json_keys, strict=True)
            rows = [row for row, text in pairs if self._key(row, text) not in skip]
        if rows:
            await tx.executemany(_insert_values(table), rows)
        return len(rows)


#: The temporary table a PostgreSQL chunk is loaded into, in the transaction writing it.
_STAGE = "hm_backfill_stage"


@dataclass
class _Copied:
    """A chunk of PostgreSQL rows in COPY's binary format (the copied columns, in the
    target's column order), with the key range it covers. COPY takes rows several times
    faster than any statement, and nothing is converted on the way."""

    data: bytes
    count: int
    after: list[Any] | None  # the chunk's rows come after this key (None: from the start)
    last: list[Any]  # … up to this one
    complete: bool

    @property
    def last_key(self) -> str | None:
        return key_text(self.last) if self.last else None

    async def write(self, tx: Transaction, dialect: str, table: _Table, changed: set[str]) -> int:
        if not self.count:
            return 0
        if not isinstance(tx, PostgresTransaction):
            raise TypeError("a COPY chunk is written in a PostgreSQL transaction")
        if not changed and await self._straight(tx, table):
            return self.count
        return await self._staged(tx, table, changed)

    async def _straight(self, tx: PostgresTransaction, table: _Table) -> bool:
        """Copy the rows straight into the target table, when it has no row in the
        chunk's key range yet (as in a first copy) and so nothing to update; whether it
        did. A row written into the range meanwhile makes the copy fail on its key: it is
        undone to a savepoint, and the chunk is then upserted."""
        mapping = table.mapping
        key = ", ".join(quote(mapping.target_name(c)) for c in table.shape.key)
        marks = ", ".join("?" for _ in self.last)
        where = f"({key}) <= ({marks})"
        args = list(self.last)
        if self.after is not None:
            where = f"({key}) > ({marks}) AND {where}"
            args = [*self.after, *args]
        taken = await tx.fetch_value(
            f"SELECT 1 FROM {quote(mapping.target)} WHERE {where} LIMIT 1", *args
        )
        if taken:
            return False
        await tx.execute("SAVEPOINT hm_backfill_chunk")
        try:
            await tx.copy_in(mapping.target, self.data, table.columns)
        except StoreError as error:
            if getattr(error.__cause__, "sqlstate", None) != _UNIQUE_VIOLATION:
                raise
            await tx.execute("ROLLBACK TO SAVEPOINT hm_backfill_chunk")
            return False
        await tx.execute("RELEASE SAVEPOINT hm_backfill_chunk")
        return True

    async def _staged(self, tx: PostgresTransaction, table: _Table, changed: set[str]) -> int:
        """Load the rows into a temporary table with the target's column types, remove the
        changed keys there, and upsert the rest with one statement."""
        mapping = table.mapping
        target = quote(mapping.target)
        names = ", ".join(quote(c) for c in table.columns)
        await tx.execute(
            f"CREATE TEMPORARY TABLE {_STAGE} ON COMMIT DROP AS "
            f"SELECT {names} FROM {target} WITH NO DATA"
        )
        await tx.copy_in(_STAGE, self.data)
        skipped = 0
        if changed:
            key = [mapping.target_name(c) for c in table.shape.key]
            keys = [dict(zip(key, json.loads(text), strict=True)) for text in changed]
            match = " AND ".join(f"s.{quote(c)} = d.{quote(c)}" for c in key)
            skipped = await tx.execute(
                f"DELETE FROM {_STAGE} s USING jsonb_populate_recordset(NULL::{_STAGE}, "
                f"?::jsonb) d WHERE {match}",
                json.dumps(keys, default=str),
            )
        await tx.execute(
            f"INSERT INTO {target} ({names}) SELECT {names} FROM {_STAGE} {_on_conflict(table)}"
        )
        await tx.execute(f"DROP TABLE {_STAGE}")
        return self.count - skipped


#: The lowest object id PostgreSQL gives a type a database defines (FirstNormalObjectId).
_FIRST_USER_OID = 16384
#: PostgreSQL's SQLSTATE for a duplicate key.
_UNIQUE_VIOLATION = "23505"


async def _chunk(db: Store, table: _Table, after: str | None, size: int) -> _Chunk:
    """The next ``size`` rows of ``table`` after key ``after`` (JSON), in key order."""
    if not table.direct:
        return await _image_chunk(db, table.shape, after, size)
    if db.dialect == "postgresql":
        return await _copied_chunk(cast(PostgresStore, db), table, after, size)
    return await _values_chunk(db, table, after, size)


async def _image_chunk(db: Store, shape: TableShape, after: str | None, size: int) -> _Images:
    """Each row as the trigger's image of it (JSON values), so chunk rows and changes are
    mapped and written the same way."""
    key = ", ".join(quote(c) for c in shape.key)
    table = quote(shape.name)
    image = (
        f"to_jsonb({table}.*)::text"
        if db.dialect == "postgresql"
        else "json_object("
        + ", ".join("'" + c.replace("'", "''") + f"', {quote(c)}" for c in shape.columns)
        + ")"
    )
    where, args = _after(shape, after)
    rows = await db.fetch_all(
        f"SELECT {image} AS image FROM {table} {where} ORDER BY {key} LIMIT ?", *args, size
    )
    images = [json.loads(row["image"]) for row in rows]
    keyed = {key_text([row[c] for c in shape.key]): row for row in images}
    return _Images(keyed, next(reversed(keyed)) if keyed else None, len(rows) < size)


async def _values_chunk(db: Store, table: _Table, after: str | None, size: int) -> _Values:
    """SQLite: each row's values as stored, and, for a key holding a REAL, the key as
    ``json_array()`` gives it, the function the triggers use."""
    shape = table.shape
    key = ", ".join(quote(c) for c in shape.key)
    copied = [c for c in shape.columns if c not in table.mapping.drop]
    alias = "hm_key"
    while alias in shape.columns:
        alias += "_"
    real = " OR ".join(f"typeof({quote(c)}) = 'real'" for c in shape.key)
    where, args = _after(shape, after)
    found = await db.fetch_all(
        f"SELECT CASE WHEN {real} THEN json_array({key}) END AS {alias}, "
        f"{', '.join(quote(c) for c in copied)} "
        f"FROM {quote(shape.name)} {where} ORDER BY {key} LIMIT ?",
        *args,
        size,
    )
    pick = operator.itemgetter(*copied)
    rows = [pick(row) for row in found]
    if len(copied) == 1:  # itemgetter of one name gives the value, not a 1-tuple
        rows = [(value,) for value in rows]
    json_keys: list[str | None] = [row[alias] for row in found]
    key_at = [copied.index(c) for c in shape.key]
    return _Values(rows, key_at, json_keys, len(found) < size)


async def _copied_chunk(db: PostgresStore, table: _Table, after: str | None, size: int) -> _Copied:
    """PostgreSQL: the rows in COPY's binary format. COPY gives no key back, so the
    chunk's last key is found first (its keys as the triggers write them: ``to_jsonb``
    values), and the rows up to it are copied; rows that come or go in that range between
    the two statements are in the log after the low watermark."""
    shape = table.shape
    key = ", ".join(quote(c) for c in shape.key)
    name = quote(shape.name)
    where, args = _after(shape, after)
    # The key is made JSON for the last row only, not for every row the OFFSET passes.
    last = await db.fetch_value(
        f"SELECT jsonb_build_array({key})::text FROM (SELECT {key} FROM {name} {where} "
        f"ORDER BY {key} LIMIT 1 OFFSET ?) AS chunk_end",
        *args,
        size - 1,
    )
    complete = last is None
    if complete:
        descending = ", ".join(f"{quote(c)} DESC" for c in shape.key)
        last = await db.fetch_value(
            f"SELECT jsonb_build_array({key})::text FROM {name} {where} "
            f"ORDER BY {descending} LIMIT 1",
            *args,
        )
        if last is None:
            return _Copied(b"", 0, None, [], True)
    values = json.loads(last)
    bound = f"({key}) <= ({', '.join('?' for _ in values)})"
    where = f"{where} AND {bound}" if where else f"WHERE {bound}"
    copied = ", ".join(quote(c) for c in shape.columns if c not in table.mapping.drop)
    data, count = await db.copy_out(f"SELECT {copied} FROM {name} {where}", *args, *values)
    return _Copied(data, count, args or None, values, complete)


def _after(shape: TableShape, after: str | None) -> tuple[str, list[Any]]:
    """The condition for rows after key ``after`` (JSON), and its arguments."""
    if after is None:
        return "", []
    values = json.loads(after)
    key = ", ".join(quote(c) for c in shape.key)
    return f"WHERE ({key}) > ({', '.join('?' for _ in values)})", list(values)


async def _direct(source: Store, target: Store, mapping: TableMapping, shape: TableShape) -> bool:
    """Whether backfill chunks of ``shape``'s table can go to the target as the source
    stores them, rather than as the triggers' JSON images (a conversion to JSON and back
    for every value): when the mapping only renames and drops columns, both databases are
    of one kind, the key is copied, and every copied column has the same type on both
    sides. The rows are then copied exactly (SQLite's JSON keeps 15 digits of a REAL).

    On PostgreSQL each copied column's type must also be built in or an enum, whose binary
    form is the same in every database. A type a database defines itself may have another
    definition under the same name in the other (a composite's fields in another order),
    which only JSON, going by the fields' names, carries over right. The target must also
    allow temporary tables (a chunk may be loaded into one)."""
    if not mapping.plain or source.dialect != target.dialect:
        return False
    if any(column in mapping.drop for column in shape.key):
        return False
    copied = [c for c in shape.columns if c not in mapping.drop]
    try:
        theirs = (await table_shape(target, mapping.target)).types
    except ConfigurationError:  # the target's own table has a unique index, no primary key
        return False
    if any(theirs.get(mapping.target_name(c)) != shape.types.get(c) for c in copied):
        return False
    if source.dialect != "postgresql":
        return True
    others = await source.fetch_value(
        "SELECT count(*) FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid "
        "WHERE a.attrelid = to_regclass(?) AND a.attnum > 0 AND NOT a.attisdropped "
        "AND a.attname::text = ANY(?::text[]) AND t.oid >= ? AND t.typtype <> 'e'",
        quote(shape.name),
        copied,
        _FIRST_USER_OID,
    )
    temporary = await target.fetch_value(
        "SELECT has_database_privilege(current_database(), 'TEMPORARY')"
    )
    return not others and bool(temporary)


def _key_of(table: _Table, image: Mapping[str, Any]) -> str:
    return key_text([image.get(c) for c in table.mapping.key])


def _stored_key(dialect: str, key: Iterable[Any]) -> str:
    """A key as the change log stores it (PostgreSQL's jsonb text puts a space after
    commas)."""
    if dialect == "postgresql":
        return json.dumps(list(key), separators=(", ", ": "))
    return key_text(list(key))


async def _count(db: Store, table: str) -> int:
    return int(await db.fetch_value(f"SELECT COUNT(*) FROM {quote(table)}") or 0)


async def _table_exists(db: Store, table: str) -> bool:
    if db.dialect == "sqlite":
        found = await db.fetch_value(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", table
        )
    else:
        found = await db.fetch_value("SELECT to_regclass(?) IS NOT NULL", quote(table))
    return bool(found)


async def _index_keys(db: Store) -> None:
    """An index for finding a key's changes, which conflict checks need."""
    await db.execute(f"CREATE INDEX IF NOT EXISTS {CHANGES}_key ON {CHANGES} (tbl, key)")


def _column_type(declared: str, source: str, target: str) -> str:
    if source == target and declared:
        return declared
    lowered = declared.lower()
    if "int" in lowered:
        return "BIGINT"
    if any(word in lowered for word in ("real", "double", "float", "numeric", "decimal")):
        return "DOUBLE PRECISION" if target == "postgresql" else "REAL"
    return "TEXT"


def _state_tables(dialect: str) -> list[str]:
    real = "DOUBLE PRECISION" if dialect == "postgresql" else "REAL"
    return [
        f"CREATE TABLE IF NOT EXISTS {STATE} (name TEXT NOT NULL, tbl TEXT NOT NULL, "
        "phase TEXT NOT NULL, chunk_after TEXT, rows_copied BIGINT NOT NULL, "
        "rows_total BIGINT NOT NULL, PRIMARY KEY (name, tbl))",
        f"CREATE TABLE IF NOT EXISTS {POSITION} (name TEXT PRIMARY KEY, "
        "position BIGINT NOT NULL, applied BIGINT NOT NULL, conflicts BIGINT NOT NULL, "
        f"last_change_at {real} NOT NULL, updated_at {real} NOT NULL)",
    ]


__all__ = [
    "Conflict",
    "ReplicationStatus",
    "Replicator",
    "TableProgress",
    "reverse_spec",
]
