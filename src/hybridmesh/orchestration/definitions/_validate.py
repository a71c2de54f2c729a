"""Checks of a saga or workflow definition: every error and warning, each at its field."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from hybridmesh.client import (
    UNREGISTERED_SOURCE_ARCHITECTURE,
    PatternNotAllowedError,
    fit_to_capabilities,
    forced_strategy,
    select_strategy,
)
from hybridmesh.core.errors import Problem
from hybridmesh.core.names import name_problem
from hybridmesh.orchestration.definitions._model import (
    HTTP_METHODS,
    Definition,
    RetryPolicy,
    SagaDefinition,
    ServiceInfo,
    WorkflowDefinition,
    WorkflowOperation,
    WorkflowStep,
)
from hybridmesh.orchestration.plan import OPERATION_TYPES, Completion, Consistency, ErrorHandling
from hybridmesh.orchestration.steps import call_pattern, request_type
from hybridmesh.registry import Architecture, ServiceRegistry


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
        self.identifier("saga_type", saga.saga_type)
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
        self.identifier("workflow_id", workflow.workflow_id)
        ids = [s.step_id for s in workflow.steps]
        self.common(workflow.version, workflow.timeout_ms, ids, "workflow")
        self.choice("consistency_strategy", workflow.consistency_strategy, tuple(Consistency))
        if workflow.error_handling is not None:
            self.choice("error_handling", workflow.error_handling, tuple(ErrorHandling))
        known = set(ids)
        for index, step in enumerate(workflow.steps):
            at = f"steps[{index}]"
            architecture = self.architecture(at, step.service_info)
            self.operation(f"{at}.operation", step.operation)
            self.capabilities(f"{at}.operation.type", step, architecture)
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
        if workflow.effective_error_handling() == ErrorHandling.COMPENSATION:
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
            self.identifier(f"steps[{index}].step_id", step_id)
            if step_id in first:
                self.error(
                    f"steps[{index}].step_id",
                    f"duplicate step id {step_id!r}; first used by steps[{first[step_id]}]",
                )
            first.setdefault(step_id, index)

    def identifier(self, where: str, value: str) -> None:
        """A definition's name or a step id: the one name rule (``hybridmesh.core.names``)."""
        problem = name_problem(value)
        if problem is not None:
            self.error(where, problem)

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

    def capabilities(self, where: str, step: WorkflowStep, architecture: str | None) -> None:
        """Whether the target's capabilities allow a pattern the step's call may use."""
        target = self.registry.find(step.service_info.service_name) if self.registry else None
        kind = step.operation.type
        if target is None or architecture not in tuple(Architecture) or kind == "function":
            return
        if kind == "batch" and architecture == Architecture.TRADITIONAL_MONOLITH:
            return  # queued to the batch integration, not called
        if kind not in OPERATION_TYPES:
            return
        pattern = call_pattern(kind, by_event=False)
        strategy = (
            forced_strategy(pattern, request_type(kind))
            if pattern is not None
            else select_strategy(UNREGISTERED_SOURCE_ARCHITECTURE, architecture, request_type(kind))
        )
        try:
            fit_to_capabilities(strategy, target)
        except PatternNotAllowedError as refused:
            self.error(where, str(refused))

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


__all__ = ["dependency_cycles", "validate"]
