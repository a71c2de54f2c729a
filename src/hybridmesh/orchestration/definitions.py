"""Sagas and workflows as users write them: the integration guide's fields, checks, plans.

A definition is data. Build one in Python, or load it from YAML with
:mod:`hybridmesh.orchestration.loader`; :func:`validate` lists what is wrong with it, and
:func:`to_plan` turns a valid one into the :class:`~hybridmesh.orchestration.plan.Plan` the
engine runs. Durations are milliseconds, as in the integration guide.

Fields that take one of a few words (``error_handling``, ``consistency_strategy``, an
operation's ``type``) are plain strings, as users write them; :func:`validate` checks them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hybridmesh.core.errors import Problem, ValidationError
from hybridmesh.orchestration.plan import (
    OPERATION_TYPES,
    Completion,
    Consistency,
    ErrorHandling,
    Kind,
    Operation,
    Plan,
    PlanStep,
    RetrySpec,
)
from hybridmesh.registry import Architecture, ServiceRegistry

#: A step's retry policy (the plan's :class:`~hybridmesh.orchestration.plan.RetrySpec`).
RetryPolicy = RetrySpec

HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


@dataclass(frozen=True, slots=True)
class SagaStep:
    """One step of a saga: ``POST /operations/{operation}`` on ``service_name``.

    Its compensation, when ``compensation_operation`` is set, is
    ``POST /operations/{compensation_operation}`` with ``compensation_payload`` (the step's
    ``payload`` when None). With ``completion: "event"`` the call only starts the step; it
    ends when a ``saga.step.completed`` or ``saga.step.failed`` event arrives, within
    ``completion_timeout`` ms when set.
    """

    step_id: str
    service_name: str
    operation: str
    payload: Mapping[str, Any] = field(default_factory=dict)
    compensation_operation: str | None = None
    compensation_payload: Mapping[str, Any] | None = None
    timeout: int = 30_000
    retry_policy: RetryPolicy = field(default_factory=RetryPolicy)
    completion: str = "sync"
    completion_timeout: int | None = None
    #: All attempts together, waits included (ms; None: no bound beyond the attempts).
    total_timeout: int | None = None


@dataclass(frozen=True, slots=True)
class SagaDefinition:
    """A saga: steps run one after another; a failure undoes the completed ones in reverse.

    ``version`` pins the version the catalog stores it under; None lets the catalog number
    it. ``timeout_ms`` bounds a whole execution (None: no bound).
    """

    saga_type: str
    steps: tuple[SagaStep, ...]
    version: int | None = None
    description: str = ""
    metadata: Mapping[str, Any] = field(default_factory=dict)
    timeout_ms: int | None = None


@dataclass(frozen=True, slots=True)
class ServiceInfo:
    """The service a workflow step calls. ``architecture`` None: the registry's."""

    service_name: str
    architecture: str | None = None


@dataclass(frozen=True, slots=True)
class WorkflowOperation:
    """What a workflow step does: a ``command`` or ``query`` call, a ``batch`` operation
    (``batch_operation``, defaulting to the endpoint), or a serverless ``function``
    (``function_name``, defaulting to the service's name on a serverless service)."""

    type: str = "command"
    method: str = "POST"
    endpoint: str = "/"
    payload: Mapping[str, Any] = field(default_factory=dict)
    function_name: str | None = None
    batch_operation: str | None = None


@dataclass(frozen=True, slots=True)
class WorkflowStep:
    """One step of a workflow: it starts once every step in ``dependencies`` completed.

    An ``optional`` step may fail without failing the workflow. ``compensation`` undoes it
    when the workflow's error handling is ``compensation``.
    """

    step_id: str
    step_name: str
    service_info: ServiceInfo
    operation: WorkflowOperation
    dependencies: tuple[str, ...] = ()
    parallel: bool = False
    optional: bool = False
    timeout: int = 30_000
    retry_policy: RetryPolicy = field(default_factory=RetryPolicy)
    compensation: WorkflowOperation | None = None
    #: All attempts together, waits included (ms; None: no bound beyond the attempts).
    total_timeout: int | None = None


@dataclass(frozen=True, slots=True)
class WorkflowDefinition:
    """A workflow: a graph of steps across services.

    ``consistency_strategy`` is ``strong``, ``eventual`` or ``saga``; ``error_handling`` is
    ``fail-fast``, ``continue-on-error`` or ``compensation``. ``timeout_ms`` bounds a whole
    execution (None: no bound).
    """

    workflow_id: str
    workflow_type: str
    name: str
    description: str
    consistency_strategy: str
    error_handling: str
    timeout_ms: int | None
    steps: tuple[WorkflowStep, ...]
    version: int | None = None


