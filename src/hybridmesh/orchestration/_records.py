"""The engine's rows: SQL statements over the orchestration tables (migration 4), and the
read-only views of executions and their history that the library and the CLI hand out."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from hybridmesh.core.serialization import dumps, loads
from hybridmesh.events.backends.sql import guarded_append
from hybridmesh.orchestration._machine import ExecutionState, Record, Status

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

# Save what a worker holding the lease did; only while it still holds it. Releasing sets the
# lease to NULL and the next due time, or now when signals came meanwhile; a worker that
# keeps the lease leaves the due time as it was (in the past: claiming or starting set it),
# so the execution is claimed again once the lease expires if the worker dies.
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

#: Where each value stands among SAVE's arguments (some stand there twice), for the
#: columns of a batch's saves in :func:`write_many`, and where its state stands.
SAVE_COLUMNS = (6, 0, 2, 3, 4, 5, 7, 9, 10, 14)
SAVE_STATE = 1

#: Where INSERT_EXECUTION's input and state stand among its arguments.
START_TEXTS = (5, 6)

# SAVE for a worker that keeps the lease and leaves the status as it was (most saves: a
# step's outcome and the next step's start). The columns that are indexed (status,
# wake_at) are not set, so the indexes are left alone: SQLite rewrites an index entry for
# every indexed column an UPDATE sets, even to the same value, and PostgreSQL can update
# the row in place (HOT) only when no indexed value changes. A held execution stays due
# since its wake time, as with SAVE.
SAVE_HELD = """
UPDATE orch_executions SET state = ?, error = ?, history_seq = ?, updated_at = ?,
    signals = CASE WHEN EXISTS (SELECT 1 FROM orch_signals s WHERE s.execution_id = ?)
                   THEN 1 ELSE 0 END
