"""Checks of a saga or workflow definition: every error and warning, each at its field.

The definitions' own types refuse numbers out of bounds and unsafe operation names when a
definition is built or read; these checks add what needs the whole definition (step ids,
dependencies, templates and the steps they name), the registry, and the retry policies and
operations written as plain dataclasses, which are checked here by the same types. The
last check compiles a clean definition and reads its plan back from its stored form, so
what validates is what the catalog stores and the engine runs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import pydantic
from pydantic import TypeAdapter

from hybridmesh.client import (
    UNREGISTERED_SOURCE_ARCHITECTURE,
    PatternNotAllowedError,
    fit_to_capabilities,
    forced_strategy,
    select_strategy,
)
from hybridmesh.core.errors import Problem
from hybridmesh.core.limits import describe, dotted
from hybridmesh.core.names import name_problem
from hybridmesh.core.serialization import json_problems, walk
from hybridmesh.orchestration.definitions._compile import compile_plan
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
from hybridmesh.orchestration.plan import (
    OPERATION_TYPES,
    Completion,
    Consistency,
    ErrorHandling,
    batch_operation_name,
    operation_name_problem,
    stored_copy_problems,
)
from hybridmesh.orchestration.steps import call_pattern, request_type
from hybridmesh.orchestration.templates import TemplateError, references
from hybridmesh.registry import Architecture, ServiceRegistry

_RETRY: TypeAdapter[RetryPolicy] = TypeAdapter(RetryPolicy)
_OPERATION: TypeAdapter[WorkflowOperation] = TypeAdapter(WorkflowOperation)


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
    if not any(problem.severity == "error" for problem in checks.problems):
        checks.storable(definition)
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
        ids = [s.step_id for s in saga.steps]
        self.common(ids, "saga")
        self.json("metadata", saga.metadata)
        for index, step in enumerate(saga.steps):
            at = f"steps[{index}]"
            self.service(f"{at}.service_name", step.service_name)
            if step.compensation_operation is None and step.compensation_payload is not None:
                self.warning(
                    f"{at}.compensation_payload", "unused: there is no compensation_operation"
                )
            self.retry(f"{at}.retry_policy", step.retry_policy)
            self.choice(f"{at}.completion", step.completion, tuple(Completion))
            if step.completion_timeout is not None and step.completion == Completion.SYNC:
                self.warning(
                    f"{at}.completion_timeout", "unused: completion is 'sync', not 'event'"
                )
            earlier = set(ids[:index])
            scope = _Scope("saga", set(ids), step.step_id, earlier)
            self.payload(f"{at}.payload", step.payload, scope)
            if step.compensation_payload is not None:
                self.payload(
                    f"{at}.compensation_payload",
                    step.compensation_payload,
                    scope,
                    compensation=True,
                )

    def workflow(self, workflow: WorkflowDefinition) -> None:
        self.identifier("workflow_id", workflow.workflow_id)
        ids = [s.step_id for s in workflow.steps]
        self.common(ids, "workflow")
        self.choice("consistency_strategy", workflow.consistency_strategy, tuple(Consistency))
        if workflow.error_handling is not None:
            self.choice("error_handling", workflow.error_handling, tuple(ErrorHandling))
        known = set(ids)
        before = _ancestors([(s.step_id, s.dependencies) for s in workflow.steps])
        for index, step in enumerate(workflow.steps):
            at = f"steps[{index}]"
            architecture = self.architecture(at, step.service_info)
            scope = _Scope("workflow", known, step.step_id, before.get(step.step_id, set()))
            self.operation(f"{at}.operation", step.operation, scope)
            self.capabilities(f"{at}.operation.type", step, architecture)
            if step.compensation is not None:
                self.operation(f"{at}.compensation", step.compensation, scope, compensation=True)
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
            self.retry(f"{at}.retry_policy", step.retry_policy)
        for cycle in dependency_cycles([(s.step_id, s.dependencies) for s in workflow.steps]):
            self.error(
                f"steps[{ids.index(cycle[0])}].dependencies",
                "dependency cycle: " + " -> ".join([*cycle, cycle[0]]),
            )
        if workflow.effective_error_handling() == ErrorHandling.COMPENSATION:
            self.compensations(workflow.steps)

    def common(self, ids: list[str], kind: str) -> None:
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

    def storable(self, definition: Definition) -> None:
        """The compiled plan survives its trip through the store unchanged."""
        version = definition.version if definition.version is not None else 1
        plan = compile_plan(definition, registry=self.registry, version=version)
        for problem in stored_copy_problems(plan):
            where = f" [{problem.field}]" if problem.field else ""
            self.problems.append(Problem(f"its plan{where}: {problem.message}"))

    def identifier(self, where: str, value: str) -> None:
        """A definition's name or a step id: the one name rule (``hybridmesh.core.names``)."""
        problem = name_problem(value)
        if problem is not None:
            self.error(where, problem)

    def name(self, where: str, value: str) -> None:
        if not value.strip():
            self.error(where, "must not be empty")

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

    def typed(self, where: str, adapter: TypeAdapter[Any], value: Any) -> bool:
        """Whether the plain dataclass ``value`` holds what its type allows (noting each
        field that does not): dataclasses built in Python are not checked when built."""
        data = {item.name: getattr(value, item.name) for item in dataclasses.fields(value)}
        try:
            adapter.validate_python(data)
        except pydantic.ValidationError as invalid:
            for error in invalid.errors():
                self.error(where + dotted(error), describe(error))
            return False
        return True

    def retry(self, where: str, retry: RetryPolicy) -> None:
        self.typed(where, _RETRY, retry)

    def operation(
        self, at: str, operation: WorkflowOperation, scope: _Scope, *, compensation: bool = False
    ) -> None:
        if not self.typed(at, _OPERATION, operation):
            return
        self.choice(f"{at}.type", operation.type, OPERATION_TYPES)
        self.choice(f"{at}.method", operation.method, HTTP_METHODS)
        if operation.type == "batch" and operation.batch_operation is None:
            problem = operation_name_problem(batch_operation_name(operation))
            if problem is not None:
                self.error(
                    f"{at}.batch_operation",
                    "missing: the endpoint's last part, which names a batch operation by "
                    f"default, is not an operation name ({problem})",
                )
        self.payload(f"{at}.payload", operation.payload, scope, compensation=compensation)

    def payload(
        self, at: str, payload: Mapping[str, Any], scope: _Scope, *, compensation: bool = False
    ) -> None:
        """A payload holds JSON values and templates that parse and name what is there
        when it is sent."""
        if not self.json(at, payload):
            return
        for where, text in _texts(at, payload):
            try:
                found = references(text)
            except TemplateError as invalid:
                self.error(where, "; ".join(p.message for p in invalid.problems))
                continue
            for reference in found:
                self.reference(where, reference.path, scope, compensation)

    def reference(
        self, where: str, path: tuple[str, ...], scope: _Scope, compensation: bool
    ) -> None:
        """A template's path names a step only when that step has completed by then: the
        step's dependencies, directly or through others (in a saga: the steps before it)."""
        root, *rest = path
        template = "{{ " + ".".join(path) + " }}"
        if root not in ("context", "steps") or not rest:
            return
        step = rest[0]
        if step not in scope.ids:
            if root == "steps":
                self.error(where, f"{template}: no step {step!r} in this {scope.kind}")
            return  # context also holds the input and the context updates steps return
        if root == "steps" and rest[1:] and rest[1] not in ("status", "result"):
            self.error(where, f"{template}: a step has 'status' and 'result', not {rest[1]!r}")
        if step in scope.before:
            return
        if step == scope.own and compensation:
            self.warning(
                where,
                f"{template}: the step's own answer; its compensation also runs when the "
                "step gave none (a timeout), and then this template names nothing",
            )
            return
        why = (
            "it is this step"
            if step == scope.own
            else "it comes after this step"
            if scope.kind == "saga"
            else "it is not among this step's dependencies, direct or through others"
        )
        self.error(where, f"{template}: step {step!r} has not run when this step runs: {why}")

    def json(self, at: str, value: Any) -> bool:
        """Whether ``value`` holds only what JSON does (noting each place that does not):
        string keys, text, finite numbers, whole numbers within 64 bits, true, false, null,
        lists and mappings (dates, as YAML reads them, become ISO text). A key may not
        hold a template: only values are rendered."""
        found = json_problems(value, at)
        for where, key, is_key in walk(at, value):
            if is_key and isinstance(key, str) and ("{{" in key or "}}" in key):
                found.append((where, "templates are rendered in values, not in keys"))
        for where, problem in found:
            self.error(where, problem)
        return not found

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


