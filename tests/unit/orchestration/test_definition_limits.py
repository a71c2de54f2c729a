"""What a definition may not hold because the engine could not run it: numbers out of
bounds, operation names and endpoints that leave their path, payloads JSON cannot carry,
and stored plans that break those rules."""

from __future__ import annotations

import math
import textwrap
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

import pydantic
import pytest

from hybridmesh.core.errors import Problem, ValidationError
from hybridmesh.core.limits import DAY_MS, MAX_DEADLINE_MS
from hybridmesh.orchestration.definitions import (
    RetryPolicy,
    SagaDefinition,
    SagaStep,
    ServiceInfo,
    WorkflowDefinition,
    WorkflowOperation,
    WorkflowStep,
    to_plan,
    validate,
)
from hybridmesh.orchestration.loader import load_definitions
from hybridmesh.orchestration.plan import (
    Operation,
    Plan,
    RetrySpec,
    operation_endpoint,
    stored_copy_problems,
)

SAGA = """\
saga_type: s
steps:
  - step_id: a
    service_name: user-service
    operation: validate-user
"""


def write(folder: Path, text: str, name: str = "definition.yaml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def errors_of(path: Path) -> list[str]:
    return [str(problem) for problem in load_definitions(path).errors]


def errors(problems: list[Problem]) -> list[tuple[str | None, str]]:
    return [(p.field, p.message) for p in problems if p.severity == "error"]


def step(**fields: Any) -> SagaStep:
    return replace(SagaStep("a", "user-service", "validate-user"), **fields)


def wf_step(**fields: Any) -> WorkflowStep:
    base = WorkflowStep("a", "A", ServiceInfo("user-service"), WorkflowOperation(endpoint="/a"))
    return replace(base, **fields)


def workflow(*steps: WorkflowStep) -> WorkflowDefinition:
    return WorkflowDefinition("w", "t", "W", "", "eventual", None, steps)


# ------------------------------------------------------------------------------ numbers


@pytest.mark.parametrize(
    ("line", "field", "message"),
    [
        ("retry_policy: {multiplier: .inf}", "retry_policy.multiplier", "must be a finite number"),
        ("retry_policy: {multiplier: .nan}", "retry_policy.multiplier", "must be a finite number"),
        ("retry_policy: {multiplier: -.inf}", "retry_policy.multiplier", "must be a finite number"),
        ("retry_policy: {multiplier: 1000}", "retry_policy.multiplier", "must be at most 100"),
        ("retry_policy: {max_attempts: 101}", "retry_policy.max_attempts", "must be at most 100"),
        (
            "retry_policy: {backoff_ms: 99999999999999999999999}",
            "retry_policy.backoff_ms",
            f"must be at most {DAY_MS} ms (one day)",
        ),
        (
            "retry_policy: {max_backoff_ms: 86400001}",
            "retry_policy.max_backoff_ms",
            f"must be at most {DAY_MS} ms (one day)",
        ),
        (
            "timeout: 99999999999999999999999",
            "timeout",
            f"must be at most {DAY_MS} ms (one day)",
        ),
        ("timeout: .inf", "timeout", "must be a whole number"),
        (
            "total_timeout: 31536000001",
            "total_timeout",
            f"must be at most {MAX_DEADLINE_MS} ms (365 days)",
        ),
        (
            "completion_timeout: 99999999999999999999999",
            "completion_timeout",
            f"must be at most {MAX_DEADLINE_MS} ms (365 days)",
        ),
    ],
)
def test_numbers_out_of_bounds_in_a_step_name_file_line_and_field(
    tmp_path: Path, line: str, field: str, message: str
) -> None:
    path = write(tmp_path, SAGA + f"    {line}\n")

    assert errors_of(path) == [f"{path}:6: error [steps[0].{field}]: {message}"]


@pytest.mark.parametrize(
    ("line", "field", "message"),
    [
        ("timeout_ms: 99999999999999999999999", "timeout_ms", "365 days"),
        ("timeout_ms: .nan", "timeout_ms", "must be a whole number"),
        ("version: 99999999999999999999", "version", "must be at most 2147483647"),
        ("version: 0", "version", "must be at least 1"),
    ],
)
def test_numbers_out_of_bounds_in_a_definition_name_file_line_and_field(
    tmp_path: Path, line: str, field: str, message: str
) -> None:
    path = write(tmp_path, f"{line}\n" + SAGA)

    (error,) = errors_of(path)
    assert error.startswith(f"{path}:1: error [{field}]: ")
    assert message in error


def test_numbers_at_their_bounds_are_valid(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"timeout_ms: {MAX_DEADLINE_MS}\n"
        + SAGA
        + f"    timeout: {DAY_MS}\n"
        + f"    total_timeout: {MAX_DEADLINE_MS}\n"
        + "    retry_policy: {max_attempts: 100, multiplier: 100, backoff_ms: 0, "
        + f"max_backoff_ms: {DAY_MS}}}\n",
    )

    loaded = load_definitions(path)

    assert loaded.errors == []
    (definition,) = loaded.definitions
    assert to_plan(definition.definition).steps[0].retry.multiplier == 100.0


def test_a_step_out_of_bounds_is_refused_when_built() -> None:
    with pytest.raises(pydantic.ValidationError) as caught:
        SagaStep("a", "user-service", "validate-user", timeout=10**23)

    assert [(e["loc"], e["msg"]) for e in caught.value.errors()] == [
        (("timeout",), f"must be at most {DAY_MS} ms (one day)")
    ]


@pytest.mark.parametrize(
    ("retry", "field", "message"),
    [
        (RetryPolicy(multiplier=math.inf), "multiplier", "must be a finite number"),
        (RetryPolicy(multiplier=math.nan), "multiplier", "must be a finite number"),
        (RetryPolicy(backoff_ms=10**23), "backoff_ms", f"must be at most {DAY_MS} ms (one day)"),
        (RetryPolicy(max_attempts=10**6), "max_attempts", "must be at most 100"),
        (RetryPolicy(max_attempts=2.5), "max_attempts", "must be a whole number"),  # type: ignore[arg-type]
    ],
)
def test_a_retry_policy_built_in_python_is_checked_by_the_same_rules(
    retry: RetryPolicy, field: str, message: str
) -> None:
    where = f"steps[0].retry_policy.{field}"

    assert errors(validate(SagaDefinition("s", (step(retry_policy=retry),)))) == [(where, message)]
    assert errors(validate(workflow(wf_step(retry_policy=retry)))) == [(where, message)]
    with pytest.raises(ValidationError, match=field):
        to_plan(SagaDefinition("s", (step(retry_policy=retry),)))


def test_backoffs_never_overflow_however_many_attempts_a_compensation_makes() -> None:
    steep = RetrySpec(backoff_ms=1, multiplier=100.0, max_backoff_ms=DAY_MS)
    gentle = RetrySpec(backoff_ms=1000, multiplier=1.0001, max_backoff_ms=60_000)

    assert steep.delay_ms(10**9) == DAY_MS
    assert gentle.delay_ms(10**9) == 60_000
    assert [RetrySpec().delay_ms(n) for n in range(1, 9)] == [
        1000,
        2000,
        4000,
        8000,
        16000,
        32000,
        60000,
        60000,
    ]
    assert RetrySpec(backoff_ms=0).delay_ms(10**9) == 0
    assert RetrySpec(backoff_ms=5000, max_backoff_ms=100).delay_ms(3) == 100


# --------------------------------------------------------------- operation names and paths


@pytest.mark.parametrize(
    "name",
    ["../../admin?x=1#frag", "..", "a..b", "-a", ".a", "a/b", "a b", "a%2fb", "x" * 129, " "],
)
def test_a_saga_operation_is_one_safe_path_segment(tmp_path: Path, name: str) -> None:
    text = SAGA.replace("operation: validate-user", f"operation: {name!r}")
    path = write(tmp_path, text)
    compensation = write(tmp_path, SAGA + f"    compensation_operation: {name!r}\n", "c.yaml")

    (error,) = errors_of(path)
    assert error.startswith(f"{path}:5: error [steps[0].operation]: ")
    (error,) = errors_of(compensation)
    assert error.startswith(f"{compensation}:6: error [steps[0].compensation_operation]: ")
    with pytest.raises(ValidationError):
        operation_endpoint(name)


def test_an_operation_name_error_says_what_is_allowed(tmp_path: Path) -> None:
    path = write(tmp_path, SAGA.replace("validate-user", "'../../admin?x=1#frag'"))

    assert errors_of(path) == [
        f"{path}:5: error [steps[0].operation]: '../../admin?x=1#frag' is not an operation "
        "name: use up to 128 letters, digits, '.', '_' and '-', starting with a letter or "
        "digit, without '..'"
    ]


def test_operation_names_in_the_safe_set_become_operations_paths() -> None:
    plan = to_plan(SagaDefinition("s", (step(operation="v1.charge_card-2"),)))

    assert plan.steps[0].operation.endpoint == "/operations/v1.charge_card-2"
    assert operation_endpoint("A" * 128) == "/operations/" + "A" * 128


@pytest.mark.parametrize(
    ("endpoint", "message"),
    [
        ("users", "must start with '/'"),
        ("/../admin", "must not contain '.' or '..' segments"),
        ("/a/%2e%2E/admin", "must not contain '.' or '..' segments"),
        ("/a/./b", "must not contain '.' or '..' segments"),
        ("/a b", "must not contain ' '"),
        ("/a\r\nX-Injected: 1", "must not contain '\\r'"),
        ("/a#frag", "must not contain '#'"),
        ("/a\\b", "must not contain '\\\\'"),
        ("/users/{{ input.id }}", "templates are rendered in payloads only"),
        ("/" + "a" * 2048, "must be at most 2048 characters"),
    ],
)
def test_a_workflow_endpoint_is_a_path_on_its_service(endpoint: str, message: str) -> None:
    with pytest.raises(pydantic.ValidationError, match="endpoint"):
        pydantic.TypeAdapter(WorkflowOperation).validate_python({"endpoint": endpoint})

    problems = errors(validate(workflow(wf_step(operation=WorkflowOperation(endpoint=endpoint)))))

    assert [field for field, _ in problems] == ["steps[0].operation.endpoint"]
    assert message in problems[0][1]


def test_an_endpoint_may_carry_a_query() -> None:
    operation = WorkflowOperation(type="query", method="GET", endpoint="/users?active=true")

    assert errors(validate(workflow(wf_step(operation=operation)))) == []


@pytest.mark.parametrize("field", ["batch_operation", "function_name"])
def test_batch_operation_and_function_names_are_operation_names(field: str) -> None:
    operation = WorkflowOperation(type="batch", **{field: "../../etc/cron.d/x"})

    problems = errors(validate(workflow(wf_step(operation=operation))))

    assert [where for where, _ in problems] == [f"steps[0].operation.{field}"]


@pytest.mark.parametrize("name", ["Transform-Events", "a..b", "_private"])
def test_a_function_name_no_function_can_be_registered_under_is_refused(name: str) -> None:
    # What the function registry accepts, and a safe path segment too: a step naming
    # anything else could never find its function.
    operation = WorkflowOperation(type="function", function_name=name)

    problems = errors(validate(workflow(wf_step(operation=operation))))

    assert [where for where, _ in problems] == ["steps[0].operation.function_name"]


def test_a_function_name_the_registry_takes_is_valid() -> None:
    operation = WorkflowOperation(type="function", function_name="transform_events.v2")

    assert errors(validate(workflow(wf_step(operation=operation)))) == []


def test_a_batch_step_named_by_its_endpoint_needs_an_operation_name_there() -> None:
    operation = WorkflowOperation(type="batch", endpoint="/batch/orders?since=1")
    named = replace(operation, batch_operation="orders")

    assert errors(validate(workflow(wf_step(operation=named)))) == []

    problems = errors(validate(workflow(wf_step(operation=operation))))

    assert [where for where, _ in problems] == ["steps[0].operation.batch_operation"]


# ------------------------------------------------------------------------------- payloads


@pytest.mark.parametrize(
    ("payload", "field", "message"),
    [
        ({"amount": math.inf}, "payload.amount", "must be a finite number"),
        ({"amount": [1, math.nan]}, "payload.amount[1]", "must be a finite number"),
        ({"n": 2**64}, "payload.n", "must be a whole number within 64 bits"),
        ({"n": -(2**63) - 1}, "payload.n", "must be a whole number within 64 bits"),
        ({"a": {1: "x"}}, "payload.a.1", "a key must be a string, not 1: quote it"),
        ({"s": {1, 2}}, "payload.s", "is not a JSON value (a set)"),
        ({"b": b"x"}, "payload.b", "is not a JSON value (a bytes)"),
        ({"t": "\ud800"}, "payload.t", "is not valid text"),
        ({"{{ input.k }}": 1}, "payload.{{ input.k }}", "templates are rendered in values"),
    ],
)
def test_a_payload_holds_only_what_json_carries(
    payload: dict[Any, Any], field: str, message: str
) -> None:
    problems = errors(validate(SagaDefinition("s", (step(payload=payload),))))

    assert [where for where, _ in problems] == [f"steps[0].{field}"]
    assert message in problems[0][1]


def test_payload_values_read_from_yaml_are_checked_at_their_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        SAGA + "    payload:\n      order: x\n      amount: .inf\n      n: 99999999999999999999\n",
    )

    assert errors_of(path) == [
        f"{path}:8: error [steps[0].payload.amount]: must be a finite number",
        f"{path}:9: error [steps[0].payload.n]: must be a whole number within 64 bits "
        "(-9223372036854775808 to 18446744073709551615)",
    ]


