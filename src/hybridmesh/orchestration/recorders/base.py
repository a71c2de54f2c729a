"""What the engine writes, as typed rows, and the interface of the recorder that writes it.

A worker's every write is a :class:`Change` of one execution: its head (a :class:`Start`
that inserts the execution, or a :class:`Save` that only applies while the worker holds the
lease) and the rows that count only when the head was written (history records, the
signals it consumed, events for the bus, review items). A recorder writes a batch of
changes from several executions at once (group commit). This module holds the statements
that run on every database; ``sqlite`` and ``postgres`` hold the recorders per database.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from hybridmesh.core.serialization import dumps
from hybridmesh.events.backends._sql_log import LogRecorder, LogRow
from hybridmesh.orchestration._machine import Record
from hybridmesh.store import Statement, Store


@dataclass(slots=True)
class Start:
    """A new execution's row; written only if no execution has its id yet."""

    id: str
    kind: str
    name: str
    version: int
    status: str
    input: str  # JSON
    state: str  # JSON
    trace_context: str | None
    wake_at: float
    lease_owner: str | None  # the worker that drives it at once, if any
    lease_until: float | None
    history_seq: int
    created_at: float


@dataclass(slots=True)
class Save:
    """A worker's save of an execution it holds; applies only while ``owner`` holds the
    lease. ``status`` None keeps the stored status, the lease and the due time (a held
    save: most of them, which leaves the indexed columns alone). Releasing ends the lease
    and makes the execution due at ``wake`` (or now when signals came meanwhile)."""

    id: str
    status: str | None
    state: str  # JSON
    error: str | None
    history_seq: int
    now: float
    ended_at: float | None
    release: bool
    wake: float | None
    owner: str


@dataclass(slots=True)
class HistoryRow:
    """One record of an execution's append-only history."""

    execution_id: str
    seq: int
    type: str
    step_id: str | None
    attempt: int | None
    data: str | None  # JSON
    at: float


@dataclass(slots=True)
class Change:
    """One execution's write: its head and the rows that count only when it was written.
    ``events`` go to the bus's event log in the same store (the recorder's ``log``);
    ``rows`` are other modules' row inserts (the outbox, review items)."""

    head: Start | Save
    history: list[HistoryRow]
    events: list[LogRow] = field(default_factory=list)
    consumed: list[str] = field(default_factory=list)  # ids of the signals it applied
    rows: list[Statement] = field(default_factory=list)

    @property
    def id(self) -> str:
        return self.head.id


def history_rows(execution_id: str, seq: int, records: list[Record], at: float) -> list[HistoryRow]:
    """The history rows of ``records``, numbered after ``seq``."""
    return [
        HistoryRow(
            execution_id,
            seq + index,
            record.type,
            record.step_id,
            record.attempt,
            dumps(record.data) if record.data is not None else None,
            at,
        )
        for index, record in enumerate(records, start=1)
    ]


INSERT_EXECUTION = """
INSERT INTO orch_executions (id, kind, name, version, status, input, state, error,
    trace_context, wake_at, lease_owner, lease_until, history_seq, created_at, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?, NULL, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (id) DO NOTHING
"""

