"""Durable orchestration: sagas and DAG workflows on one engine.

::

    catalog = DefinitionCatalog(store)
    engine = Orchestrator(store, catalog, StepRunner(client, registry), bus=bus, review=review)
    await catalog.register_definition(load_definitions("definitions/").definitions[0].definition)
    async with engine:                       # a worker in this process
        execution_id = await engine.start_saga("order-processing", {"order_id": "o-1"})
        execution = await engine.wait(execution_id)

Definitions (YAML or Python) become versioned :class:`Plan` s in the catalog; the engine runs
plans, saving every step's progress and its history in the store, so any worker on the same
store can take an execution over after a crash.
"""

from hybridmesh.orchestration._machine import Status, StepStatus
from hybridmesh.orchestration._records import Execution, HistoryEvent, StepView
from hybridmesh.orchestration.catalog import (
    CatalogEntry,
    DefinitionCatalog,
    RetiredVersionError,
    UnrunnableDefinitionError,
    plan_digest,
)
from hybridmesh.orchestration.definitions import (
    Definition,
    RetryPolicy,
    SagaDefinition,
    SagaStep,
    ServiceInfo,
    WorkflowDefinition,
    WorkflowOperation,
    WorkflowStep,
    definition_key,
    to_plan,
    validate,
)
from hybridmesh.orchestration.engine import Orchestrator
from hybridmesh.orchestration.loader import (
    DefinitionLoad,
    LoadedDefinition,
    definition_from_dict,
    load_definitions,
)
from hybridmesh.orchestration.plan import (
    Completion,
    Consistency,
    ErrorHandling,
    Kind,
    Operation,
    Plan,
    PlanStep,
    RetrySpec,
)
from hybridmesh.orchestration.steps import StepRunner

__all__ = [
    "CatalogEntry",
    "Completion",
    "Consistency",
    "Definition",
    "DefinitionCatalog",
    "DefinitionLoad",
    "ErrorHandling",
    "Execution",
    "HistoryEvent",
    "Kind",
    "LoadedDefinition",
    "Operation",
    "Orchestrator",
    "Plan",
    "PlanStep",
    "RetiredVersionError",
    "RetryPolicy",
    "RetrySpec",
    "SagaDefinition",
    "SagaStep",
    "ServiceInfo",
    "Status",
    "StepRunner",
    "StepStatus",
    "StepView",
    "UnrunnableDefinitionError",
    "WorkflowDefinition",
    "WorkflowOperation",
    "WorkflowStep",
    "definition_from_dict",
    "definition_key",
    "load_definitions",
    "plan_digest",
    "to_plan",
    "validate",
]
