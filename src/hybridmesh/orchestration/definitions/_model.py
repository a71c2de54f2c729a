"""The fields of sagas and workflows as users write them, in Python or in YAML.

The definitions are pydantic dataclasses: built in Python they take their fields by
position or by name; read from plain data (:data:`DEFINITION_READER`) each key may be the
field's name or its camelCase alias (``step_id`` or ``stepId``), an unknown key is refused,
and a value must already have its field's type (no ``"3"`` for 3, no ``"yes"`` for true).
Durations are milliseconds, as in the integration guide.

Fields that take one of a few words (``error_handling``, ``consistency_strategy``, an
operation's ``type``) are plain strings, as users write them; validation checks them.
Numbers are bounded (:mod:`hybridmesh.core.limits`: an attempt's timeout at most a day, a
deadline at most 365 days, finite multipliers) and operation names keep to a safe set
(:data:`~hybridmesh.orchestration.plan.OperationName`): a definition that breaks them is
refused when it is built or read, at the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import field
from typing import Any

from pydantic import StrictBool, StrictStr, TypeAdapter
from pydantic.dataclasses import dataclass

from hybridmesh.core.limits import DeadlineMs, TimeoutMs, Version
from hybridmesh.orchestration.plan import (
    READ_CONFIG,
    Consistency,
    ErrorHandling,
    Kind,
    Operation,
    OperationName,
    RetrySpec,
)

#: A step's retry policy (the plan's :class:`~hybridmesh.orchestration.plan.RetrySpec`).
RetryPolicy = RetrySpec

#: What a workflow step (or its compensation) does: the plan's
#: :class:`~hybridmesh.orchestration.plan.Operation`, as the engine runs it.
WorkflowOperation = Operation

HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


@dataclass(frozen=True, config=READ_CONFIG)
class SagaStep:
    """One step of a saga: ``POST /operations/{operation}`` on ``service_name``.

    Its compensation, when ``compensation_operation`` is set, is
    ``POST /operations/{compensation_operation}`` with ``compensation_payload`` (the step's
    ``payload`` when None). With ``completion: "event"`` the call only starts the step; it
    ends when a ``saga.step.completed`` or ``saga.step.failed`` event arrives, within
    ``completion_timeout`` ms when set.
    """

    step_id: StrictStr
    service_name: StrictStr
    operation: OperationName
    payload: Mapping[str, Any] = field(default_factory=dict)
    compensation_operation: OperationName | None = None
    compensation_payload: Mapping[str, Any] | None = None
    timeout: TimeoutMs = 30_000
    retry_policy: RetryPolicy = field(default_factory=RetryPolicy)
    completion: StrictStr = "sync"
    completion_timeout: DeadlineMs | None = None
    #: All attempts together, waits included (ms; None: no bound beyond the attempts).
    total_timeout: DeadlineMs | None = None


@dataclass(frozen=True, config=READ_CONFIG)
class SagaDefinition:
    """A saga: steps run one after another; a failure undoes the completed ones in reverse.

    ``version`` pins the version the catalog stores it under; None lets the catalog number
    it. ``timeout_ms`` bounds a whole execution (None: no bound).
    """

    saga_type: StrictStr
    steps: tuple[SagaStep, ...]
    version: Version | None = None
    description: StrictStr = ""
    metadata: Mapping[str, Any] = field(default_factory=dict)
    timeout_ms: DeadlineMs | None = None


@dataclass(frozen=True, config=READ_CONFIG)
class ServiceInfo:
    """The service a workflow step calls. ``architecture`` None: the registry's."""

    service_name: StrictStr
    architecture: StrictStr | None = None


@dataclass(frozen=True, config=READ_CONFIG)
class WorkflowStep:
    """One step of a workflow: it starts once every step in ``dependencies`` completed.

    An ``optional`` step may fail without failing the workflow. ``compensation`` undoes it
    when the workflow's error handling is ``compensation``. ``parallel: false`` runs it
    alone: it starts only when no other step of the execution is under way, and no other
    step starts until it ended.
    """

    step_id: StrictStr
    step_name: StrictStr
    service_info: ServiceInfo
    operation: WorkflowOperation
    dependencies: tuple[StrictStr, ...] = ()
    parallel: StrictBool = True
    optional: StrictBool = False
    timeout: TimeoutMs = 30_000
    retry_policy: RetryPolicy = field(default_factory=RetryPolicy)
    compensation: WorkflowOperation | None = None
    #: All attempts together, waits included (ms; None: no bound beyond the attempts).
    total_timeout: DeadlineMs | None = None


#: The error handling each consistency strategy gives a workflow that states none: strong
#: consistency stops at the first failure, eventual lets independent steps finish, saga
#: undoes what completed.
DEFAULT_ERROR_HANDLING: dict[str, str] = {
    Consistency.STRONG: ErrorHandling.FAIL_FAST,
    Consistency.EVENTUAL: ErrorHandling.CONTINUE_ON_ERROR,
    Consistency.SAGA: ErrorHandling.COMPENSATION,
}


@dataclass(frozen=True, config=READ_CONFIG)
class WorkflowDefinition:
    """A workflow: a graph of steps across services.

    ``consistency_strategy`` is ``strong``, ``eventual`` or ``saga``; ``error_handling`` is
    ``fail-fast``, ``continue-on-error`` or ``compensation``. The strategy sets the error
    handling a workflow that states none gets (:data:`DEFAULT_ERROR_HANDLING`).
    ``timeout_ms`` bounds a whole execution (None: no bound).
    """

    workflow_id: StrictStr
    workflow_type: StrictStr
    name: StrictStr
    description: StrictStr
    consistency_strategy: StrictStr
    timeout_ms: DeadlineMs | None
    steps: tuple[WorkflowStep, ...]
    version: Version | None = None
    #: None: the consistency strategy's default.
    error_handling: StrictStr | None = field(default=None, kw_only=True)

    def effective_error_handling(self) -> str | None:
        """The error handling as stated, else the consistency strategy's default (None
        when the strategy is not one of the three)."""
        if self.error_handling is not None:
            return self.error_handling
        return DEFAULT_ERROR_HANDLING.get(self.consistency_strategy)


Definition = SagaDefinition | WorkflowDefinition

#: Reads each kind of definition from plain data (raises ``pydantic.ValidationError``).
DEFINITION_READER: dict[Kind, TypeAdapter[Any]] = {
    Kind.SAGA: TypeAdapter(SagaDefinition),
    Kind.WORKFLOW: TypeAdapter(WorkflowDefinition),
}


def definition_key(definition: Definition) -> tuple[Kind, str]:
    """The kind and the name its plans are stored under: the saga type or the workflow id."""
    if isinstance(definition, SagaDefinition):
        return Kind.SAGA, definition.saga_type
    return Kind.WORKFLOW, definition.workflow_id


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
]
