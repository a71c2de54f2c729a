"""Loading definitions from YAML and dicts: file shapes, camelCase keys, and errors that name
the file, the line and the field."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from hybridmesh.core.errors import Problem, ValidationError
from hybridmesh.orchestration.definitions import (
    RetryPolicy,
    SagaDefinition,
    SagaStep,
    ServiceInfo,
    WorkflowDefinition,
    WorkflowOperation,
    WorkflowStep,
    to_plan,
)
from hybridmesh.orchestration.loader import (
    DefinitionLoad,
    definition_from_dict,
    load_definitions,
)
from hybridmesh.orchestration.plan import ErrorHandling, Kind, Plan
from hybridmesh.registry import ServiceRegistry

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "tanqory"
DEFINITIONS = EXAMPLES / "definitions"

#: The integration guide's USER_ONBOARDING_WORKFLOW, written in Python.
USER_ONBOARDING = WorkflowDefinition(
    workflow_id="user-onboarding",
    workflow_type="user-lifecycle",
    name="User Onboarding",
    description="Complete user registration and setup workflow",
    consistency_strategy="eventual",
    error_handling="continue-on-error",
    timeout_ms=300_000,
    steps=(
        WorkflowStep(
            step_id="create-user-account",
            step_name="Create User Account",
            service_info=ServiceInfo("user-service", "microservice"),
            operation=WorkflowOperation("command", "POST", "/users", {}),
            dependencies=(),
            timeout=10_000,
            retry_policy=RetryPolicy(max_attempts=3, backoff_ms=1000),
        ),
        WorkflowStep(
            step_id="send-welcome-email",
            step_name="Send Welcome Email",
            service_info=ServiceInfo("notification-services", "modular-monolith"),
            operation=WorkflowOperation(
                "command",
                "POST",
                "/notifications/email",
                {"template": "welcome", "channel": "email"},
            ),
            dependencies=("create-user-account",),
            optional=True,
            timeout=15_000,
            retry_policy=RetryPolicy(max_attempts=2, backoff_ms=2000),
        ),
        WorkflowStep(
            step_id="track-user-registration",
            step_name="Track User Registration",
            service_info=ServiceInfo("analytics-reporting", "modular-monolith"),
            operation=WorkflowOperation(
                "command", "POST", "/analytics/events", {"eventType": "user.registered"}
            ),
            dependencies=("create-user-account",),
            parallel=True,
            optional=True,
            timeout=10_000,
            retry_policy=RetryPolicy(max_attempts=2, backoff_ms=1000),
        ),
        WorkflowStep(
            step_id="sync-to-erp",
            step_name="Sync User to ERP",
            service_info=ServiceInfo("legacy-erp", "traditional-monolith"),
            operation=WorkflowOperation("batch", "POST", "/batch/customer-sync", {}),
            dependencies=("create-user-account",),
            optional=True,
            timeout=60_000,
            retry_policy=RetryPolicy(max_attempts=1, backoff_ms=5000),
        ),
    ),
)

SAGA = """
saga_type: order-processing
steps:
  - step_id: validate-user
    service_name: user-service
    operation: validate-user