Definition = SagaDefinition | WorkflowDefinition


def definition_key(definition: Definition) -> tuple[Kind, str]:
    """The kind and the name its plans are stored under: the saga type or the workflow id."""
    if isinstance(definition, SagaDefinition):
        return Kind.SAGA, definition.saga_type
    return Kind.WORKFLOW, definition.workflow_id


# --------------------------------------------------------------------------------- checks


def validate(definition: Definition, *, registry: ServiceRegistry | None = None) -> list[Problem]:
    """Every error and warning in ``definition``; an empty list means it is valid.

    Each problem names its field the way the definition nests it (``steps[1].timeout``) and
    has no file or line (the loader adds them). With a ``registry``, services must be
    registered in it. Never raises.
    """
    checks = _Checks(registry)
    if isinstance(definition, SagaDefinition):
        checks.saga(definition)
    else:
        checks.workflow(definition)
    return checks.problems


def _one_of(allowed: Iterable[str]) -> str:
    return ", ".join(f"'{value}'" for value in allowed)


class _Checks:
    def __init__(self, registry: ServiceRegistry | None) -> None:
        self.registry = registry
        self.problems: list[Problem] = []

    def error(self, where: str, message: str) -> None:
        self.problems.append(Problem(message, field=where))

    def warning(self, where: str, message: str) -> None:
        self.problems.append(Problem(message, field=where, severity="warning"))

    def saga(self, saga: SagaDefinition) -> None:
        self.name("saga_type", saga.saga_type)
        self.common(saga.version, saga.timeout_ms, [s.step_id for s in saga.steps], "saga")
        for index, step in enumerate(saga.steps):
            at = f"steps[{index}]"
            self.service(f"{at}.service_name", step.service_name)
            self.name(f"{at}.operation", step.operation)
            if step.compensation_operation is not None:
                self.name(f"{at}.compensation_operation", step.compensation_operation)
            elif step.compensation_payload is not None:
                self.warning(
                    f"{at}.compensation_payload", "unused: there is no compensation_operation"
                )
            self.step_limits(at, step.timeout, step.retry_policy, step.total_timeout)
            self.choice(f"{at}.completion", step.completion, tuple(Completion))
            if step.completion_timeout is not None:
                self.positive(f"{at}.completion_timeout", step.completion_timeout)
                if step.completion == Completion.SYNC:
                    self.warning(
                        f"{at}.completion_timeout", "unused: completion is 'sync', not 'event'"
                    )

    def workflow(self, workflow: WorkflowDefinition) -> None:
        self.name("workflow_id", workflow.workflow_id)
        ids = [s.step_id for s in workflow.steps]
        self.common(workflow.version, workflow.timeout_ms, ids, "workflow")
        self.choice("consistency_strategy", workflow.consistency_strategy, tuple(Consistency))
        self.choice("error_handling", workflow.error_handling, tuple(ErrorHandling))
        known = set(ids)
        for index, step in enumerate(workflow.steps):
            at = f"steps[{index}]"
            architecture = self.architecture(at, step.service_info)
            self.operation(f"{at}.operation", step.operation)
            if step.compensation is not None:
                self.operation(f"{at}.compensation", step.compensation)
            if (
                step.operation.type == "function"
                and step.operation.function_name is None
                and architecture != Architecture.SERVERLESS
            ):
                self.error(
                    f"{at}.operation.function_name",
                    "missing: a function step names its function, unless its service is serverless",
                )
            for number, dependency in enumerate(step.dependencies):
                if dependency not in known:
                    self.error(f"{at}.dependencies[{number}]", f"unknown step {dependency!r}")
            self.step_limits(at, step.timeout, step.retry_policy, step.total_timeout)
        for cycle in dependency_cycles([(s.step_id, s.dependencies) for s in workflow.steps]):
            self.error(
                f"steps[{ids.index(cycle[0])}].dependencies",
                "dependency cycle: " + " -> ".join([*cycle, cycle[0]]),
            )
        if workflow.error_handling == ErrorHandling.COMPENSATION:
            self.compensations(workflow.steps)

    def common(
        self, version: int | None, timeout_ms: int | None, ids: list[str], kind: str
    ) -> None:
        if version is not None and version < 1:
            self.error("version", "must be at least 1")
        if timeout_ms is not None:
            self.positive("timeout_ms", timeout_ms)
        if not ids:
            self.error("steps", f"a {kind} needs at least one step")
        first: dict[str, int] = {}
        for index, step_id in enumerate(ids):
            self.name(f"steps[{index}].step_id", step_id)
            if step_id in first:
                self.error(
                    f"steps[{index}].step_id",
                    f"duplicate step id {step_id!r}; first used by steps[{first[step_id]}]",
                )
            first.setdefault(step_id, index)

    def name(self, where: str, value: str) -> None:
        if not value.strip():
            self.error(where, "must not be empty")

    def positive(self, where: str, value: int) -> None:
        if value <= 0:
            self.error(where, "must be a positive number of milliseconds")

    def choice(self, where: str, value: str, allowed: Sequence[str]) -> None:
        if value not in allowed:
            self.error(where, f"{value!r} is not one of {_one_of(allowed)}")

    def service(self, where: str, name: str) -> Architecture | None:
        """The registry's architecture for ``name``, noting an unknown service."""
        self.name(where, name)
        if self.registry is None or not name.strip():
            return None
        found = self.registry.find(name)
        if found is None:
            self.error(where, f"unknown service {name!r}: it is not in the registry")
            return None
        return found.architecture

    def architecture(self, at: str, info: ServiceInfo) -> str | None:
        """The step's architecture: as written, else the registry's."""
        registered = self.service(f"{at}.service_info.service_name", info.service_name)
        if info.architecture is None:
            return registered
        where = f"{at}.service_info.architecture"
        if info.architecture not in tuple(Architecture):
            self.choice(where, info.architecture, tuple(Architecture))
            return None
        if registered is not None and info.architecture != registered:
            self.warning(
                where,
                f"{info.architecture!r}, but the registry lists {info.service_name} as "
                f"{registered.value!r}; the step's value is used",
            )
        return info.architecture

    def operation(self, at: str, operation: WorkflowOperation) -> None:
        self.choice(f"{at}.type", operation.type, OPERATION_TYPES)
        self.choice(f"{at}.method", operation.method, HTTP_METHODS)
        if not operation.endpoint.startswith("/"):
            self.error(f"{at}.endpoint", "must start with '/'")

    def step_limits(
        self, at: str, timeout: int, retry: RetryPolicy, total: int | None = None
    ) -> None:
        self.positive(f"{at}.timeout", timeout)
        if total is not None:
            self.positive(f"{at}.total_timeout", total)
        where = f"{at}.retry_policy"
        if retry.max_attempts < 1:
            self.error(f"{where}.max_attempts", "must be at least 1")
        if retry.backoff_ms < 0:
            self.error(f"{where}.backoff_ms", "must not be negative")
        if retry.max_backoff_ms < 0:
            self.error(f"{where}.max_backoff_ms", "must not be negative")
        if retry.multiplier < 1:
            self.error(f"{where}.multiplier", "must be at least 1")

    def compensations(self, steps: Sequence[WorkflowStep]) -> None:
        """Under compensation, what others build on must say how it is undone."""
        dependents: dict[str, list[str]] = {}
        for step in steps:
            for dependency in step.dependencies:
                dependents.setdefault(dependency, []).append(step.step_id)
        for index, step in enumerate(steps):
            users = dependents.get(step.step_id)
            kind = step.operation.type
            if users and kind in ("command", "batch") and step.compensation is None:
                who = (
                    f"steps {_one_of(users)} depend" if users[1:] else f"step '{users[0]}' depends"
                )
                self.error(
                    f"steps[{index}].compensation",
                    f"missing: error_handling is 'compensation', and {who} on this {kind} step",
                )