INSERT_HISTORY = (
    "INSERT INTO orch_history (execution_id, seq, type, step_id, attempt, data, at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)

# A Save that releases or sets the status. Releasing sets the lease to NULL and the next
# due time, or now when signals came meanwhile; a worker that keeps the lease leaves the
# due time as it was (in the past: claiming or starting set it), so the execution is
# claimed again once the lease expires if the worker dies.
SAVE = """
UPDATE orch_executions SET status = ?, state = ?, error = ?, history_seq = ?, updated_at = ?,
    ended_at = CAST(? AS DOUBLE PRECISION),
    signals = CASE WHEN EXISTS (SELECT 1 FROM orch_signals s WHERE s.execution_id = ?)
                   THEN 1 ELSE 0 END,
    wake_at = CASE WHEN CAST(? AS INTEGER) = 0 THEN wake_at
                   WHEN EXISTS (SELECT 1 FROM orch_signals s WHERE s.execution_id = ?)
                   THEN CAST(? AS DOUBLE PRECISION) ELSE CAST(? AS DOUBLE PRECISION) END,
    lease_owner = CASE WHEN CAST(? AS INTEGER) = 1 THEN NULL ELSE lease_owner END,
    lease_until = CASE WHEN CAST(? AS INTEGER) = 1 THEN NULL ELSE lease_until END
WHERE id = ? AND lease_owner = ?
RETURNING signals
"""

# A held Save. The columns that are indexed (status, wake_at) are not set, so the indexes
# are left alone: SQLite rewrites an index entry for every indexed column an UPDATE sets,
# even to the same value, and PostgreSQL can update the row in place (HOT) only when no
# indexed value changes. A held execution stays due since its wake time, as with SAVE.
SAVE_HELD = """
UPDATE orch_executions SET state = ?, error = ?, history_seq = ?, updated_at = ?,
    signals = CASE WHEN EXISTS (SELECT 1 FROM orch_signals s WHERE s.execution_id = ?)
                   THEN 1 ELSE 0 END
WHERE id = ? AND lease_owner = ?
RETURNING signals
"""

DELETE_SIGNAL = "DELETE FROM orch_signals WHERE id = ?"

# Claim executions that are due and not held (or whose holder's lease expired): those a
# dead worker held first (they may hold resources, such as reserved stock), then oldest due.
CLAIM = """
UPDATE orch_executions SET lease_owner = ?, lease_until = ?
WHERE id IN (
    SELECT id FROM orch_executions
    WHERE wake_at <= ? AND (lease_owner IS NULL OR lease_until <= ?)
    ORDER BY lease_owner IS NULL, wake_at LIMIT ?{lock}
)
RETURNING id, kind, name, version, status, input, state, error, trace_context, history_seq,
    signals, created_at, ended_at
"""

# Renew every lease of a worker. Rows are taken in id order, the order batches write them
# in, so a renewal and a batch of saves never deadlock where rows are locked.
RENEW = """
UPDATE orch_executions SET lease_until = ?
WHERE id IN (SELECT id FROM orch_executions WHERE lease_owner = ? ORDER BY id{lock})
RETURNING id, signals
"""

RELEASE_ALL = """
UPDATE orch_executions SET lease_owner = NULL, lease_until = NULL, wake_at = ?
WHERE id IN (SELECT id FROM orch_executions WHERE lease_owner = ? AND wake_at IS NOT NULL
             ORDER BY id{lock})
"""

RECLAIM = (
    "UPDATE orch_executions SET lease_owner = ?, lease_until = ? "
    "WHERE id = ? AND lease_owner IS NULL RETURNING signals"
)

SELECT_SIGNALS = (
    "SELECT id, kind, step_id, data FROM orch_signals WHERE execution_id = ? ORDER BY at, id"
)


class ExecutionRecorder(ABC):
    """Writes the engine's changes and leases to one database (``store``); ``log`` is the
    recorder of the bus's event log when the log is kept in the same store (the events
    of a change are appended with it), else None.

    :meth:`write_batch` writes changes on any database as one :meth:`Store.batch`; a
    backend may write them in fewer statements (:meth:`write`).
    """

    #: Row locks of a claim's subquery: claimers in other processes pass over the rows
    #: being claimed.
    claim_lock: ClassVar[str] = ""
    #: Row locks of a renewal's and a release's subquery, taken in id order.
    update_lock: ClassVar[str] = ""

    def __init__(self, store: Store, log: LogRecorder | None) -> None:
        self.store = store
        self.log = log
        self._claim_sql = CLAIM.format(lock=self.claim_lock)
        self._renew_sql = RENEW.format(lock=self.update_lock)
        self._release_sql = RELEASE_ALL.format(lock=self.update_lock)

    @abstractmethod
    async def write(self, changes: Sequence[Change]) -> list[bool | None]:
        """Write ``changes`` in one transaction. Per change: None when its head wrote
        nothing (the lease was lost, or the execution had been started already), so none
        of its rows were written; otherwise whether signals wait for the execution
        (always False for a start)."""

    async def write_batch(self, changes: Sequence[Change]) -> list[bool | None]:
        """:meth:`write` as one :meth:`Store.batch`. The heads run first, in the order of
        their execution ids (where rows are locked, they are locked in that order, the
        order lease renewals take too, so concurrent writers never deadlock); then each
        kind of row statement runs once for every change, each row guarded by its head."""
        order = sorted(range(len(changes)), key=lambda i: changes[i].head.id)
        flat: list[Statement] = []
        heads = [0] * len(changes)
        merged: dict[str, tuple[list[Sequence[Any]], list[int]]] = {}

        def add(sql: str, rows: Sequence[Sequence[Any]], head: int) -> None:
            into, guards = merged.setdefault(sql, ([], []))
            into.extend(rows)
            guards.extend([head] * len(rows))

        for index in order:
            change = changes[index]
            at = heads[index] = len(flat)
            flat.append(head_statement(change.head))
            if change.consumed:
                add(DELETE_SIGNAL, [(signal,) for signal in change.consumed], at)
            if change.history:
                add(INSERT_HISTORY, [_history_values(row) for row in change.history], at)
            if change.events:
                if self.log is None:
                    raise ValueError("events for the bus's log, but it is not in this store")
                appended = self.log.append_statement(change.events)
                add(appended.sql, appended.rows or (), at)
            for statement in change.rows:
                if statement.rows is None or statement.after is not None:
                    raise ValueError("a change's other statements must be unguarded rows")
                add(statement.sql, statement.rows, at)
        for sql, (rows, guards) in merged.items():
            flat.append(Statement(sql, rows=rows, rows_after=guards))
        results = await self.store.batch(flat)
        written: list[bool | None] = []
        for head in heads:
            result = results[head]
            if not result:
                written.append(None)
            elif isinstance(result, list):
                written.append(bool(result[0]["signals"]))
            else:
                written.append(False)
        return written

    async def claim(
        self, worker: str, until: float, now: float, limit: int
    ) -> list[dict[str, Any]]:
        """Lease up to ``limit`` due executions to ``worker`` until ``until``; their rows
        (as :data:`CLAIM` returns them)."""
        return await self.store.fetch_all(self._claim_sql, worker, until, now, now, limit)

    async def renew(self, worker: str, until: float) -> list[dict[str, Any]]:
        """Extend every lease of ``worker``; the ``id`` and ``signals`` of each."""
        return await self.store.fetch_all(self._renew_sql, until, worker)

    async def release_all(self, worker: str, now: float) -> None:
        """End every lease of ``worker``, making the executions due ``now``."""
        await self.store.execute(self._release_sql, now, worker)

    async def reclaim(self, execution_id: str, worker: str, until: float) -> bool:
        """Take a released execution back if no one holds it; whether signals wait."""
        rows = await self.store.fetch_all(RECLAIM, worker, until, execution_id)
        return bool(rows and rows[0]["signals"])

    async def signals(self, execution_id: str) -> list[dict[str, Any]]:
        """The signals waiting for the execution, oldest first."""
        return await self.store.fetch_all(SELECT_SIGNALS, execution_id)


def head_statement(head: Start | Save) -> Statement:
    """The statement that writes ``head`` within a :meth:`Store.batch`."""
    if isinstance(head, Start):
        return Statement(
            INSERT_EXECUTION,
            (
                head.id,
                head.kind,
                head.name,
                head.version,
                head.status,
                head.input,
                head.state,
                head.trace_context,
                head.wake_at,
                head.lease_owner,
                head.lease_until,
                head.history_seq,
                head.created_at,
                head.created_at,
            ),
        )
    if head.status is None:
        args: tuple[Any, ...] = (
            head.state,
            head.error,
            head.history_seq,
            head.now,
            head.id,
            head.id,
            head.owner,
        )
        return Statement(SAVE_HELD, args, fetch=True)
    flag = 1 if head.release else 0
    args = (
        head.status,
        head.state,
        head.error,
        head.history_seq,
        head.now,
        head.ended_at,
        head.id,
        flag,
        head.id,
        head.now,
        head.wake,
        flag,
        flag,
        head.id,
        head.owner,
    )
    return Statement(SAVE, args, fetch=True)


def _history_values(row: HistoryRow) -> tuple[Any, ...]:
    return (row.execution_id, row.seq, row.type, row.step_id, row.attempt, row.data, row.at)


__all__ = [
    "Change",
    "ExecutionRecorder",
    "HistoryRow",
    "Save",
    "Start",
    "head_statement",
    "history_rows",
]
