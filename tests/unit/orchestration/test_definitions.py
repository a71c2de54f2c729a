"""Definitions written in Python: what validate() reports, and the plans to_plan() makes."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pydantic
import pytest

from hybridmesh.core.errors import Problem, ValidationError
from hybridmesh.core.names import NAME_RULE
from hybridmesh.orchestration.definitions import (
    RetryPolicy,
    SagaDefinition,
    SagaStep,
    ServiceInfo,
    WorkflowDefinition,
    WorkflowOperation,
    WorkflowStep,
    definition_key,
    dependency_cycles,
    to_plan,
    validate,
)
from hybridmesh.orchestration.plan import (
    Completion,
    Consistency,
    ErrorHandling,
    Kind,
    Operation,
    Plan,
    RetrySpec,
)
from hybridmesh.registry import ServiceRegistry

SERVICES = Path(__file__).resolve().parents[3] / "examples" / "tanqory" / "services"


@pytest.fixture(scope="module")
def registry() -> ServiceRegistry:
    return ServiceRegistry.from_path(SERVICES)


def saga(*steps: SagaStep, **fields: Any) -> SagaDefinition:
    return replace(SagaDefinition("order-processing", steps), **fields)


def reserve(**fields: Any) -> SagaStep:
    step = SagaStep(
        "reserve-inventory",
        "inventory-management",
        "reserve-items",
        payload={"items": "{{ input.items }}"},
        compensation_operation="release-items",
    )
    return replace(step, **fields)


def wf_step(step_id: str, *dependencies: str, **fields: Any) -> WorkflowStep:
    step = WorkflowStep(
        step_id,
        step_id.replace("-", " ").title(),
        ServiceInfo("user-service"),
        WorkflowOperation(endpoint=f"/{step_id}"),
        dependencies=dependencies,
    )
    return replace(step, **fields)


def workflow(*steps: WorkflowStep, **fields: Any) -> WorkflowDefinition:
    definition = WorkflowDefinition(
        workflow_id="user-onboarding",
        workflow_type="user-lifecycle",
        name="User Onboarding",
        description="Complete user registration and setup workflow",
        consistency_strategy="eventual",
        error_handling="continue-on-error",
        timeout_ms=300_000,
        steps=steps,
    )
    return replace(definition, **fields)


def errors(problems: list[Problem]) -> list[tuple[str | None, str]]:
    return [(p.field, p.message) for p in problems if p.severity == "error"]


def warnings(problems: list[Problem]) -> list[tuple[str | None, str]]:
    return [(p.field, p.message) for p in problems if p.severity == "warning"]


# ------------------------------------------------------------------------------- the model


def test_retry_policy_is_the_plans_retry_spec_with_the_seeds_defaults() -> None:
    assert RetryPolicy is RetrySpec
    policy = RetryPolicy()
    assert (policy.max_attempts, policy.backoff_ms, policy.multiplier) == (1, 1000, 2.0)
    assert (policy.max_backoff_ms, policy.non_retryable) == (60_000, ("4xx",))


def test_step_defaults_are_a_30_second_timeout_one_attempt_and_sync_completion() -> None:
    step = SagaStep("a", "user-service", "validate-user")

    assert step.timeout == 30_000
    assert step.retry_policy == RetryPolicy()
    assert step.completion == "sync"
    assert step.payload == {}
    assert wf_step("a").timeout == 30_000


def test_definition_key_is_the_kind_and_the_saga_type_or_workflow_id() -> None:
    assert definition_key(saga(reserve())) == (Kind.SAGA, "order-processing")
    assert definition_key(workflow(wf_step("a"))) == (Kind.WORKFLOW, "user-onboarding")


# ------------------------------------------------------------------------------ saga plans


def test_saga_plan_chains_the_steps_and_calls_operations_endpoints(
    registry: ServiceRegistry,
) -> None:
    definition = saga(
        SagaStep(
            "validate-user",
            "user-service",
            "validate-user",
            payload={"user_id": "{{ input.customer_id }}"},
            timeout=5000,
            retry_policy=RetryPolicy(max_attempts=3, backoff_ms=1000),
        ),
        reserve(compensation_payload={"reservation_id": "{{ context.r.id }}"}),
        SagaStep("send-confirmation", "notification-services", "send-order-confirmation"),
        description="Order saga",
        metadata={"owner": "commerce-team"},
        timeout_ms=120_000,
    )

    plan = to_plan(definition, registry=registry)

    assert (plan.kind, plan.name, plan.version) == (Kind.SAGA, "order-processing", 1)
    assert plan.error_handling is ErrorHandling.COMPENSATION
    assert plan.consistency is Consistency.SAGA
    assert (plan.timeout_ms, plan.description) == (120_000, "Order saga")
    assert plan.metadata == {"owner": "commerce-team"}
    assert [s.dependencies for s in plan.steps] == [(), ("validate-user",), ("reserve-inventory",)]
    first, second, third = plan.steps
    assert first.name == "validate-user"
    assert first.service == "user-service"
    assert first.architecture == "microservice"
    assert first.operation == Operation(
        type="command",
        method="POST",
        endpoint="/operations/validate-user",
        payload={"user_id": "{{ input.customer_id }}"},
    )
    assert (first.timeout_ms, first.retry) == (5000, RetryPolicy(max_attempts=3, backoff_ms=1000))
    assert first.compensation is None
    assert second.architecture == "modular-monolith"
    assert second.compensation == Operation(
        type="command",
        method="POST",
        endpoint="/operations/release-items",
        payload={"reservation_id": "{{ context.r.id }}"},
    )
    assert third.compensation is None


def test_saga_compensation_without_its_own_payload_sends_the_steps_payload() -> None:
    plan = to_plan(saga(reserve()))

    compensation = plan.steps[0].compensation
    assert compensation is not None
    assert compensation.payload == {"items": "{{ input.items }}"}


def test_saga_plan_without_a_registry_leaves_the_architecture_to_the_engine() -> None:
    assert to_plan(saga(reserve())).steps[0].architecture is None


def test_event_completion_carries_over_with_its_timeout() -> None:
    step = reserve(completion="event", completion_timeout=60_000)

    planned = to_plan(saga(step)).steps[0]

    assert planned.completion is Completion.EVENT
    assert planned.completion_timeout_ms == 60_000


def test_plan_version_is_the_argument_else_the_definitions_else_1() -> None:
    assert to_plan(saga(reserve())).version == 1
    assert to_plan(saga(reserve(), version=4)).version == 4
    assert to_plan(saga(reserve(), version=4), version=7).version == 7
    assert to_plan(workflow(wf_step("a"), version=2)).version == 2


# -------------------------------------------------------------------------- workflow plans


def test_workflow_plan_keeps_the_graph_flags_and_names() -> None:
    definition = workflow(
        wf_step("create-user-account", retry_policy=RetryPolicy(max_attempts=3)),
        wf_step("send-welcome-email", "create-user-account", optional=True, timeout=15_000),
        wf_step("track-user-registration", "create-user-account", parallel=False),
    )

    plan = to_plan(definition)

    assert (plan.kind, plan.name) == (Kind.WORKFLOW, "user-onboarding")
    assert plan.error_handling is ErrorHandling.CONTINUE_ON_ERROR
    assert plan.consistency is Consistency.EVENTUAL
    assert plan.timeout_ms == 300_000
    assert plan.description == "Complete user registration and setup workflow"
    assert plan.metadata == {"workflow_type": "user-lifecycle", "name": "User Onboarding"}
    create, email, track = plan.steps
    assert create.name == "Create User Account"
    assert create.retry.max_attempts == 3
    assert email.dependencies == ("create-user-account",)
    assert (email.optional, email.alone, email.timeout_ms) == (True, False, 15_000)
    assert (track.optional, track.alone) == (False, True)  # parallel: false runs it alone
    assert email.operation == Operation(endpoint="/send-welcome-email")


def test_a_steps_own_architecture_wins_over_the_registrys(registry: ServiceRegistry) -> None:
    definition = workflow(
        wf_step("a", service_info=ServiceInfo("user-service", "modular-monolith")),
        wf_step("b", service_info=ServiceInfo("legacy-erp")),
    )

    plan = to_plan(definition, registry=registry)

    assert [s.architecture for s in plan.steps] == ["modular-monolith", "traditional-monolith"]
    assert to_plan(definition).steps[1].architecture is None


def test_a_serverless_step_calls_the_function_named_like_its_service_by_default(
    registry: ServiceRegistry,
) -> None:
    named = WorkflowOperation(type="function", function_name="transform-events")
    definition = workflow(
        wf_step("a", service_info=ServiceInfo("data-transformations"), operation=named),
        wf_step("b", service_info=ServiceInfo("data-transformations")),
        wf_step("c", service_info=ServiceInfo("data-transformations", "serverless")),
    )

    plan = to_plan(definition, registry=registry)

    assert [s.operation.function_name for s in plan.steps] == [
        "transform-events",
        "data-transformations",
        "data-transformations",
    ]
    assert plan.steps[0].operation.type == "function"


def test_batch_operation_and_compensation_carry_over() -> None:
    batch = WorkflowOperation(type="batch", endpoint="/batch/customer-sync")
    undo = WorkflowOperation(endpoint="/batch/customer-sync/undo", method="DELETE")
    definition = workflow(
        wf_step(
            "sync",
            operation=replace(batch, batch_operation="customer-sync"),
            compensation=undo,
        ),
        wf_step("b", "sync"),
        error_handling="compensation",
    )

    plan = to_plan(definition)

    assert plan.error_handling is ErrorHandling.COMPENSATION
    assert plan.steps[0].operation.batch_operation == "customer-sync"
    assert plan.steps[0].compensation == Operation(
        method="DELETE", endpoint="/batch/customer-sync/undo"
    )


@pytest.mark.parametrize("kind", ["saga", "workflow"])
def test_plans_survive_a_trip_through_plain_data(kind: str, registry: ServiceRegistry) -> None:
    definition = (
        saga(reserve(payload={"items": ({"sku": "A", "quantity": 1},)}, completion="event"))
        if kind == "saga"
        else workflow(wf_step("a"), wf_step("b", "a", optional=True, parallel=False))
    )

    plan = to_plan(definition, registry=registry)

    assert Plan.from_dict(plan.to_dict()) == plan


def test_payload_tuples_become_lists_as_stored_json_would_give_them() -> None:
    plan = to_plan(saga(reserve(payload={"items": ("A", "B"), "nested": {"x": (1,)}})))

    assert plan.steps[0].operation.payload == {"items": ["A", "B"], "nested": {"x": [1]}}


def test_to_plan_refuses_an_invalid_definition_naming_each_error() -> None:
    definition = workflow(wf_step("a", "b"), wf_step("a"))

    with pytest.raises(ValidationError) as caught:
        to_plan(definition)

    assert [str(p) for p in caught.value.problems] == [
        "error [steps[1].step_id]: workflow 'user-onboarding': duplicate step id 'a'; "
        "first used by steps[0]",
        "error [steps[0].dependencies[0]]: workflow 'user-onboarding': unknown step 'b'",
    ]


def test_to_plan_with_a_registry_refuses_unknown_services(registry: ServiceRegistry) -> None:
    with pytest.raises(ValidationError, match="unknown service 'nope'"):
        to_plan(saga(reserve(service_name="nope")), registry=registry)


# ----------------------------------------------------------------------------- validation


def test_valid_definitions_have_no_problems(registry: ServiceRegistry) -> None:
    assert validate(saga(reserve()), registry=registry) == []
    assert validate(workflow(wf_step("a"), wf_step("b", "a")), registry=registry) == []


def test_a_definition_needs_steps() -> None:
    assert errors(validate(saga())) == [("steps", "a saga needs at least one step")]
    assert errors(validate(workflow())) == [("steps", "a workflow needs at least one step")]


def test_step_ids_are_unique_and_names_follow_the_name_rule() -> None:
    problems = validate(saga(reserve(step_id="a"), reserve(step_id="a"), reserve(step_id=" ")))

    assert errors(problems) == [
        ("steps[1].step_id", "duplicate step id 'a'; first used by steps[0]"),
        ("steps[2].step_id", f"' ' is not a valid name: it contains ' '; a name is {NAME_RULE}"),
    ]
    assert errors(validate(saga(reserve(), saga_type=""))) == [
        ("saga_type", f"'' is not a valid name: it is empty; a name is {NAME_RULE}")
    ]


def test_services_must_be_known_to_the_registry_when_one_is_given(
    registry: ServiceRegistry,
) -> None:
    assert validate(saga(reserve(service_name="billing"))) == []
    assert errors(validate(saga(reserve(service_name="billing")), registry=registry)) == [
        ("steps[0].service_name", "unknown service 'billing': it is not in the registry")
    ]
    step = wf_step("a", service_info=ServiceInfo("billing"))
    assert errors(validate(workflow(step), registry=registry)) == [
        (
            "steps[0].service_info.service_name",
            "unknown service 'billing': it is not in the registry",
        )
    ]


def test_dependencies_must_name_steps_of_the_workflow() -> None:
    problems = validate(workflow(wf_step("a"), wf_step("b", "a", "nope")))

    assert errors(problems) == [("steps[1].dependencies[1]", "unknown step 'nope'")]


def test_a_dependency_cycle_is_reported_once_with_its_path() -> None:
    problems = validate(
        workflow(wf_step("start"), wf_step("a", "start", "c"), wf_step("b", "a"), wf_step("c", "b"))
    )

    assert errors(problems) == [("steps[1].dependencies", "dependency cycle: a -> c -> b -> a")]


def test_a_step_depending_on_itself_is_a_cycle() -> None:
    assert errors(validate(workflow(wf_step("a", "a")))) == [
        ("steps[0].dependencies", "dependency cycle: a -> a")
    ]


def test_dependency_cycles_lists_each_cycle_from_its_first_step() -> None:
    steps = [("x", ["y"]), ("y", ["x", "z"]), ("z", ["y"]), ("w", ["w", "x"])]

    assert dependency_cycles(steps) == [["x", "y"], ["y", "z"], ["w"]]
    assert dependency_cycles([("a", ["b"]), ("b", ["nope"])]) == []


def test_dependency_cycles_handles_long_chains_without_recursion() -> None:
    chain = [(f"s{i}", [f"s{i + 1}"]) for i in range(5000)] + [("s5000", ["s0"])]

    (cycle,) = dependency_cycles(chain)

    assert (len(cycle), cycle[0], cycle[-1]) == (5001, "s0", "s5000")


def test_compensation_handling_needs_a_compensation_on_steps_others_build_on() -> None:
    query = WorkflowOperation(type="query", method="GET", endpoint="/users/1")
    batch = WorkflowOperation(type="batch", endpoint="/batch/customer-sync")
    definition = workflow(
        wf_step("create"),
        wf_step("lookup", operation=query),
        wf_step("sync", "create", "lookup", operation=batch),
        wf_step("email", "create", "sync"),
        wf_step("notify", "create"),
        error_handling="compensation",
    )

    assert errors(validate(definition)) == [
        (
            "steps[0].compensation",
            "missing: error_handling is 'compensation', and steps 'sync', 'email', 'notify' "
            "depend on this command step",
        ),
        (
            "steps[2].compensation",
            "missing: error_handling is 'compensation', and step 'email' depends on this "
            "batch step",
        ),
    ]
    assert validate(replace(definition, error_handling="fail-fast")) == []


def test_a_saga_step_without_compensation_is_valid() -> None:
    assert validate(saga(reserve(compensation_operation=None))) == []


@pytest.mark.parametrize(
    ("fields", "where", "message"),
    [
        (
            {"consistency_strategy": "sometimes"},
            "consistency_strategy",
            "'sometimes' is not one of 'strong', 'eventual', 'saga'",
        ),
        (
            {"error_handling": "retry"},
            "error_handling",
            "'retry' is not one of 'fail-fast', 'continue-on-error', 'compensation'",
        ),
    ],
)
def test_workflow_fields_are_checked(fields: dict[str, Any], where: str, message: str) -> None:
    assert errors(validate(workflow(wf_step("a"), **fields))) == [(where, message)]


@pytest.mark.parametrize(
    ("step_fields", "where", "message"),
    [
        (
            {"operation": WorkflowOperation(type="rpc")},
            "steps[0].operation.type",
            "'rpc' is not one of 'command', 'query', 'batch', 'function'",
        ),
        (
            {"operation": WorkflowOperation(method="FETCH")},
            "steps[0].operation.method",
            "'FETCH' is not one of 'GET', 'POST', 'PUT', 'PATCH', 'DELETE'",
        ),
        (
            {"operation": WorkflowOperation(endpoint="users")},
            "steps[0].operation.endpoint",
            "must start with '/'",
        ),
        (
            {"compensation": WorkflowOperation(type="undo")},
            "steps[0].compensation.type",
            "'undo' is not one of 'command', 'query', 'batch', 'function'",
        ),
        (
            {"service_info": ServiceInfo("user-service", "mainframe")},
            "steps[0].service_info.architecture",
            "'mainframe' is not one of 'microservice', 'modular-monolith', "
            "'traditional-monolith', 'serverless'",
        ),
        (
            {"retry_policy": RetryPolicy(max_attempts=0)},
            "steps[0].retry_policy.max_attempts",
            "must be at least 1",
        ),
        (
            {"retry_policy": RetryPolicy(backoff_ms=-1)},
            "steps[0].retry_policy.backoff_ms",
            "must not be negative",
        ),
        (
            {"retry_policy": RetryPolicy(max_backoff_ms=-1)},
            "steps[0].retry_policy.max_backoff_ms",
            "must not be negative",
        ),
        (
            {"retry_policy": RetryPolicy(multiplier=0.5)},
            "steps[0].retry_policy.multiplier",
            "must be at least 1",
        ),
        (
            {"operation": WorkflowOperation(type="function")},
            "steps[0].operation.function_name",
            "missing: a function step names its function, unless its service is serverless",
        ),
    ],
)
def test_workflow_step_fields_are_checked(
    step_fields: dict[str, Any], where: str, message: str
) -> None:
    assert errors(validate(workflow(wf_step("a", **step_fields)))) == [(where, message)]


@pytest.mark.parametrize(
    ("step_fields", "where", "message"),
    [
        (
            {"retry_policy": RetryPolicy(max_attempts=0)},
            "steps[0].retry_policy.max_attempts",
            "must be at least 1",
        ),
        ({"completion": "later"}, "steps[0].completion", "'later' is not one of 'sync', 'event'"),
    ],
)
def test_saga_step_fields_are_checked(
    step_fields: dict[str, Any], where: str, message: str
) -> None:
    assert errors(validate(saga(reserve(**step_fields)))) == [(where, message)]


def test_a_function_step_on_a_serverless_service_needs_no_function_name(
    registry: ServiceRegistry,
) -> None:
    function = WorkflowOperation(type="function")
    by_registry = wf_step("a", service_info=ServiceInfo("data-transformations"), operation=function)
    by_step = wf_step("b", service_info=ServiceInfo("anything", "serverless"), operation=function)

    assert validate(workflow(by_registry), registry=registry) == []
    assert validate(workflow(by_step)) == []
    assert errors(validate(workflow(by_registry))) == [
        (
            "steps[0].operation.function_name",
            "missing: a function step names its function, unless its service is serverless",
        )
    ]


def test_a_legacy_step_may_ask_for_retries_the_engine_caps(registry: ServiceRegistry) -> None:
    step = wf_step(
        "sync",
        service_info=ServiceInfo("legacy-erp", "traditional-monolith"),
        retry_policy=RetryPolicy(max_attempts=3),
    )

    assert validate(workflow(step), registry=registry) == []


def test_warnings_flag_what_has_no_effect_or_disagrees_with_the_registry(
    registry: ServiceRegistry,
) -> None:
    problems = validate(
        saga(
            reserve(compensation_operation=None, compensation_payload={"a": 1}),
            reserve(step_id="b", completion_timeout=1000),
        )
    )
    assert errors(problems) == []
    assert warnings(problems) == [
        ("steps[0].compensation_payload", "unused: there is no compensation_operation"),
        ("steps[1].completion_timeout", "unused: completion is 'sync', not 'event'"),
    ]

    mismatch = wf_step("a", service_info=ServiceInfo("legacy-erp", "microservice"))
    assert warnings(validate(workflow(mismatch), registry=registry)) == [
        (
            "steps[0].service_info.architecture",
            "'microservice', but the registry lists legacy-erp as 'traditional-monolith'; "
            "the step's value is used",
        )
    ]


@pytest.mark.parametrize(
    ("consistency", "handling"),
    [
        ("strong", ErrorHandling.FAIL_FAST),
        ("eventual", ErrorHandling.CONTINUE_ON_ERROR),
        ("saga", ErrorHandling.COMPENSATION),
    ],
)
def test_the_consistency_strategy_sets_the_error_handling_a_workflow_leaves_out(
    consistency: str, handling: ErrorHandling
) -> None:
    undo = WorkflowOperation(endpoint="/undo")
    definition = workflow(
        wf_step("a", compensation=undo),
        wf_step("b", "a"),
        consistency_strategy=consistency,
        error_handling=None,
    )

    plan = to_plan(definition)

    assert (plan.consistency, plan.error_handling) == (Consistency(consistency), handling)


def test_a_stated_error_handling_wins_over_the_strategys_default() -> None:
    definition = workflow(wf_step("a"), consistency_strategy="saga", error_handling="fail-fast")

    assert to_plan(definition).error_handling is ErrorHandling.FAIL_FAST


def test_under_a_saga_strategy_a_step_others_build_on_needs_a_compensation() -> None:
    definition = workflow(
        wf_step("a"), wf_step("b", "a"), consistency_strategy="saga", error_handling=None
    )

    assert errors(validate(definition)) == [
        (
            "steps[0].compensation",
            "missing: error_handling is 'compensation', and step 'b' depends on this command step",
        )
    ]


# ---------------------------------------------------------------------------- the model


def test_a_workflow_operation_is_the_operation_its_plan_runs(registry: ServiceRegistry) -> None:
    undo = WorkflowOperation(type="command", endpoint="/undo", payload={"why": "rollback"})
    definition = workflow(wf_step("a", compensation=undo))

    (step,) = to_plan(definition, registry=registry).steps

    assert WorkflowOperation is Operation
    assert step.compensation == undo


def test_definitions_take_their_fields_by_name_or_by_camel_case_alias() -> None:
    by_name = SagaStep(step_id="a", service_name="user-service", operation="validate")
    by_alias = SagaStep(stepId="a", serviceName="user-service", operation="validate")  # type: ignore[call-arg]

    assert by_name == by_alias


def test_a_field_of_the_wrong_type_is_refused_when_built() -> None:
    with pytest.raises(pydantic.ValidationError) as caught:
        SagaStep("a", "user-service", "validate", timeout="soon")  # type: ignore[arg-type]

    assert [error["loc"] for error in caught.value.errors()] == [("timeout",)]


def test_a_plan_stored_before_alone_existed_runs_its_steps_side_by_side() -> None:
    stored = to_plan(workflow(wf_step("a"), wf_step("b"))).to_dict()
    for step in stored["steps"]:
        del step["alone"]
        step["parallel"] = False  # what every step stored then, meaning nothing

    assert [step.alone for step in Plan.from_dict(stored).steps] == [False, False]


def test_definition_names_and_step_ids_are_capped_by_the_name_rule() -> None:
    long = "s" * 64
    problems = validate(saga(reserve(step_id="ab-"), saga_type=long))
    assert [
        (field, "more than 63" in m or "ends with '-'" in m) for field, m in errors(problems)
    ] == [
        ("saga_type", True),
        ("steps[0].step_id", True),
    ]
    assert all(NAME_RULE in m for _, m in errors(problems))
    assert errors(validate(workflow(wf_step("a"), workflow_id="W"))) == [
        (
            "workflow_id",
            f"'W' is not a valid name: it contains 'W' (use lower case); a name is {NAME_RULE}",
        )
    ]
    assert validate(saga(reserve(step_id="r" * 63), saga_type="o" * 63)) == []
