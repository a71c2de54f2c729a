"""A saga or workflow definition turned into the plan the engine runs (no checks: see
``_validate``, whose last check compiles the definition, and ``_plan``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from hybridmesh.core.serialization import dumps, loads
from hybridmesh.orchestration.definitions._model import (
    Definition,
    SagaDefinition,
    WorkflowDefinition,
)
from hybridmesh.orchestration.plan import (
    Completion,
    Consistency,
    ErrorHandling,
    Kind,
    Operation,
    Plan,
    PlanStep,
    operation_endpoint,
)
from hybridmesh.registry import Architecture, ServiceRegistry


def compile_plan(definition: Definition, *, registry: ServiceRegistry | None, version: int) -> Plan:
    """The plan of ``definition`` at ``version``, as it is: call it on a valid definition
    (:func:`~hybridmesh.orchestration.definitions.to_plan` does). Steps get their
    architecture from the definition, else from ``registry`` when given, else None (the
    engine asks its registry)."""
    if isinstance(definition, SagaDefinition):
        return _saga_plan(definition, registry, version)
    return _workflow_plan(definition, registry, version)


def _registered_architecture(registry: ServiceRegistry | None, service: str) -> str | None:
    found = registry.find(service) if registry is not None else None
    return found.architecture.value if found is not None else None


def _plain(value: Any) -> Any:
    """``value`` as JSON gives it back (lists for tuples, ISO text for dates), so a plan
    equals its stored copy."""
    return loads(dumps(value))


def _operations_call(operation: str, payload: Mapping[str, Any]) -> Operation:
    return Operation(
        type="command",
        method="POST",
        endpoint=operation_endpoint(operation),
        payload=_plain(payload),
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


def _operation(operation: Operation, service: str, architecture: str | None) -> Operation:
    """The step's operation as it runs: a serverless service's function named, the payload
    as stored JSON would give it back."""
    function = operation.function_name
    if function is None and architecture == Architecture.SERVERLESS:
        function = service
    return replace(operation, payload=_plain(operation.payload), function_name=function)


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
                alone=not step.parallel,
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
        error_handling=ErrorHandling(workflow.effective_error_handling() or ""),
        consistency=Consistency(workflow.consistency_strategy),
        timeout_ms=workflow.timeout_ms,
        description=workflow.description,
        metadata={"workflow_type": workflow.workflow_type, "name": workflow.name},
    )


__all__ = ["compile_plan"]