def test_dates_read_from_yaml_become_iso_text_in_the_plan(tmp_path: Path) -> None:
    path = write(tmp_path, SAGA + "    payload: {since: 2024-01-31}\n")

    (loaded,) = load_definitions(path).definitions
    assert loaded.definition.steps[0].payload == {"since": date(2024, 1, 31)}

    plan = to_plan(loaded.definition)
    assert plan.steps[0].operation.payload == {"since": "2024-01-31"}
    assert stored_copy_problems(plan) == []


def test_saga_metadata_holds_only_json_too() -> None:
    problems = errors(validate(SagaDefinition("s", (step(),), metadata={"x": math.nan})))

    assert problems == [("metadata.x", "must be a finite number")]


# ---------------------------------------------------------------------------- stored plans


def stored() -> dict[str, Any]:
    return to_plan(SagaDefinition("s", (step(payload={"id": "{{ input.id }}"}),))).to_dict()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda d: d["steps"][0]["retry"].update(multiplier=None),
            "[steps[0].retry.multiplier]: must be a number",
        ),
        (lambda d: d["steps"][0]["retry"].update(max_attempts=10**6), "must be at most 100"),
        (lambda d: d["steps"][0].update(timeout_ms=10**23), "[steps[0].timeout_ms]: must be at"),
        (lambda d: d.update(timeout_ms=-1), "[timeout_ms]: must be a positive number"),
        (
            lambda d: d["steps"][0]["operation"].update(endpoint="/operations/../../admin?x=1"),
            "[steps[0].operation.endpoint]: must not contain '.' or '..' segments",
        ),
        (lambda d: d["steps"][0].pop("step_id"), "not a stored plan (KeyError: 'step_id')"),
        (lambda d: d.update(error_handling="sometimes"), "not a stored plan (ValueError"),
    ],
)
def test_a_stored_plan_that_breaks_the_rules_is_refused_naming_its_field(
    change: Any, message: str
) -> None:
    data = stored()
    change(data)

    with pytest.raises(ValidationError) as refused:
        Plan.from_dict(data)

    assert message in str(refused.value)


def test_a_valid_stored_plan_reads_back_equal() -> None:
    plan = to_plan(SagaDefinition("s", (step(payload={"id": "{{ input.id }}"}),)))

    assert Plan.from_dict(plan.to_dict()) == plan
    assert stored_copy_problems(plan) == []


def test_a_plan_that_json_would_change_does_not_survive_its_stored_form() -> None:
    good = to_plan(SagaDefinition("s", (step(),)))
    inf = replace(good.steps[0], retry=RetrySpec(multiplier=math.inf))
    huge = replace(good.steps[0], operation=Operation(payload={"n": 2**70}))

    assert stored_copy_problems(replace(good, steps=(inf,))) == [
        Problem("would not run as stored: must be a number", field="steps[0].retry.multiplier")
    ]
    (problem,) = stored_copy_problems(replace(good, steps=(huge,)))
    assert problem.message.startswith("cannot be stored as JSON")
