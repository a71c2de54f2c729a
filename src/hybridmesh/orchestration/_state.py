"""What the store keeps of an execution: its status and each step's state, as JSON.

The :class:`~hybridmesh.orchestration._machine.Machine` changes these; the engine saves them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any

from hybridmesh.core.serialization import dumps
from hybridmesh.orchestration.plan import Plan


class Status(StrEnum):
    """An execution's status. The last five are terminal."""

    RUNNING = "running"
    COMPENSATING = "compensating"
    COMPLETED = "completed"
    FAILED = "failed"
    COMPENSATED = "compensated"
    COMPENSATION_FAILED = "compensation_failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in _TERMINAL


_TERMINAL = frozenset(
    {
        Status.COMPLETED,
        Status.FAILED,
        Status.COMPENSATED,
        Status.COMPENSATION_FAILED,
        Status.CANCELLED,
    }
)


class StepStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"  # an attempt is in flight
    WAITING = "waiting"  # the call was accepted; its completion event is awaited
    RETRYING = "retrying"  # waiting for the backoff to end
    COMPLETED = "completed"
    FAILED = "failed"
    SKIPPED = "skipped"  # a dependency failed (continue-on-error)

    @property
    def ended(self) -> bool:
        return self in ENDED

    @property
    def active(self) -> bool:
        return self in ACTIVE


#: Step statuses that are final, and those of a step under way (sets: the machine tests
#: them for every step on every round).
ENDED = frozenset({StepStatus.COMPLETED, StepStatus.FAILED, StepStatus.SKIPPED})
ACTIVE = frozenset({StepStatus.RUNNING, StepStatus.WAITING, StepStatus.RETRYING})


class CompStatus(StrEnum):
    NONE = "none"
    PENDING = "pending"
    RUNNING = "running"
    RETRYING = "retrying"
    COMPENSATED = "compensated"
    FAILED = "failed"


@dataclass
class StepState:
    status: StepStatus = StepStatus.PENDING
    attempt: int = 0
    order: int | None = None  # when the step first started, among its execution's steps
    first_started: float | None = None
    retry_at: float | None = None
    deadline: float | None = None  # a waiting step's completion deadline
    result: Any = None
    error: str | None = None
    ambiguous: bool = False  # an attempt may have had effects: compensate it too
    comp: CompStatus = CompStatus.NONE
    comp_attempt: int = 0
    comp_retry_at: float | None = None
    comp_error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StepState:
        return cls(
            status=StepStatus(data.get("status", "pending")),
            attempt=int(data.get("attempt", 0)),
            order=data.get("order"),
            first_started=data.get("first_started"),
            retry_at=data.get("retry_at"),
            deadline=data.get("deadline"),
            result=data.get("result"),
            error=data.get("error"),
            ambiguous=bool(data.get("ambiguous", False)),
            comp=CompStatus(data.get("comp", "none")),
            comp_attempt=int(data.get("comp_attempt", 0)),
            comp_retry_at=data.get("comp_retry_at"),
            comp_error=data.get("comp_error"),
        )


@dataclass
class ExecutionState:
    """What the store keeps of a running execution, besides its status."""

    steps: dict[str, StepState]
    context: dict[str, Any] = field(default_factory=dict)
    deadline: float | None = None
    started: int = 0  # steps started so far (gives each its order)
    failure: str | None = None  # why the forward phase stopped
    cancelled: bool = False
    timed_out: bool = False

    @classmethod
    def new(cls, plan: Plan, context: dict[str, Any], now: float) -> ExecutionState:
        deadline = now + plan.timeout_ms / 1000 if plan.timeout_ms else None
        return cls({s.step_id: StepState() for s in plan.steps}, dict(context), deadline)

    def to_json(self) -> str:
        """The state as JSON text, for the store (:meth:`from_dict` reads it back; it
        reads a field left out as a new execution's, as states stored sparsely have it)."""
        return dumps(
            {
                "steps": {step_id: s.to_dict() for step_id, s in self.steps.items()},
                "context": self.context,
                "deadline": self.deadline,
                "started": self.started,
                "failure": self.failure,
                "cancelled": self.cancelled,
                "timed_out": self.timed_out,
            }
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExecutionState:
        return cls(
            steps={k: StepState.from_dict(v) for k, v in data["steps"].items()},
            context=dict(data.get("context") or {}),
            deadline=data.get("deadline"),
            started=int(data.get("started", 0)),
            failure=data.get("failure"),
            cancelled=bool(data.get("cancelled", False)),
            timed_out=bool(data.get("timed_out", False)),
        )


__all__ = ["ACTIVE", "ENDED", "CompStatus", "ExecutionState", "Status", "StepState", "StepStatus"]
