"""How one attempt of a step reaches its target, by the target's architecture.

As the integration guide has it:

- **microservice**: the hybrid client with the step's timeout;
- **modular monolith**: REST, with at least a 30 s timeout;
- **traditional monolith**: at most a 60 s timeout and one retry; ``batch`` operations are
  queued to the batch integration instead of called;
- **serverless**: the step invokes a registered function (by ``function``, else the
  service's name); without one, the function's HTTP endpoint is called through the client.

Every attempt carries one idempotency key per (execution, step) (another for the step's
compensation), whatever the attempt, so a retried or recovered step never acts twice. The
engine makes its own, durable retries: the client makes exactly one attempt per call.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from hybridmesh.client import CommunicationRequest, HybridClient, RequestType
from hybridmesh.core.errors import (
    BulkheadFullError,
    CircuitOpenError,
    ConfigurationError,
    NotFoundError,
    RateLimitedError,
    TransportError,
    TransportNotConfiguredError,
    ValidationError,
)
from hybridmesh.core.ids import idempotency_key
from hybridmesh.orchestration._machine import Failure
from hybridmesh.orchestration.plan import (
    Completion,
    Operation,
    PlanStep,
    RetrySpec,
    batch_operation_name,
)
from hybridmesh.registry import ServiceRegistry

#: The caller every step call names as its source.
ORCHESTRATOR = "hybridmesh-orchestrator"

MICROSERVICE = "microservice"
MODULAR_MONOLITH = "modular-monolith"
TRADITIONAL_MONOLITH = "traditional-monolith"
SERVERLESS = "serverless"

#: Modular monoliths get at least this long per attempt (ms).
MONOLITH_MIN_TIMEOUT_MS = 30_000
#: Traditional monoliths get at most this long per attempt (ms), and ...
LEGACY_MAX_TIMEOUT_MS = 60_000
#: ... at most this many attempts (one retry).
LEGACY_MAX_ATTEMPTS = 2


class FunctionInvoker(Protocol):
    """The serverless functions a step can invoke (``hybridmesh.functions``)."""

    def names(self) -> list[str]: ...

    async def invoke(
        self,
        name: str,
        payload: Mapping[str, Any],
        *,
        idempotency_key: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - the function's own timeout
    ) -> Any: ...


class BatchQueue(Protocol):
    """Where legacy batch operations are queued (``hybridmesh.batch``)."""

    async def enqueue(
        self,
        target: str,
        operation: str,
        payload: Mapping[str, Any],
        *,
        idempotency_key: str | None = None,
    ) -> Any: ...


@dataclass(slots=True)  # not frozen: one is made per attempt, and frozen fields cost more
class Attempt:
    """One attempt to make: the step, which of its operations, and the rendered payload."""

    execution_id: str
    step: PlanStep
    operation: Operation
    payload: Any
    compensation: bool
    attempt: int

    @property
    def key(self) -> str:
        parts = [self.execution_id, self.step.step_id]
        if self.compensation:
            parts.append("compensation")
        return idempotency_key(*parts)


class StepRunner:
    """Makes attempts through the hybrid client, the functions and the batch queue."""

    def __init__(
        self,
        client: HybridClient | None,
        registry: ServiceRegistry,
        *,
        functions: FunctionInvoker | None = None,
        batch: BatchQueue | None = None,
        source: str = ORCHESTRATOR,
    ) -> None:
        self.client = client
        self.registry = registry
        self.functions = functions
        self.batch = batch
        self.source = source

    def architecture(self, step: PlanStep) -> str | None:
        """The target's architecture: the step's own, else the registry's."""
        if step.architecture:
            return step.architecture
        if step.service is None:
            return SERVERLESS
        found = self.registry.find(step.service)
        return str(found.architecture) if found is not None else None

    def max_attempts(self, step: PlanStep) -> int:
        """The step's attempts, capped for traditional monoliths."""
        if self.architecture(step) == TRADITIONAL_MONOLITH:
            return min(step.retry.max_attempts, LEGACY_MAX_ATTEMPTS)
        return step.retry.max_attempts

    def timeout_ms(self, step: PlanStep, arch: str | None = None) -> int:
        """The step's timeout for one attempt; ``arch``: its architecture, if known."""
        arch = arch or self.architecture(step)
        if arch == MODULAR_MONOLITH:
            return max(step.timeout_ms, MONOLITH_MIN_TIMEOUT_MS)
        if arch == TRADITIONAL_MONOLITH:
            return min(step.timeout_ms, LEGACY_MAX_TIMEOUT_MS)
        return step.timeout_ms

    async def run(self, attempt: Attempt) -> Any:
        """Make the attempt; returns what the target answered. Raises what failed."""
        step, operation = attempt.step, attempt.operation
        arch = self.architecture(step)
        timeout = self.timeout_ms(step, arch) / 1000
        function = operation.function_name or (step.service if arch == SERVERLESS else None)
        if operation.type == "function" or (
            arch == SERVERLESS
            and function is not None
            and self.functions is not None
            and function in self.functions.names()
        ):
            if self.functions is None or function is None:
                raise ConfigurationError(
                    f"step {step.step_id!r} invokes a function, but no functions are registered"
                )
            return await self.functions.invoke(
                function, _mapping(attempt.payload), idempotency_key=attempt.key, timeout=timeout
            )
        if step.service is None:
            raise ConfigurationError(f"step {step.step_id!r} names no service")
        if operation.type == "batch" and arch == TRADITIONAL_MONOLITH:
            if self.batch is None:
                raise ConfigurationError(
                    f"step {step.step_id!r} queues a batch operation for {step.service!r}, "
                    "but no batch integration is configured"
                )
            name = batch_operation_name(operation)
            record = await self.batch.enqueue(
                step.service, name, _mapping(attempt.payload), idempotency_key=attempt.key
            )
            return {"queued": getattr(record, "id", record), "operation": name}
        if self.client is None:
            raise ConfigurationError("the engine has no hybrid client to call services with")
        by_event = step.completion is Completion.EVENT and not attempt.compensation
        request = CommunicationRequest(
            type=request_type(operation.type),
            method=operation.method,
            endpoint=operation.endpoint,
            payload=attempt.payload,
            headers={"X-Execution-ID": attempt.execution_id, "X-Step-ID": step.step_id},
            operation=operation.batch_operation,
            idempotency_key=attempt.key,
            timeout=timeout,
            retries=0,
            pattern=call_pattern(operation.type, by_event),
        )
        response = await self.client.communicate(self.source, step.service, request)
        return response.data


