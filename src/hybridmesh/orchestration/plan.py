"""What the engine runs: a definition (saga or workflow) reduced to steps and rules.

A saga is a workflow whose steps each depend on the one before and whose error handling is
compensation; both become one :class:`Plan`, and one engine runs every plan the same way.
Plans are frozen and turn into JSON and back, so an execution can keep the exact version it
started with in the store.

Durations are milliseconds, as in the definitions users write. :class:`Operation` and
:class:`RetrySpec` are also what definitions hold; :data:`READ_CONFIG` is how the
definitions loader reads them (snake_case or camelCase keys, unknown keys refused).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from pydantic import ConfigDict, StrictFloat, StrictInt, StrictStr
from pydantic.alias_generators import to_camel

#: How definitions are read from plain data: each field by its name or its camelCase alias
#: (``max_attempts`` or ``maxAttempts``); an unknown key is an error.
READ_CONFIG = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class Kind(StrEnum):
    """What kind of definition a plan came from."""

    SAGA = "saga"
    WORKFLOW = "workflow"


class ErrorHandling(StrEnum):
    """What a failed (non-optional) step does to the rest of the execution."""

    FAIL_FAST = "fail-fast"  # stop scheduling, wait for running steps, end failed
    CONTINUE_ON_ERROR = "continue-on-error"  # run what does not depend on it, end failed
    COMPENSATION = "compensation"  # undo the completed steps in reverse, end compensated


class Consistency(StrEnum):
    STRONG = "strong"
    EVENTUAL = "eventual"
    SAGA = "saga"


class Completion(StrEnum):
    """How a step reports its end: by its call's answer, or later by an event."""

    SYNC = "sync"
    EVENT = "event"  # saga.step.completed / saga.step.failed, correlated by ids


#: Operation types. ``batch`` on a traditional monolith is queued to the batch integration;
#: ``function`` invokes a registered serverless function.
OPERATION_TYPES = ("command", "query", "batch", "function")


@dataclass(frozen=True, slots=True)
class RetrySpec:
    """A step's retry policy. ``max_attempts`` counts the first attempt.

    The wait before attempt n+1 is ``backoff_ms * multiplier**(n-1)``, capped at
    ``max_backoff_ms``. ``non_retryable`` names failures that skip the remaining attempts:
    error class names (``"ValidationError"``), ``"4xx"`` (any client error other than 408
    and 429; skipped by default), or a status (``"409"``).
    """

    __pydantic_config__ = READ_CONFIG

    max_attempts: StrictInt = 1
    backoff_ms: StrictInt = 1000
    multiplier: StrictFloat = 2.0
    max_backoff_ms: StrictInt = 60_000
    non_retryable: tuple[StrictStr, ...] = ("4xx",)

    def delay_ms(self, attempt: int) -> int:
        """Milliseconds to wait after failed attempt ``attempt`` (1-based)."""
        base = self.backoff_ms * self.multiplier ** max(0, attempt - 1)
        return int(min(self.max_backoff_ms, base))


@dataclass(frozen=True, slots=True)
class Operation:
    """One call a step makes: a ``command`` or ``query`` to a service (REST by its method and
    endpoint, or as the client's strategy picks), a ``batch`` operation (to the batch
    integration on a traditional monolith), or a serverless ``function``.

    A workflow step's ``operation`` and ``compensation`` are written as this type too.
    """

    __pydantic_config__ = READ_CONFIG

    type: StrictStr = "command"
    method: StrictStr = "POST"
    endpoint: StrictStr = "/"
    payload: Mapping[str, Any] = field(default_factory=dict)
    #: The function's name, for ``type: function`` (a serverless service's defaults to the
    #: service's name).
    function_name: StrictStr | None = None
    #: The batch operation's name, for ``type: batch`` (defaults to the endpoint's last part).
    batch_operation: StrictStr | None = None


