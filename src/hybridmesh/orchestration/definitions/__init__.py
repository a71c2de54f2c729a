"""Sagas and workflows as users write them: their fields, their checks, their plans.

A definition is data. Build one in Python, or load it from YAML with
:mod:`hybridmesh.orchestration.loader`; :func:`validate` lists what is wrong with it, and
:func:`to_plan` turns a valid one into the :class:`~hybridmesh.orchestration.plan.Plan` the
engine runs. The fields live in ``_model``, the checks in ``_validate``, the way to a plan
in ``_compile`` (and ``_plan``: validate, then compile); import them from here. Durations
are milliseconds, as in the integration guide.
"""

from hybridmesh.orchestration.definitions._model import (
    DEFAULT_ERROR_HANDLING,
    DEFINITION_READER,
    HTTP_METHODS,
    Definition,
    RetryPolicy,
    SagaDefinition,
    SagaStep,
    ServiceInfo,
    WorkflowDefinition,
    WorkflowOperation,
    WorkflowStep,
    definition_key,
)
from hybridmesh.orchestration.definitions._plan import to_plan
from hybridmesh.orchestration.definitions._validate import dependency_cycles, validate

__all__ = [
    "DEFAULT_ERROR_HANDLING",
    "DEFINITION_READER",
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
