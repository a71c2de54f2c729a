"""The engine's rows: SQL statements over the orchestration tables (migration 4), and the
read-only views of executions and their history that the library and the CLI hand out."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from hybridmesh.core.serialization import dumps, loads
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

# A batch's history records in one statement, on PostgreSQL (one array per column): one
# execution per row costs the server several times as much.
INSERT_HISTORY_MANY = """
INSERT INTO orch_history (execution_id, seq, type, step_id, attempt, data, at)
SELECT * FROM unnest(?::text[], ?::integer[], ?::text[], ?::text[], ?::integer[], ?::text[],
                     ?::double precision[])
"""

# The starts of a batch in one statement, on PostgreSQL: one array per INSERT_EXECUTION
# argument, in order; it returns the ids it inserted.
INSERT_MANY = """
INSERT INTO orch_executions (id, kind, name, version, status, input, state, error,
    trace_context, wake_at, lease_owner, lease_until, history_seq, created_at, updated_at)
SELECT id, kind, name, version, status, input, state, NULL, trace_context, wake_at,
    lease_owner, lease_until, history_seq, created_at, updated_at
FROM unnest(?::text[], ?::text[], ?::text[], ?::integer[], ?::text[], ?::text[], ?::text[],
            ?::text[], ?::double precision[], ?::text[], ?::double precision[], ?::integer[],
            ?::double precision[], ?::double precision[])
    AS v(id, kind, name, version, status, input, state, trace_context, wake_at, lease_owner,
         lease_until, history_seq, created_at, updated_at)
ORDER BY id
ON CONFLICT (id) DO NOTHING
RETURNING id
"""

# Save what a worker holding the lease did; only while it still holds it. Releasing sets the
# lease to NULL and the next due time, or now when signals came meanwhile.
SAVE = """
UPDATE orch_executions SET status = ?, state = ?, error = ?, history_seq = ?, updated_at = ?,
    ended_at = CAST(? AS DOUBLE PRECISION),
    signals = CASE WHEN EXISTS (SELECT 1 FROM orch_signals s WHERE s.execution_id = ?)
                   THEN 1 ELSE 0 END,
    wake_at = CASE WHEN CAST(? AS INTEGER) = 1
                        AND EXISTS (SELECT 1 FROM orch_signals s WHERE s.execution_id = ?)
                   THEN CAST(? AS DOUBLE PRECISION) ELSE CAST(? AS DOUBLE PRECISION) END,
    lease_owner = CASE WHEN CAST(? AS INTEGER) = 1 THEN NULL ELSE lease_owner END,
    lease_until = CASE WHEN CAST(? AS INTEGER) = 1 THEN NULL ELSE lease_until END
WHERE id = ? AND lease_owner = ?
RETURNING signals
"""

#: Where each value stands among SAVE's arguments (some stand there twice), for
#: SAVE_MANY's columns.
SAVE_COLUMNS = (6, 0, 1, 2, 3, 4, 5, 7, 9, 10, 14)

# The saves of a batch in one statement, on PostgreSQL: the ids, then one array per
# SAVE_COLUMNS entry. A round trip per save made every batch, and every step waiting on
# it, take milliseconds. The rows are locked in id order first (materialized), the order
# lease renewals lock them in.
SAVE_MANY = """
WITH locked AS MATERIALIZED (
    SELECT id FROM orch_executions WHERE id = ANY(?::text[]) ORDER BY id FOR UPDATE
)
UPDATE orch_executions AS e SET status = v.status, state = v.state, error = v.error,
    history_seq = v.history_seq, updated_at = v.updated_at, ended_at = v.ended_at,
    signals = CASE WHEN EXISTS (SELECT 1 FROM orch_signals s WHERE s.execution_id = e.id)
                   THEN 1 ELSE 0 END,
    wake_at = CASE WHEN v.release = 1
                        AND EXISTS (SELECT 1 FROM orch_signals s WHERE s.execution_id = e.id)
                   THEN v.now ELSE v.wake END,
    lease_owner = CASE WHEN v.release = 1 THEN NULL ELSE e.lease_owner END,
    lease_until = CASE WHEN v.release = 1 THEN NULL ELSE e.lease_until END
FROM unnest(?::text[], ?::text[], ?::text[], ?::text[], ?::integer[], ?::double precision[],
            ?::double precision[], ?::integer[], ?::double precision[], ?::double precision[],
            ?::text[])
    AS v(id, status, state, error, history_seq, updated_at, ended_at, release, now, wake, owner)
    JOIN locked ON locked.id = v.id
WHERE e.id = v.id AND e.lease_owner = v.owner
RETURNING e.id, e.signals
"""

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