def dependency_cycles(steps: Sequence[tuple[str, Sequence[str]]]) -> list[list[str]]:
    """Each cycle of ``(step_id, dependencies)`` once, following dependencies.

    A cycle starts at its step that comes first in ``steps``; cycles are listed in the order
    they are found walking the steps in order. Unknown dependencies are ignored.
    """
    order: dict[str, int] = {}
    graph: dict[str, list[str]] = {}
    for step_id, dependencies in steps:
        order.setdefault(step_id, len(order))
        graph.setdefault(step_id, []).extend(dependencies)
    done: set[str] = set()
    seen: set[tuple[str, ...]] = set()
    cycles: list[list[str]] = []
    for root in graph:
        if root in done:
            continue
        path = [root]
        pending = [iter(graph[root])]
        while pending:
            nxt = next(pending[-1], None)
            if nxt is None:
                done.add(path.pop())
                pending.pop()
            elif nxt in path:
                cycle = path[path.index(nxt) :]
                start = min(range(len(cycle)), key=lambda i: order[cycle[i]])
                key = tuple(cycle[start:] + cycle[:start])
                if key not in seen:
                    seen.add(key)
                    cycles.append(list(key))
            elif nxt in graph and nxt not in done:
                path.append(nxt)
                pending.append(iter(graph[nxt]))
    return cycles


# ---------------------------------------------------------------------------------- plans


