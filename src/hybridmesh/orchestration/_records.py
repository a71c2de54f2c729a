"""The read-only views of executions and their history that the library and the CLI hand
out, read from the orchestration tables (migration 4)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from hybridmesh.core.serialization import loads
from hybridmesh.orchestration._machine import ExecutionState, Status

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


__all__ = ["EXECUTION_COLUMNS", "Execution", "HistoryEvent", "StepView", "ended_execution"]