@dataclass(frozen=True, slots=True)
class PlanStep:
    """One step of a plan. ``service`` is None only for a function step."""

    step_id: str
    name: str
    service: str | None
    #: The target's architecture as the definition states it; None means "ask the registry".
    architecture: str | None
    operation: Operation
    dependencies: tuple[str, ...] = ()
    #: Runs with no other step of its execution: it starts only when none is under way,
    #: and none starts until it ended (a workflow step's ``parallel: false``).
    alone: bool = False
    optional: bool = False
    #: One attempt's timeout.
    timeout_ms: int = 30_000
    retry: RetrySpec = field(default_factory=RetrySpec)
    #: All attempts of the step together, waits between them included (None: no bound).
    total_timeout_ms: int | None = None
    compensation: Operation | None = None
    completion: Completion = Completion.SYNC
    #: How long an ``event`` completion may take after the call was accepted.
    completion_timeout_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Plan:
    """A versioned definition, ready to run. ``name`` is the saga type or workflow id."""

    kind: Kind
    name: str
    version: int
    steps: tuple[PlanStep, ...]
    error_handling: ErrorHandling
    consistency: Consistency = Consistency.SAGA
    timeout_ms: int | None = None
    description: str = ""
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def step(self, step_id: str) -> PlanStep:
        for step in self.steps:
            if step.step_id == step_id:
                return step
        raise KeyError(step_id)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data; :meth:`from_dict` reads it back."""
        return {
            "kind": self.kind.value,
            "name": self.name,
            "version": self.version,
            "error_handling": self.error_handling.value,
            "consistency": self.consistency.value,
            "timeout_ms": self.timeout_ms,
            "description": self.description,
            "metadata": dict(self.metadata),
            "steps": [_step_to_dict(step) for step in self.steps],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Plan:
        return cls(
            kind=Kind(data["kind"]),
            name=data["name"],
            version=int(data["version"]),
            error_handling=ErrorHandling(data["error_handling"]),
            consistency=Consistency(data.get("consistency", "saga")),
            timeout_ms=data.get("timeout_ms"),
            description=data.get("description", ""),
            metadata=dict(data.get("metadata") or {}),
            steps=tuple(_step_from_dict(step) for step in data["steps"]),
        )


def _operation_to_dict(operation: Operation) -> dict[str, Any]:
    return {
        "type": operation.type,
        "method": operation.method,
        "endpoint": operation.endpoint,
        "payload": dict(operation.payload),
        "function": operation.function_name,
        "batch_operation": operation.batch_operation,
    }


def _operation_from_dict(data: Mapping[str, Any]) -> Operation:
    return Operation(
        type=data.get("type", "command"),
        method=data.get("method", "POST"),
        endpoint=data.get("endpoint", "/"),
        payload=dict(data.get("payload") or {}),
        function_name=data.get("function"),
        batch_operation=data.get("batch_operation"),
    )


def _step_to_dict(step: PlanStep) -> dict[str, Any]:
    retry = step.retry
    return {
        "step_id": step.step_id,
        "name": step.name,
        "service": step.service,
        "architecture": step.architecture,
        "operation": _operation_to_dict(step.operation),
        "dependencies": list(step.dependencies),
        "alone": step.alone,
        "optional": step.optional,
        "timeout_ms": step.timeout_ms,
        "total_timeout_ms": step.total_timeout_ms,
        "retry": {
            "max_attempts": retry.max_attempts,
            "backoff_ms": retry.backoff_ms,
            "multiplier": retry.multiplier,
            "max_backoff_ms": retry.max_backoff_ms,
            "non_retryable": list(retry.non_retryable),
        },
        "compensation": (
            _operation_to_dict(step.compensation) if step.compensation is not None else None
        ),
        "completion": step.completion.value,
        "completion_timeout_ms": step.completion_timeout_ms,
    }


def _step_from_dict(data: Mapping[str, Any]) -> PlanStep:
    retry = data.get("retry") or {}
    compensation = data.get("compensation")
    return PlanStep(
        step_id=data["step_id"],
        name=data.get("name") or data["step_id"],
        service=data.get("service"),
        architecture=data.get("architecture"),
        operation=_operation_from_dict(data.get("operation") or {}),
        dependencies=tuple(data.get("dependencies") or ()),
        # Plans stored before ``alone`` had a ``parallel`` flag that meant nothing.
        alone=bool(data.get("alone", False)),
        optional=bool(data.get("optional", False)),
        timeout_ms=int(data.get("timeout_ms", 30_000)),
        retry=RetrySpec(
            max_attempts=int(retry.get("max_attempts", 1)),
            backoff_ms=int(retry.get("backoff_ms", 1000)),
            multiplier=float(retry.get("multiplier", 2.0)),
            max_backoff_ms=int(retry.get("max_backoff_ms", 60_000)),
            non_retryable=tuple(retry.get("non_retryable", ("4xx",))),
        ),
        total_timeout_ms=data.get("total_timeout_ms"),
        compensation=_operation_from_dict(compensation) if compensation else None,
        completion=Completion(data.get("completion", "sync")),
        completion_timeout_ms=data.get("completion_timeout_ms"),
    )


__all__ = [
    "OPERATION_TYPES",
    "READ_CONFIG",
    "Completion",
    "Consistency",
    "ErrorHandling",
    "Kind",
    "Operation",
    "Plan",
    "PlanStep",
    "RetrySpec",
]