def to_plan(
    definition: Definition,
    *,
    registry: ServiceRegistry | None = None,
    version: int | None = None,
) -> Plan:
    """The plan that runs ``definition``.

    The version is ``version``, else the definition's, else 1 (a
    :class:`~hybridmesh.orchestration.catalog.DefinitionCatalog` assigns real ones). Steps
    get their architecture from the definition, else from ``registry`` when given, else
    None (the engine asks its registry). Raises
    :class:`~hybridmesh.core.errors.ValidationError` listing the errors :func:`validate`
    finds.
    """
    errors = [p for p in validate(definition, registry=registry) if p.severity == "error"]
    if errors:
        kind, name = definition_key(definition)
        raise ValidationError(
            [Problem(f"{kind.value} {name!r}: {p.message}", field=p.field) for p in errors]
        )
    if version is None:
        version = definition.version if definition.version is not None else 1
    if isinstance(definition, SagaDefinition):
        return _saga_plan(definition, registry, version)
    return _workflow_plan(definition, registry, version)


def _registered_architecture(registry: ServiceRegistry | None, service: str) -> str | None:
    found = registry.find(service) if registry is not None else None
    return found.architecture.value if found is not None else None


def _plain(value: Any) -> Any:
    """``value`` as JSON would give it back, so a plan equals its stored copy."""
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


def _operations_call(operation: str, payload: Mapping[str, Any]) -> Operation:
    return Operation(
        type="command", method="POST", endpoint=f"/operations/{operation}", payload=_plain(payload)
    )


def _saga_plan(saga: SagaDefinition, registry: ServiceRegistry | None, version: int) -> Plan:
    steps: list[PlanStep] = []
    for index, step in enumerate(saga.steps):
        compensation = None
        if step.compensation_operation is not None:
            payload = step.compensation_payload
            compensation = _operations_call(
                step.compensation_operation, step.payload if payload is None else payload
            )
        steps.append(
            PlanStep(
                step_id=step.step_id,
                name=step.step_id,
                service=step.service_name,
                architecture=_registered_architecture(registry, step.service_name),
                operation=_operations_call(step.operation, step.payload),
                dependencies=(saga.steps[index - 1].step_id,) if index else (),
                timeout_ms=step.timeout,
                retry=step.retry_policy,
                compensation=compensation,
                completion=Completion(step.completion),
                completion_timeout_ms=step.completion_timeout,
                total_timeout_ms=step.total_timeout,
            )
        )
    return Plan(
        kind=Kind.SAGA,
        name=saga.saga_type,
        version=version,
        steps=tuple(steps),
        error_handling=ErrorHandling.COMPENSATION,
        consistency=Consistency.SAGA,
        timeout_ms=saga.timeout_ms,
        description=saga.description,
        metadata=_plain(saga.metadata),
    )


def _operation(operation: WorkflowOperation, service: str, architecture: str | None) -> Operation:
    function = operation.function_name
    if function is None and architecture == Architecture.SERVERLESS:
        function = service
    return Operation(
        type=operation.type,
        method=operation.method,
        endpoint=operation.endpoint,
        payload=_plain(operation.payload),
        function=function,
        batch_operation=operation.batch_operation,
    )


def _workflow_plan(
    workflow: WorkflowDefinition, registry: ServiceRegistry | None, version: int
) -> Plan:
    steps: list[PlanStep] = []
    for step in workflow.steps:
        service = step.service_info.service_name
        architecture = step.service_info.architecture or _registered_architecture(registry, service)
        compensation = step.compensation
        steps.append(
            PlanStep(
                step_id=step.step_id,
                name=step.step_name,
                service=service,
                architecture=architecture,
                operation=_operation(step.operation, service, architecture),
                dependencies=tuple(step.dependencies),
                parallel=step.parallel,
                optional=step.optional,
                timeout_ms=step.timeout,
                retry=step.retry_policy,
                compensation=(
                    _operation(compensation, service, architecture)
                    if compensation is not None
                    else None
                ),
                total_timeout_ms=step.total_timeout,
            )
        )
    return Plan(
        kind=Kind.WORKFLOW,
        name=workflow.workflow_id,
        version=version,
        steps=tuple(steps),
        error_handling=ErrorHandling(workflow.error_handling),
        consistency=Consistency(workflow.consistency_strategy),
        timeout_ms=workflow.timeout_ms,
        description=workflow.description,
        metadata={"workflow_type": workflow.workflow_type, "name": workflow.name},
    )


__all__ = [
    "HTTP_METHODS",
    "Definition",
    "RetryPolicy",
    "SagaDefinition",
    "SagaStep",
    "ServiceInfo",
    "WorkflowDefinition",
    "WorkflowOperation",
    "WorkflowStep",
    "definition_key",
    "dependency_cycles",
    "to_plan",
    "validate",
]