_REQUEST_TYPES = {kind.value: kind for kind in RequestType}


def call_pattern(operation_type: str, by_event: bool) -> str | None:
    """The pattern a step's call names: REST, as a step needs its answer, unless its
    completion comes as an event anyway or it is a batch operation (None: the client's
    strategy picks)."""
    return None if by_event or operation_type == "batch" else "rest"


def request_type(operation_type: str) -> RequestType:
    """The client's request type for a step's operation type."""
    return _REQUEST_TYPES.get(operation_type, RequestType.COMMAND)


def classify(error: BaseException, retry: RetrySpec) -> Failure:
    """What a failed attempt means: retryable or not, and whether the target may have acted
    (then a compensation runs for it, should the execution compensate)."""
    if isinstance(error, ValidationError):
        message = "invalid: " + "; ".join(problem.message for problem in error.problems)
    elif isinstance(error, TimeoutError) and not str(error):
        message = "TimeoutError: the attempt timed out"
    else:
        message = f"{type(error).__name__}: {error}"
    status = error.status if isinstance(error, TransportError) else None
    refused_locally = isinstance(
        error,
        CircuitOpenError
        | BulkheadFullError
        | RateLimitedError
        | TransportNotConfiguredError
        | ConfigurationError,
    )
    definite = status is not None and 400 <= status < 500 and status not in (408, 429)
    ambiguous = not (definite or refused_locally or isinstance(error, ValidationError))
    names = {cls.__name__ for cls in type(error).__mro__}
    rules = set(retry.non_retryable)
    retryable = not (
        isinstance(error, ValidationError | ConfigurationError | NotFoundError)
        or (definite and "4xx" in rules)
        or (status is not None and str(status) in rules)
        or bool(names & rules)
        or getattr(error, "retryable", True) is False
    )
    return Failure(message, retryable=retryable, ambiguous=ambiguous)


def _mapping(payload: Any) -> Mapping[str, Any]:
    return payload if isinstance(payload, Mapping) else {"value": payload}


__all__ = [
    "LEGACY_MAX_ATTEMPTS",
    "LEGACY_MAX_TIMEOUT_MS",
    "MONOLITH_MIN_TIMEOUT_MS",
    "ORCHESTRATOR",
    "Attempt",
    "BatchQueue",
    "FunctionInvoker",
    "StepRunner",
    "call_pattern",
    "classify",
    "request_type",
]
