"""What the engine runs: a definition (saga or workflow) reduced to steps and rules.

A saga is a workflow whose steps each depend on the one before and whose error handling is
compensation; both become one :class:`Plan`, and one engine runs every plan the same way.
Plans are frozen and turn into JSON and back, so an execution can keep the exact version it
started with in the store.

Durations are milliseconds, as in the definitions users write. :class:`Operation` and
:class:`RetrySpec` are also what definitions hold; :data:`READ_CONFIG` is how the
definitions loader reads them (snake_case or camelCase keys, unknown keys refused). Their
numbers and names are constrained types (:mod:`hybridmesh.core.limits`, :data:`OperationName`,
:data:`Endpoint`), and :meth:`Plan.from_dict` reads a stored plan with the same rules, so a
plan that would not run is refused where it is read, never run.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Annotated, Any
from urllib.parse import unquote

import pydantic
from pydantic import AfterValidator, ConfigDict, StrictStr, TypeAdapter
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from hybridmesh.core.errors import Problem, ValidationError
from hybridmesh.core.limits import (
    Attempts,
    DeadlineMs,
    DelayMs,
    Multiplier,
    TimeoutMs,
    Version,
    describe,
    dotted,
)
from hybridmesh.core.names import function_name_problem
from hybridmesh.core.serialization import dumps, loads

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

#: How long an operation name may be.
MAX_NAME = 128
#: How long an endpoint may be.
MAX_ENDPOINT = 2048

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
#: Characters an endpoint never holds: whitespace and control characters (they would end
#: or split the request line), a fragment (never sent), a backslash (a separator to some
#: servers) and braces (templates are rendered in payloads, not in endpoints).
_NOT_IN_ENDPOINT = re.compile(r"[\x00-\x20\x7f#\\{}]")


def operation_name_problem(name: str) -> str | None:
    """What makes ``name`` unfit to name an operation (None: nothing).

    An operation name is 1 to 128 letters, digits, ``.``, ``_`` and ``-``, starting with a
    letter or a digit, with no ``..``: it is one path segment of
    ``/operations/{operation}`` (and part of a batch file's name), so it can never reach
    outside it, and it needs no encoding.
    """
    if not name.strip():
        return "must not be empty"
    if len(name) > MAX_NAME or not _NAME.fullmatch(name) or ".." in name:
        return (
            f"{name[:MAX_NAME]!r} is not an operation name: use up to {MAX_NAME} letters, "
            "digits, '.', '_' and '-', starting with a letter or digit, without '..'"
        )
    return None


def endpoint_problem(endpoint: str) -> str | None:
    """What makes ``endpoint`` unfit as a step's path on its service (None: nothing).

    An endpoint is a path under the service's base URL: it starts with ``/``, has no
    segment ``.`` or ``..`` (also percent-encoded), no whitespace, control characters,
    ``#``, ``\\`` or braces, and at most 2048 characters. A query (``?active=true``) is
    kept.
    """
    if not endpoint.startswith("/"):
        return "must start with '/'"
    if len(endpoint) > MAX_ENDPOINT:
        return f"must be at most {MAX_ENDPOINT} characters"
    bad = _NOT_IN_ENDPOINT.search(endpoint)
    if bad is not None:
        if bad.group() in "{}":
            return "must not contain '{' or '}': templates are rendered in payloads only"
        return f"must not contain {bad.group()!r}: an endpoint is a path on the service"
    path = endpoint.split("?", 1)[0]
    if any(unquote(segment) in (".", "..") for segment in path.split("/")):
        return "must not contain '.' or '..' segments: it stays under the service's base URL"
    return None


def batch_operation_name(operation: Operation) -> str:
    """The batch operation a ``batch`` step queues: its ``batch_operation``, else the last
    part of its endpoint."""
    return operation.batch_operation or operation.endpoint.strip("/").split("/")[-1]


def operation_endpoint(name: str) -> str:
    """``/operations/{name}``, the path a saga step (or its compensation) calls; raises
    :class:`~hybridmesh.core.errors.ValidationError` for a name that is not an operation
    name (see :func:`operation_name_problem`), which is refused, never encoded."""
    problem = operation_name_problem(name)
    if problem is not None:
        raise ValidationError([Problem(problem, field="operation")])
    return f"/operations/{name}"


def _checked(rule: Any) -> AfterValidator:
    def check(value: str) -> str:
        problem = rule(value)
        if problem is not None:
            raise PydanticCustomError("invalid_name", problem)
        return value

    return AfterValidator(check)


#: An operation's name (:func:`operation_name_problem`).
OperationName = Annotated[StrictStr, _checked(operation_name_problem)]
#: A function's name: what a function can be registered under
#: (:func:`hybridmesh.core.names.function_name_problem`), and an operation name too.
FunctionName = Annotated[
    StrictStr,
    _checked(lambda name: function_name_problem(name) or operation_name_problem(name)),
]
#: A path on a service (:func:`endpoint_problem`).
Endpoint = Annotated[StrictStr, _checked(endpoint_problem)]


@dataclass(frozen=True, slots=True)
class RetrySpec:
    """A step's retry policy. ``max_attempts`` counts the first attempt.

    The wait before attempt n+1 is ``backoff_ms * multiplier**(n-1)``, capped at
    ``max_backoff_ms``. ``non_retryable`` names failures that skip the remaining attempts:
    error class names (``"ValidationError"``), ``"4xx"`` (any client error other than 408
    and 429; skipped by default), or a status (``"409"``).
    """

    __pydantic_config__ = READ_CONFIG

    max_attempts: Attempts = 1
    backoff_ms: DelayMs = 1000
    multiplier: Multiplier = 2.0
    max_backoff_ms: DelayMs = 60_000
    non_retryable: tuple[StrictStr, ...] = ("4xx",)

    def delay_ms(self, attempt: int) -> int:
        """Milliseconds to wait after failed attempt ``attempt`` (1-based).

        Compensations retry past ``max_attempts``, so ``attempt`` has no bound: once the
        wait has reached ``max_backoff_ms`` it stays there, without computing a power that
        would overflow a float.
        """
        base, cap, steps = self.backoff_ms, self.max_backoff_ms, max(0, attempt - 1)
        if base >= cap:
            return int(cap)
        if base <= 0 or steps == 0 or self.multiplier == 1:
            return int(base)
        if self.multiplier < 1 or steps * math.log(self.multiplier) > math.log(cap / base) + 1:
            return int(cap if self.multiplier > 1 else base)
        return int(min(cap, base * self.multiplier**steps))


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
    endpoint: Endpoint = "/"
    payload: Mapping[str, Any] = field(default_factory=dict)
    #: The function's name, for ``type: function`` (a serverless service's defaults to the
    #: service's name).
    function_name: FunctionName | None = None
    #: The batch operation's name, for ``type: batch`` (defaults to the endpoint's last part).
    batch_operation: OperationName | None = None


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
        """The plan :meth:`to_dict` gave, read with the rules definitions are read with.

        Raises :class:`~hybridmesh.core.errors.ValidationError` naming each field that is
        missing, of the wrong type or out of bounds (``steps[0].retry.multiplier: must be
        a number``), as a plan stored by an older release that allowed it would be.
        """
        reader = _Reader()
        try:
            plan = reader.plan(data)
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise ValidationError(
                [Problem(f"not a stored plan ({type(error).__name__}: {error})")]
            ) from None
        if reader.problems:
            raise ValidationError(reader.problems)
        return plan


def _operation_to_dict(operation: Operation) -> dict[str, Any]:
    return {
        "type": operation.type,
        "method": operation.method,
        "endpoint": operation.endpoint,
        "payload": dict(operation.payload),
        "function": operation.function_name,
        "batch_operation": operation.batch_operation,
    }


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


_RETRY: TypeAdapter[RetrySpec] = TypeAdapter(RetrySpec)
_OPERATION: TypeAdapter[Operation] = TypeAdapter(Operation)
_TIMEOUT: TypeAdapter[int] = TypeAdapter(TimeoutMs)
_DEADLINE: TypeAdapter[int | None] = TypeAdapter(DeadlineMs | None)
_VERSION: TypeAdapter[int] = TypeAdapter(Version)


class _Reader:
    """Reads a stored plan, noting each problem at its field (``steps[0].timeout_ms``)."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def checked(self, adapter: TypeAdapter[Any], value: Any, where: str, default: Any) -> Any:
        try:
            return adapter.validate_python(value)
        except pydantic.ValidationError as invalid:
            for error in invalid.errors():
                self.problems.append(Problem(describe(error), field=where + dotted(error)))
            return default

    def plan(self, data: Mapping[str, Any]) -> Plan:
        return Plan(
            kind=Kind(data["kind"]),
            name=data["name"],
            version=self.checked(_VERSION, data["version"], "version", 1),
            error_handling=ErrorHandling(data["error_handling"]),
            consistency=Consistency(data.get("consistency", "saga")),
            timeout_ms=self.checked(_DEADLINE, data.get("timeout_ms"), "timeout_ms", None),
            description=data.get("description", ""),
            metadata=dict(data.get("metadata") or {}),
            steps=tuple(
                self.step(step, f"steps[{index}]") for index, step in enumerate(data["steps"])
            ),
        )

    def operation(self, data: Mapping[str, Any], where: str) -> Operation:
        fields = {
            "type": data.get("type", "command"),
            "method": data.get("method", "POST"),
            "endpoint": data.get("endpoint", "/"),
            "payload": dict(data.get("payload") or {}),
            "function_name": data.get("function"),
            "batch_operation": data.get("batch_operation"),
        }
        found: Operation = self.checked(_OPERATION, fields, where, Operation())
        return found

    def step(self, data: Mapping[str, Any], where: str) -> PlanStep:
        compensation = data.get("compensation")
        return PlanStep(
            step_id=data["step_id"],
            name=data.get("name") or data["step_id"],
            service=data.get("service"),
            architecture=data.get("architecture"),
            operation=self.operation(data.get("operation") or {}, f"{where}.operation"),
            dependencies=tuple(data.get("dependencies") or ()),
            # Plans stored before ``alone`` had a ``parallel`` flag that meant nothing.
            alone=bool(data.get("alone", False)),
            optional=bool(data.get("optional", False)),
            timeout_ms=self.checked(
                _TIMEOUT, data.get("timeout_ms", 30_000), f"{where}.timeout_ms", 30_000
            ),
            retry=self.checked(_RETRY, data.get("retry") or {}, f"{where}.retry", RetrySpec()),
            total_timeout_ms=self.checked(
                _DEADLINE, data.get("total_timeout_ms"), f"{where}.total_timeout_ms", None
            ),
            compensation=(
                self.operation(compensation, f"{where}.compensation") if compensation else None
            ),
            completion=Completion(data.get("completion", "sync")),
            completion_timeout_ms=self.checked(
                _DEADLINE,
                data.get("completion_timeout_ms"),
                f"{where}.completion_timeout_ms",
                None,
            ),
        )


def stored_copy_problems(plan: Plan) -> list[Problem]:
    """What keeps ``plan`` from being stored and run as it is (empty: nothing).

    A plan is stored as JSON and read back with :meth:`Plan.from_dict` before it runs, so
    it must survive that trip unchanged: no value JSON cannot hold (an integer beyond 64
    bits, an infinity, which JSON would turn into null), nothing the stored form's rules
    refuse.
    """
    try:
        text = dumps(plan.to_dict())
    except (TypeError, ValueError) as error:
        return [Problem(f"cannot be stored as JSON: {error}")]
    try:
        back = Plan.from_dict(loads(text))
    except ValidationError as invalid:
        return [
            Problem(f"would not run as stored: {problem.message}", field=problem.field)
            for problem in invalid.problems
        ]
    if back != plan:
        return [Problem("changes when stored as JSON and read back")]
    return []


__all__ = [
    "MAX_ENDPOINT",
    "MAX_NAME",
    "OPERATION_TYPES",
    "READ_CONFIG",
    "Completion",
    "Consistency",
    "Endpoint",
    "ErrorHandling",
    "Kind",
    "Operation",
    "OperationName",
    "Plan",
    "PlanStep",
    "RetrySpec",
    "batch_operation_name",
    "endpoint_problem",
    "operation_endpoint",
    "operation_name_problem",
    "stored_copy_problems",
]