@dataclasses.dataclass(frozen=True, slots=True)
class _Scope:
    """What a step's templates may name: the steps of the definition (``ids``), the step
    itself (``own``) and the steps that have completed before it runs (``before``)."""

    kind: str
    ids: set[str]
    own: str
    before: set[str]


def _ancestors(steps: Sequence[tuple[str, Sequence[str]]]) -> dict[str, set[str]]:
    """Each step's dependencies, direct or through others (cycles and unknown steps are
    reported elsewhere; here they only stop the walk)."""
    graph: dict[str, list[str]] = {}
    for step_id, dependencies in steps:
        graph.setdefault(step_id, []).extend(dependencies)
    found: dict[str, set[str]] = {}
    for step_id in graph:
        seen: set[str] = set()
        pending = list(graph[step_id])
        while pending:
            dependency = pending.pop()
            if dependency not in seen and dependency in graph:
                seen.add(dependency)
                pending.extend(graph[dependency])
        seen.discard(step_id)
        found[step_id] = seen
    return found


def _texts(at: str, value: Any) -> Iterator[tuple[str, str]]:
    """The strings among the values inside ``value`` that hold a template."""
    for where, item, is_key in walk(at, value):
        if not is_key and isinstance(item, str) and "{{" in item:
            yield where, item


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