"""


@pytest.fixture(scope="module")
def registry() -> ServiceRegistry:
    return ServiceRegistry.from_path(EXAMPLES / "services")


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def line_of(path: Path, needle: str, occurrence: int = 1) -> int:
    """The 1-based line of the ``occurrence``-th line of ``path`` that contains ``needle``."""
    seen = 0
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if needle in line:
            seen += 1
            if seen == occurrence:
                return number
    raise AssertionError(f"{needle!r} not in {path}")


def messages(problems: list[Problem]) -> list[str]:
    return [str(p) for p in problems]


def load_one_error(path: Path, registry: ServiceRegistry | None = None) -> str:
    result = load_definitions(path, registry=registry)
    assert len(result.errors) == 1, messages(result.errors)
    return str(result.errors[0])


def workflow_yaml(steps: str, *, error_handling: str = "fail-fast") -> str:
    return (
        "workflow_id: wf\n"
        "workflow_type: test\n"
        "name: Test\n"
        "description: ''\n"
        "consistency_strategy: eventual\n"
        f"error_handling: {error_handling}\n"
        "timeout_ms: 60000\n"
        "steps:\n" + textwrap.indent(textwrap.dedent(steps).strip("\n"), "  ") + "\n"
    )


def wf_step(step_id: str, *, dependencies: str = "[]", extra: str = "") -> str:
    return (
        f"- step_id: {step_id}\n"
        f"  step_name: {step_id}\n"
        "  service_info: {service_name: user-service}\n"
        f"  operation: {{endpoint: /{step_id}}}\n"
        f"  dependencies: {dependencies}\n" + extra
    )


# ----------------------------------------------------------------------- reference definitions


def test_reference_definitions_load_clean_against_the_reference_registry(
    registry: ServiceRegistry,
) -> None:
    result = load_definitions(DEFINITIONS, registry=registry)

    assert result.ok
    assert (result.errors, result.warnings) == ([], [])
    assert [(d.kind, d.name) for d in result.definitions] == [
        (Kind.WORKFLOW, "data-analytics-pipeline"),
        (Kind.SAGA, "order-processing"),
        (Kind.WORKFLOW, "user-onboarding"),
    ]
    for loaded in result.definitions:
        plan = to_plan(loaded.definition, registry=registry)
        assert Plan.from_dict(plan.to_dict()) == plan


def test_user_onboarding_yaml_is_the_seeds_workflow_exactly() -> None:
    (loaded,) = (
        load_definitions(DEFINITIONS / "user-onboarding.yaml").raise_for_errors().definitions
    )

    assert loaded.definition == USER_ONBOARDING


def test_order_saga_has_the_seeds_services_operations_timeouts_and_retries() -> None:
    (loaded,) = load_definitions(DEFINITIONS / "order-processing.yaml").definitions
    saga = loaded.definition
    assert isinstance(saga, SagaDefinition)

    summary = [
        (
            s.step_id,
            s.service_name,
            s.operation,
            s.compensation_operation,
            s.timeout,
            s.retry_policy.max_attempts,
            s.retry_policy.backoff_ms,
        )
        for s in saga.steps
    ]
    assert summary == [
        ("validate-user", "user-service", "validate-user", None, 5000, 3, 1000),
        (
            "reserve-inventory",
            "inventory-management",
            "reserve-items",
            "release-items",
            10000,
            3,
            2000,
        ),
        ("process-payment", "payment-service", "charge-payment", "refund-payment", 30000, 2, 5000),
        (
            "create-shipment",
            "shipping-service",
            "create-shipment",
            "cancel-shipment",
            15000,
            3,
            3000,
        ),
        (
            "send-confirmation",
            "notification-services",
            "send-order-confirmation",
            None,
            10000,
            2,
            2000,
        ),
    ]
    assert saga.steps[0].payload == {"user_id": "{{ input.customer_id }}"}


def test_analytics_pipeline_runs_a_serverless_function_and_a_legacy_batch(
    registry: ServiceRegistry,
) -> None:
    (loaded,) = load_definitions(DEFINITIONS / "data-analytics-pipeline.yaml").definitions

    plan = to_plan(loaded.definition, registry=registry)

    transform = plan.step("transform-events")
    assert (transform.service, transform.architecture) == ("data-transformations", "serverless")
    assert (transform.operation.type, transform.operation.function_name) == (
        "function",
        "transform-events",
    )
    extract = plan.step("extract-erp-data")
    assert (extract.architecture, extract.operation.type) == ("traditional-monolith", "batch")
    assert plan.step("correlate-sources").dependencies == ("ingest-events", "extract-erp-data")
    assert plan.step("ingest-events").service == "analytics-reporting"
    assert plan.consistency.value == "eventual"
    assert plan.error_handling.value == "continue-on-error"


def test_loaded_definitions_know_their_file_and_lines() -> None:
    (loaded,) = load_definitions(DEFINITIONS / "order-processing.yaml").definitions
    path = Path(loaded.file)

    assert path.name == "order-processing.yaml"
    assert loaded.line == line_of(path, "saga_type:")
    assert loaded.source == f"{loaded.file}:{loaded.line}"
    assert loaded.line_of("steps", 2, "timeout") == line_of(path, "timeout: 30000")
    assert loaded.line_of("steps", 2, "nothing-here") == line_of(path, "step_id: process-payment")


# ------------------------------------------------------------------------------ file shapes


def test_snake_case_and_the_seeds_camel_case_give_the_same_definition(tmp_path: Path) -> None:
    snake = write(
        tmp_path,
        "snake.yaml",
        """
        saga_type: order-processing
        timeout_ms: 60000
        steps:
          - step_id: reserve
            service_name: inventory-management
            operation: reserve-items
            payload: {orderId: "{{ input.order_id }}"}
            compensation_operation: release-items
            compensation_payload: {orderId: x}
            completion: event
            completion_timeout: 5000
            retry_policy: {max_attempts: 3, backoff_ms: 100, max_backoff_ms: 900}
        """,
    )
    camel = write(
        tmp_path,
        "camel.yml",
        """
        sagaType: order-processing
        timeoutMs: 60000
        steps:
          - stepId: reserve
            serviceName: inventory-management
            operation: reserve-items
            payload: {orderId: "{{ input.order_id }}"}
            compensationOperation: release-items
            compensationPayload: {orderId: x}
            completion: event
            completionTimeout: 5000
            retryPolicy: {maxAttempts: 3, backoffMs: 100, maxBackoffMs: 900}
        """,
    )

    (from_snake,) = load_definitions(snake).definitions
    (from_camel,) = load_definitions(camel).definitions

    assert from_snake.definition == from_camel.definition
    assert from_camel.definition == SagaDefinition(
        saga_type="order-processing",
        timeout_ms=60_000,
        steps=(
            SagaStep(
                step_id="reserve",
                service_name="inventory-management",
                operation="reserve-items",
                payload={"orderId": "{{ input.order_id }}"},
                compensation_operation="release-items",
                compensation_payload={"orderId": "x"},
                completion="event",
                completion_timeout=5000,
                retry_policy=RetryPolicy(max_attempts=3, backoff_ms=100, max_backoff_ms=900),
            ),
        ),
    )


def test_a_file_may_hold_a_list_or_sagas_and_workflows_lists_or_several_documents(
    tmp_path: Path,
) -> None:
    workflow = workflow_yaml(wf_step("a"))
    write(tmp_path, "a-list.yaml", "- " + textwrap.indent(SAGA.strip(), "  ")[2:] + "\n")
    write(
        tmp_path,
        "b-lists.yaml",
        "sagas:\n"
        + textwrap.indent(SAGA.strip().replace("order-processing", "s2"), "  ").replace(
            "  saga_type", "- saga_type", 1
        )
        + "\nworkflows:\n"
        + textwrap.indent(workflow, "  ").replace("  workflow_id", "- workflow_id", 1),
    )
    write(
        tmp_path,
        "c-docs.yaml",
        SAGA.replace("order-processing", "s3") + "---\n---\n" + workflow.replace("wf", "wf2"),
    )
    write(tmp_path, "d-empty.yaml", "# nothing yet\n")

    result = load_definitions(tmp_path)

    assert messages(result.errors) == []
    assert [(d.kind.value, d.name, Path(d.file).name) for d in result.definitions] == [
        ("saga", "order-processing", "a-list.yaml"),
        ("saga", "s2", "b-lists.yaml"),
        ("workflow", "wf", "b-lists.yaml"),
        ("saga", "s3", "c-docs.yaml"),
        ("workflow", "wf2", "c-docs.yaml"),
    ]
    assert result.definitions[2].line == line_of(tmp_path / "b-lists.yaml", "workflow_id")


def test_a_folder_is_read_recursively_in_name_order(tmp_path: Path) -> None:
    write(tmp_path, "b/second.yml", SAGA.replace("order-processing", "second"))
    write(tmp_path, "a/first.yaml", SAGA.replace("order-processing", "first"))
    write(tmp_path, "a/notes.txt", "not yaml")

    assert [d.name for d in load_definitions(tmp_path).definitions] == ["first", "second"]


def test_raise_for_errors_returns_a_clean_load_and_raises_with_every_error(tmp_path: Path) -> None:
    good = write(tmp_path, "good.yaml", SAGA)
    assert isinstance(load_definitions(good).raise_for_errors(), DefinitionLoad)

    bad = write(tmp_path, "bad.yaml", "saga_type: x\nsteps: []\nextra: 1\n")
    result = load_definitions(bad)
    assert not result.ok
    with pytest.raises(ValidationError) as caught:
        result.raise_for_errors()
    assert caught.value.problems == result.errors
    assert str(caught.value) == f"{bad}:3: error [extra]: unknown field"


# --------------------------------------------------------------------- errors: file, line, field


def test_an_unknown_dependency_names_file_line_and_field(tmp_path: Path) -> None:
    path = write(
        tmp_path, "bad.yaml", workflow_yaml(wf_step("a") + wf_step("b", dependencies="[a, nope]"))
    )

    assert load_one_error(path) == (
        f"{path}:{line_of(path, '[a, nope]')}: error [steps[1].dependencies[1]]: "
        "unknown step 'nope'"
    )


def test_a_dependency_written_as_a_block_list_points_at_its_own_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "bad.yaml",
        workflow_yaml(wf_step("a") + wf_step("b", dependencies="\n    - a\n    - nope")),
    )

    assert load_one_error(path) == (
        f"{path}:{line_of(path, '- nope')}: error [steps[1].dependencies[1]]: unknown step 'nope'"
    )


def test_an_unknown_service_names_the_step_field(tmp_path: Path, registry: ServiceRegistry) -> None:
    path = write(
        tmp_path, "bad.yaml", SAGA.replace("service_name: user-service", "service_name: billing")
    )

    assert load_definitions(path).ok
    assert load_one_error(path, registry) == (
        f"{path}:{line_of(path, 'billing')}: error [steps[0].service_name]: "
        "unknown service 'billing': it is not in the registry"
    )


def test_a_step_its_targets_capabilities_cannot_take_names_file_line_and_field(
    tmp_path: Path, registry: ServiceRegistry
) -> None:
    path = write(
        tmp_path,
        "bulk.yaml",
        """
        workflowId: settle
        workflowType: finance
        name: Settle
        description: ""
        consistencyStrategy: eventual
        errorHandling: fail-fast
        timeoutMs: 60000
        steps:
          - stepId: export
            stepName: Export payments
            serviceInfo: {serviceName: payment-service}
            operation:
              type: batch
              endpoint: /exports
        """,
    )

    assert load_definitions(path).ok  # without a registry, capabilities are unknown
    assert load_one_error(path, registry) == (
        f"{path}:{line_of(path, 'type: batch')}: error [steps[0].operation.type]: "
        "payment-service allows none of the patterns this call may use (batch): its "
        "capabilities rule them out (batch needs bulk_operations: true)"
    )


def test_parallel_false_runs_a_step_alone_and_the_strategy_sets_the_error_handling(
    tmp_path: Path,
) -> None:
    path = write(
        tmp_path,
        "alone.yaml",
        """
        workflow_id: nightly
        workflow_type: ops
        name: Nightly
        description: ""
        consistency_strategy: strong
        timeout_ms: 60000
        steps:
          - step_id: snapshot
            step_name: Snapshot
            service_info: {service_name: user-service}
            operation: {endpoint: /snapshots}
            parallel: false
          - step_id: report
            step_name: Report
            service_info: {service_name: user-service}
            operation: {endpoint: /reports}
        """,
    )

    (loaded,) = load_definitions(path).raise_for_errors().definitions
    plan = to_plan(loaded.definition)

    assert [step.alone for step in plan.steps] == [True, False]
    assert plan.error_handling is ErrorHandling.FAIL_FAST


def test_a_cycle_is_reported_at_the_dependencies_of_its_first_step(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "bad.yaml",
        workflow_yaml(
            wf_step("a", dependencies="[c]")
            + wf_step("b", dependencies="[a]")
            + wf_step("c", dependencies="[b]")
        ),
    )

    assert load_one_error(path) == (
        f"{path}:{line_of(path, '[c]')}: error [steps[0].dependencies]: "
        "dependency cycle: a -> c -> b -> a"
    )


def test_a_missing_compensation_under_compensation_handling_names_the_step(
    tmp_path: Path,
) -> None:
    undo = "  compensation: {endpoint: /undo}\n"
    path = write(
        tmp_path,
        "bad.yaml",
        workflow_yaml(
            wf_step("a", extra=undo)
            + wf_step("b", dependencies="[a]")
            + wf_step("c", dependencies="[b]", extra=undo),
            error_handling="compensation",
        ),
    )

    assert load_one_error(path) == (
        f"{path}:{line_of(path, 'step_id: b')}: error [steps[1].compensation]: "
        "missing: error_handling is 'compensation', and step 'c' depends on this command step"
    )


@pytest.mark.parametrize(
    ("old", "new", "needle", "expected"),
    [
        (
            "consistency_strategy: eventual",
            "consistency_strategy: sometimes",
            "sometimes",
            "error [consistency_strategy]: 'sometimes' is not one of 'strong', 'eventual', 'saga'",
        ),
        (
            "error_handling: fail-fast",
            "error_handling: retry",
            "retry",
            "error [error_handling]: 'retry' is not one of 'fail-fast', 'continue-on-error', "
            "'compensation'",
        ),
        (
            "timeout_ms: 60000",
            "timeout_ms: 0",
            "timeout_ms",
            "error [timeout_ms]: must be a positive number of milliseconds",
        ),
        (
            "operation: {endpoint: /a}",
            "operation: {endpoint: /a, type: rpc}",
            "rpc",
            "error [steps[0].operation.type]: 'rpc' is not one of 'command', 'query', 'batch', "
            "'function'",
        ),
        (
            "operation: {endpoint: /a}",
            "operation: {type: function}",
            "function",
            "error [steps[0].operation.function_name]: missing: a function step names its "
            "function, unless its service is serverless",
        ),
        (
            "service_info: {service_name: user-service}",
            "service_info: {service_name: user-service, architecture: mainframe}",
            "mainframe",
            "error [steps[0].service_info.architecture]: 'mainframe' is not one of "
            "'microservice', 'modular-monolith', 'traditional-monolith', 'serverless'",
        ),
        (
            "dependencies: []",
            "dependencies: []\n    timeout: -1",
            "timeout: -1",
            "error [steps[0].timeout]: must be a positive number of milliseconds",
        ),
        (
            "dependencies: []",
            "dependencies: []\n    retry_policy:\n      max_attempts: 0",
            "max_attempts: 0",
            "error [steps[0].retry_policy.max_attempts]: must be at least 1",
        ),
    ],
)
def test_each_validation_rule_names_file_line_and_field(
    tmp_path: Path, old: str, new: str, needle: str, expected: str
) -> None:
    text = workflow_yaml(wf_step("a"))
    assert old in text
    path = write(tmp_path, "bad.yaml", text.replace(old, new, 1))

    assert load_one_error(path) == f"{path}:{line_of(path, needle)}: {expected}"


def test_step_ids_are_unique(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.yaml", workflow_yaml(wf_step("a") + wf_step("a")))

    assert load_one_error(path) == (
        f"{path}:{line_of(path, 'step_id: a', 2)}: error [steps[1].step_id]: duplicate step id "
        "'a'; first used by steps[0]"
    )


def test_camel_case_files_get_errors_in_their_own_spelling(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "bad.yaml",
        """
        workflowId: wf
        workflowType: test
        name: Test
        description: ''
        consistencyStrategy: eventual
        errorHandling: fail-fast
        timeoutMs: 60000
        steps:
          - stepId: a
            stepName: A
            serviceInfo: {serviceName: user-service}
            operation: {type: function}
        """,
    )
    unread = write(
        tmp_path,
        "unread.yaml",
        path.read_text().replace(
            "operation: {type: function}",
            "operation: {endpoint: /a}\n    retryPolicy: {maxAttempts: 0}",
        ),
    )

    assert messages(load_definitions(path).errors) == [
        f"{path}:12: error [steps[0].operation.functionName]: missing: a function step names "
        "its function, unless its service is serverless",
    ]
    assert messages(load_definitions(unread).errors) == [
        f"{unread}:13: error [steps[0].retryPolicy.maxAttempts]: must be at least 1",
    ]


# -------------------------------------------------------------------------- errors: shape


def test_unknown_keys_are_errors_with_a_suggestion_in_the_files_style(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "bad.yaml",
        SAGA
        + "    retry_polcy: {max_attempts: 2}\n    retryPolicy: {backofMs: 5}\n    colour: red\n",
    )

    assert messages(load_definitions(path).errors) == [
        f"{path}:6: error [steps[0].retry_polcy]: unknown field; did you mean 'retry_policy'?",
        f"{path}:7: error [steps[0].retryPolicy.backofMs]: unknown field; did you mean "
        "'backoffMs'?",
        f"{path}:8: error [steps[0].colour]: unknown field",
    ]


def test_missing_fields_wrong_types_and_keys_given_twice(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "bad.yaml",
        """
        saga_type: s
        steps:
          - step_id: a
            service_name: user-service
            timeout: soon
            retry_policy: {max_attempts: 2.5, multiplier: fast}
            payload: [1]
          - step_id: b
            stepId: c
            service_name: [user-service]
            operation: op
            completion: 3
        """,
    )

    assert messages(load_definitions(path).errors) == [
        f"{path}:3: error [steps[0].operation]: required field is missing",
        f"{path}:5: error [steps[0].timeout]: must be a whole number",
        f"{path}:6: error [steps[0].retry_policy.max_attempts]: must be a whole number",
        f"{path}:6: error [steps[0].retry_policy.multiplier]: must be a number",
        f"{path}:7: error [steps[0].payload]: must be a mapping",
        f"{path}:9: error [steps[1].stepId]: given twice, as 'step_id' and 'stepId'",
        f"{path}:10: error [steps[1].service_name]: must be a string",
        f"{path}:12: error [steps[1].completion]: must be a string",
    ]


def test_what_is_not_a_definition_is_named(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "bad.yaml",
        """
        - just text
        - {name: no kind}
        - {saga_type: s, workflow_id: w, steps: []}
        - {sagaType: s, steps: {a: 1}}
        """,
    )

    assert messages(load_definitions(path).errors) == [
        f"{path}:1: error: a definition must be a mapping",
        f"{path}:2: error: a definition is a saga (with saga_type) or a workflow (with "
        "workflow_id)",
        f"{path}:3: error: a definition is a saga (with saga_type) or a workflow (with "
        "workflow_id), not both",
        f"{path}:4: error [steps]: must be a list",
    ]


def test_sagas_and_workflows_lists_are_checked(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "bad.yaml",
        """
        workflows: {a: 1}
        sagas:
          - sagaType: s
            workflowId: w
            steps: []
        services: []
        """,
    )

    assert messages(load_definitions(path).errors) == [
        f"{path}:1: error [workflows]: must be a list",
        f"{path}:4: error [workflowId]: unknown field",
        f"{path}:6: error [services]: unknown field; a file of several definitions has sagas: "
        "and workflows:",
    ]


def test_a_definition_defined_twice_names_the_first(tmp_path: Path) -> None:
    first = write(tmp_path, "a.yaml", SAGA)
    second = write(tmp_path, "b.yaml", "# again\n" + SAGA.strip().replace("saga_type", "sagaType"))

    result = load_definitions(tmp_path)

    assert [d.file for d in result.definitions] == [str(first)]
    assert messages(result.errors) == [
        f"{second}:2: error [sagaType]: duplicate saga 'order-processing'; first defined at "
        f"{first}:1"
    ]


def test_bad_yaml_and_bad_paths(tmp_path: Path) -> None:
    broken = write(tmp_path, "broken.yaml", "saga_type: s\nsteps: [\n  - a: 1\n")
    empty = tmp_path / "empty"
    empty.mkdir()

    assert load_one_error(broken).startswith(f"{broken}:3: error: invalid YAML: ")
    assert (
        load_one_error(tmp_path / "nope") == f"{tmp_path / 'nope'}: error: no such file or folder"
    )
    assert load_one_error(empty) == f"{empty}: error: no *.yaml or *.yml files found"


def test_warnings_do_not_stop_a_load(tmp_path: Path, registry: ServiceRegistry) -> None:
    path = write(
        tmp_path,
        "warn.yaml",
        workflow_yaml(wf_step("a")).replace(
            "{service_name: user-service}", "{service_name: user-service, architecture: serverless}"
        ),
    )

    result = load_definitions(path, registry=registry)

    assert result.ok
    assert [d.name for d in result.definitions] == ["wf"]
    assert messages(result.warnings) == [
        f"{path}:{line_of(path, 'serverless')}: warning [steps[0].service_info.architecture]: "
        "'serverless', but the registry lists user-service as 'microservice'; the step's "
        "value is used"
    ]


# ------------------------------------------------------------------------------------ dicts


def test_definition_from_dict_accepts_the_seeds_camel_case() -> None:
    definition = definition_from_dict(
        {
            "sagaType": "order-processing",
            "steps": [
                {
                    "stepId": "validate-user",
                    "serviceName": "user-service",
                    "operation": "validate-user",
                    "payload": {"userId": "u-1"},
                    "timeout": 5000,
                    "retryPolicy": {"maxAttempts": 3, "backoffMs": 1000},
                }
            ],
        }
    )

    assert definition == SagaDefinition(
        "order-processing",
        (
            SagaStep(
                "validate-user",
                "user-service",
                "validate-user",
                payload={"userId": "u-1"},
                timeout=5000,
                retry_policy=RetryPolicy(max_attempts=3, backoff_ms=1000),
            ),
        ),
    )


def test_definition_from_dict_raises_with_each_bad_field(registry: ServiceRegistry) -> None:
    with pytest.raises(ValidationError) as shape:
        definition_from_dict({"saga_type": "s", "steps": [{"step_id": "a", "timeout": "x"}]})
    assert messages(shape.value.problems) == [
        "error [steps[0].service_name]: required field is missing",
        "error [steps[0].operation]: required field is missing",
        "error [steps[0].timeout]: must be a whole number",
    ]

    data = {"saga_type": "s", "steps": [{"step_id": "a", "service_name": "nope", "operation": "o"}]}
    assert isinstance(definition_from_dict(data), SagaDefinition)
    with pytest.raises(ValidationError) as rules:
        definition_from_dict(data, registry=registry)
    assert messages(rules.value.problems) == [
        "error [steps[0].service_name]: unknown service 'nope': it is not in the registry"
    ]


@pytest.mark.parametrize(
    "text",
    ["", "# nothing yet\n", "---\n", "sagas: []\nworkflows: []\n", "[]\n"],
    ids=["empty", "comment", "one empty document", "empty lists", "[]"],
)
def test_a_path_that_defines_nothing_at_all_is_an_error(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, "empty.yaml", text)

    for root in (path, tmp_path):
        assert load_one_error(root) == f"{root}: error: no saga or workflow definitions found"


def test_empty_documents_and_files_among_definitions_are_fine(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "---\n" + SAGA.strip() + "\n---\n---\n")
    write(tmp_path, "b.yaml", "# later\n")

    result = load_definitions(tmp_path)

    assert (result.errors, [d.name for d in result.definitions]) == ([], ["order-processing"])


def test_a_key_given_twice_in_a_step_names_both_lines(tmp_path: Path) -> None:
    path = write(tmp_path, "a.yaml", SAGA + "    timeout: 5\n    timeout: 6\n")

    assert load_one_error(path) == (
        f"{path}:7: error: the key 'timeout' is given twice in one mapping, at lines 6 and 7"
    )


def test_bad_encoding_and_deep_nesting_are_one_error_each(tmp_path: Path) -> None:
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(b"saga_type: caf\xe9\n")
    deep = write(tmp_path, "deep.yaml", "saga_type: s\nsteps: " + "[" * 5000 + "]" * 5000 + "\n")

    assert load_one_error(latin) == (
        f"{latin}:1: error: not UTF-8: byte 0xe9 at offset 14 is not valid UTF-8; save the "
        "file as UTF-8"
    )
    assert load_one_error(deep) == f"{deep}:2: error: nested deeper than 64 levels: refused"


def test_a_step_repeated_by_an_alias_is_located_at_the_alias(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "a.yaml",
        """
        saga_type: s
        steps:
          - &step
            step_id: a
            service_name: user-service
            operation: op
          - *step
        """,
    )

    assert load_one_error(path).startswith(
        f"{path}:{line_of(path, '*step')}: error [steps[1].step_id]: duplicate step id 'a'"
    )