WHERE id = ? AND lease_owner = ?
RETURNING signals
"""


def _json_rows(columns: str, texts: tuple[str, ...] = ()) -> str:
    """PostgreSQL: a relation of rows sent as one JSON argument (an array of rows, each an
    array of values in the order of ``columns``, "name type, ..."). One argument of text
    costs the driver far less than an array per column, which it checks value by value.

    The columns named in ``texts`` (long JSON text: an execution's state and input) are
    not in the JSON rows: each comes from a text array argument of its own, after the JSON
    one, one element per row. Inside JSON such text would be escaped by the writer and
    unescaped by the server one character at a time."""
    pairs = [column.split() for column in columns.split(",")]
    values = []
    at = 0
    for name, kind in pairs:
        if name in texts:
            values.append(f"r.{name}")
        else:
            values.append(f"(r.value->>{at})::{kind} AS {name}")
            at += 1
    functions = ", ".join(["jsonb_array_elements(?::jsonb)", *["unnest(?::text[])"] * len(texts)])
    names = ", ".join(["value", *texts])
    return f"(SELECT {', '.join(values)} FROM ROWS FROM ({functions}) AS r({names}))"


# PostgreSQL, :func:`write_many`'s parts. The rows to save are locked in id order first
# (materialized), the order lease renewals lock them in; each save applies only while the
# worker holds the lease.
_SAVED = f"""
locked AS MATERIALIZED (
    SELECT id FROM orch_executions WHERE id = ANY(?::text[]) ORDER BY id FOR UPDATE
),
saved AS (
    UPDATE orch_executions AS e SET status = COALESCE(v.status, e.status), state = v.state,
        error = v.error, history_seq = v.history_seq, updated_at = v.updated_at,
        ended_at = v.ended_at,
        signals = CASE WHEN EXISTS (SELECT 1 FROM orch_signals s WHERE s.execution_id = e.id)
                       THEN 1 ELSE 0 END,
        wake_at = CASE WHEN v.release = 0 THEN e.wake_at
                       WHEN EXISTS (SELECT 1 FROM orch_signals s WHERE s.execution_id = e.id)
                       THEN v.now ELSE v.wake END,
        lease_owner = CASE WHEN v.release = 1 THEN NULL ELSE e.lease_owner END,
        lease_until = CASE WHEN v.release = 1 THEN NULL ELSE e.lease_until END
    FROM {
    _json_rows(
        "id text, status text, state text, error text, history_seq integer, "
        "updated_at float8, ended_at float8, release integer, now float8, wake float8, "
        "owner text",
        texts=("state",),
    )
} AS v
        JOIN locked ON locked.id = v.id
    WHERE e.id = v.id AND e.lease_owner = v.owner
    RETURNING e.id, e.signals
)"""

# One value per INSERT_EXECUTION argument, in order; the ids must be distinct.
_STARTED = f"""
started AS (
    INSERT INTO orch_executions (id, kind, name, version, status, input, state, error,
        trace_context, wake_at, lease_owner, lease_until, history_seq, created_at, updated_at)
    SELECT id, kind, name, version, status, input, state, NULL, trace_context, wake_at,
        lease_owner, lease_until, history_seq, created_at, updated_at
    FROM {
    _json_rows(
        "id text, kind text, name text, version integer, status text, input text, "
        "state text, trace_context text, wake_at float8, lease_owner text, "
        "lease_until float8, history_seq integer, created_at float8, updated_at float8",
        texts=("input", "state"),
    )
} AS v
    ORDER BY id
    ON CONFLICT (id) DO NOTHING
    RETURNING id
)"""

# One value per INSERT_HISTORY column; the records of executions whose row was written.
_HISTORY = f"""
history AS (
    INSERT INTO orch_history (execution_id, seq, type, step_id, attempt, data, at)
    SELECT h.* FROM {
    _json_rows(
        "execution_id text, seq integer, type text, step_id text, attempt integer, "
        "data text, at float8"
    )
} AS h
    WHERE h.execution_id IN (SELECT id FROM written)
)"""


@lru_cache(maxsize=16)
def write_many(saves: bool, starts: bool, history: bool, events: bool) -> str:
    """PostgreSQL: a batch of the engine's writes as one statement, so one round trip in
    its own transaction. Its arguments, for the parts asked for: the saves (the ids to
    lock as an array, then the rows as JSON, each the values at :data:`SAVE_COLUMNS`, then
    their states as an array; a held save, as SAVE_HELD, has a NULL status, which keeps
    the row's, and release 0), the starts (JSON rows of INSERT_EXECUTION's arguments but
    the input and the state, then the inputs and the states as arrays: see
    :data:`START_TEXTS`), the history records (JSON rows of INSERT_HISTORY's) and the
    events for the event log (the execution of each, then one array per column: see
    ``guarded_append``). Records and events count only for executions whose row was
    written. Returns a row per written execution, its id and
    ``signals`` (NULL for a start), and one row of NULLs when events were appended."""
    if not (saves or starts):
        raise ValueError("a batch of the engine's writes saves or starts something")
    parts = []
    written = []
    if saves:
        parts.append(_SAVED)
        written.append("SELECT id FROM saved")
    if starts:
        parts.append(_STARTED)
        written.append("SELECT id FROM started")
    parts.append(f"\nwritten AS ({' UNION ALL '.join(written)})")
    if history:
        parts.append(_HISTORY)
    if events:
        parts.append("\n" + guarded_append("written"))
    selects = []
    if saves:
        selects.append("SELECT id, signals FROM saved")
    if starts:
        selects.append("SELECT id, NULL::integer AS signals FROM started")
    if events:
        selects.append("SELECT NULL::text AS id, NULL::integer AS signals FROM notified")
    return f"WITH{','.join(parts)}\n{' UNION ALL '.join(selects)}\n"


# Claim executions that are due and not held (or whose holder's lease expired): those a
# dead worker held first (they may hold resources, such as reserved stock), then oldest due.
CLAIM = """
UPDATE orch_executions SET lease_owner = ?, lease_until = ?
WHERE id IN (
    SELECT id FROM orch_executions
    WHERE wake_at <= ? AND (lease_owner IS NULL OR lease_until <= ?)
    ORDER BY lease_owner IS NULL, wake_at LIMIT ?{lock}
)
RETURNING id, kind, name, version, status, input, state, trace_context, history_seq, signals,
    created_at
"""
SKIP_LOCKED = " FOR UPDATE SKIP LOCKED"

# Renew every lease of a worker. Rows are locked in id order, the order group commits write
# them in, so a renewal and a batch of saves never deadlock on PostgreSQL.
RENEW = """
UPDATE orch_executions SET lease_until = ?
WHERE id IN (SELECT id FROM orch_executions WHERE lease_owner = ? ORDER BY id{lock})
RETURNING id, signals
"""
#: PostgreSQL: lock the renewed rows in id order.
FOR_UPDATE = " FOR UPDATE"

RELEASE_ALL = """
UPDATE orch_executions SET lease_owner = NULL, lease_until = NULL, wake_at = ?
WHERE id IN (SELECT id FROM orch_executions WHERE lease_owner = ? AND wake_at IS NOT NULL
             ORDER BY id{lock})
"""

# Only for an execution that has not ended: a late event for an ended one leaves nothing.
INSERT_SIGNAL = """
INSERT INTO orch_signals (id, execution_id, kind, step_id, data, at)
SELECT ?, ?, ?, ?, ?, ? WHERE EXISTS (
    SELECT 1 FROM orch_executions WHERE id = ? AND status IN ('running', 'compensating')
)
"""
# A signal makes its execution due now, unless it has ended.
WAKE_FOR_SIGNAL = (
    "UPDATE orch_executions SET signals = 1, wake_at = ? "
    "WHERE id = ? AND status IN ('running', 'compensating')"
)
DELETE_SIGNAL = "DELETE FROM orch_signals WHERE id = ?"
SELECT_SIGNALS = (
    "SELECT id, kind, step_id, data FROM orch_signals WHERE execution_id = ? ORDER BY at, id"
)

EXECUTION_COLUMNS = (
    "id, kind, name, version, status, input, state, error, trace_context, wake_at, "
    "lease_owner, lease_until, created_at, updated_at, ended_at"
)


def _time(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


@dataclass(frozen=True)
class StepView:
    """Where one step of an execution stands."""

    step_id: str
    status: str
    attempt: int
    result: Any = None
    error: str | None = None
    compensation: str | None = None  # none, pending, running, retrying, compensated, failed
    compensation_error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "step_id": self.step_id,
            "status": self.status,
            "attempt": self.attempt,
            "result": self.result,
            "error": self.error,
            "compensation": self.compensation,
            "compensation_error": self.compensation_error,
        }


@dataclass(frozen=True)
class Execution:
    """An execution as stored: its status, each step's state and the context."""

    id: str
    kind: str
    name: str
    version: int
    status: Status
    input: Any
    context: dict[str, Any]
    steps: tuple[StepView, ...]
    error: str | None
    trace_context: str | None
    created_at: datetime
    updated_at: datetime
    ended_at: datetime | None
    wake_at: datetime | None = None
    lease_owner: str | None = None

    @property
    def ended(self) -> bool:
        return self.status.terminal

    def step(self, step_id: str) -> StepView:
        for step in self.steps:
            if step.step_id == step_id:
                return step
        raise KeyError(step_id)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "name": self.name,
            "version": self.version,
            "status": self.status.value,
            "input": self.input,
            "context": self.context,
            "steps": [step.to_dict() for step in self.steps],
            "error": self.error,
            "trace_context": self.trace_context,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "ended_at": self.ended_at.isoformat() if self.ended_at else None,
            "wake_at": self.wake_at.isoformat() if self.wake_at else None,
            "lease_owner": self.lease_owner,
        }

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Execution:
        state = ExecutionState.from_dict(loads(row["state"]))
        steps = _step_views(state)
        created = _time(row["created_at"])
        updated = _time(row["updated_at"])
        assert created is not None and updated is not None  # NOT NULL columns
        return cls(
            id=row["id"],
            kind=row["kind"],
            name=row["name"],
            version=int(row["version"]),
            status=Status(row["status"]),
            input=loads(row["input"]),
            context=state.context,
            steps=steps,
            error=row["error"],
            trace_context=row["trace_context"],
            created_at=created,
            updated_at=updated,
            ended_at=_time(row["ended_at"]),
            wake_at=_time(row["wake_at"]),
            lease_owner=row["lease_owner"],
        )


def _step_views(state: ExecutionState) -> tuple[StepView, ...]:
    return tuple(
        StepView(
            step_id=step_id,
            status=s.status.value,
            attempt=s.attempt,
            result=s.result,
            error=s.error,
            compensation=s.comp.value,
            compensation_error=s.comp_error,
        )
        for step_id, s in state.steps.items()
    )


def ended_execution(
    *,
    id: str,
    kind: str,
    name: str,
    version: int,
    status: Status,
    input: Any,
    state: ExecutionState,
    trace_context: str | None,
    created_at: float,
    ended_at: float,
) -> Execution:
    """The view of an execution its worker just saved as ended, without reading it back."""
    created = _time(created_at)
    ended = _time(ended_at)
    assert created is not None and ended is not None
    return Execution(
        id=id,
        kind=kind,
        name=name,
        version=version,
        status=status,
        input=input,
        context=state.context,
        steps=_step_views(state),
        error=state.failure,
        trace_context=trace_context,
        created_at=created,
        updated_at=ended,
        ended_at=ended,
    )


@dataclass(frozen=True)
class HistoryEvent:
    """One record of an execution's append-only history."""

    seq: int
    type: str
    step_id: str | None
    attempt: int | None
    data: Any
    at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "type": self.type,
            "step_id": self.step_id,
            "attempt": self.attempt,
            "data": self.data,
            "at": self.at.isoformat(),
        }

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> HistoryEvent:
        at = _time(row["at"])
        assert at is not None
        return cls(
            seq=int(row["seq"]),
            type=row["type"],
            step_id=row["step_id"],
            attempt=row["attempt"],
            data=loads(row["data"]) if row["data"] else None,
            at=at,
        )


def history_rows(
    execution_id: str, seq: int, records: list[Record], now: float
) -> list[tuple[Any, ...]]:
    """The ``orch_history`` rows of ``records``, numbered after ``seq``."""
    return [
        (
            execution_id,
            seq + index,
            record.type,
            record.step_id,
            record.attempt,
            dumps(record.data) if record.data is not None else None,
            now,
        )
        for index, record in enumerate(records, start=1)
    ]


__all__ = ["Execution", "HistoryEvent", "StepView", "ended_execution", "history_rows"]
