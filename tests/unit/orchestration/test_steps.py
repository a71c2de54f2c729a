"""How a step reaches its target, by architecture (the integration guide's rules)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from hybridmesh.core.errors import ConfigurationError, TransportError, ValidationError
from hybridmesh.core.ids import idempotency_key
from hybridmesh.orchestration.plan import Operation, PlanStep, RetrySpec
from hybridmesh.orchestration.steps import Attempt, StepRunner, classify
from hybridmesh.registry import ServiceDefinition, ServiceRegistry


def registry() -> ServiceRegistry:
    def service(name: str, architecture: str) -> ServiceDefinition:
        return ServiceDefinition.model_validate(
            {"name": name, "architecture": architecture, "base_url": "http://x", "version": "v1"}
        )

    return ServiceRegistry(
        [
            service("orders", "microservice"),
            service("stock", "modular-monolith"),
            service("erp", "traditional-monolith"),
            service("transform", "serverless"),
        ]
    )


def step(service: str | None, *, timeout_ms: int = 5_000, attempts: int = 3, **op: Any) -> PlanStep:
    return PlanStep(
        step_id="s",
        name="s",
        service=service,
        architecture=None,
        operation=Operation(**op),
        timeout_ms=timeout_ms,
        retry=RetrySpec(max_attempts=attempts),
    )


class Functions:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Mapping[str, Any], str | None, float | None]] = []

    def names(self) -> list[str]:
        return ["transform", "enrich"]

    async def invoke(
        self,
        name: str,
        payload: Mapping[str, Any],
        *,
        idempotency_key: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> Any:
        self.calls.append((name, payload, idempotency_key, timeout))
        return {"transformed": True}


class Batch:
    def __init__(self) -> None:
        self.records: list[tuple[str, str, Mapping[str, Any], str | None]] = []

    async def enqueue(
        self,
        target: str,
        operation: str,
        payload: Mapping[str, Any],
        *,
        idempotency_key: str | None = None,
    ) -> Any:
        self.records.append((target, operation, payload, idempotency_key))
        return "rec-1"


def test_modular_monoliths_get_at_least_30_seconds() -> None:
    runner = StepRunner(None, registry())
    assert runner.timeout_ms(step("stock", timeout_ms=5_000)) == 30_000
    assert runner.timeout_ms(step("stock", timeout_ms=45_000)) == 45_000


def test_traditional_monoliths_get_at_most_60_seconds_and_one_retry() -> None:
    runner = StepRunner(None, registry())
    legacy = step("erp", timeout_ms=120_000, attempts=5)
    assert runner.timeout_ms(legacy) == 60_000
    assert runner.max_attempts(legacy) == 2
    assert runner.max_attempts(step("erp", attempts=1)) == 1


def test_microservices_keep_the_steps_own_timeout_and_attempts() -> None:
    runner = StepRunner(None, registry())
    assert runner.timeout_ms(step("orders", timeout_ms=5_000)) == 5_000
    assert runner.max_attempts(step("orders", attempts=4)) == 4


def attempt(s: PlanStep, payload: Any = None, compensation: bool = False) -> Attempt:
    return Attempt("ex-1", s, s.operation, payload or {"a": 1}, compensation, 1)


async def test_a_serverless_step_invokes_its_function_with_the_steps_key() -> None:
    functions = Functions()
    runner = StepRunner(None, registry(), functions=functions)
    result = await runner.run(attempt(step("transform", timeout_ms=2_000)))
    assert result == {"transformed": True}
    assert functions.calls == [("transform", {"a": 1}, idempotency_key("ex-1", "s"), 2.0)]


async def test_a_function_step_names_its_function() -> None:
    functions = Functions()
    runner = StepRunner(None, registry(), functions=functions)
    await runner.run(attempt(step(None, type="function", function_name="enrich")))
    assert functions.calls[0][0] == "enrich"


async def test_a_legacy_batch_step_is_queued_not_called() -> None:
    batch = Batch()
    runner = StepRunner(None, registry(), batch=batch)
    legacy = step("erp", type="batch", endpoint="/batch/customer-sync")
    result = await runner.run(attempt(legacy, {"customer": "c-1"}))
    assert result == {"queued": "rec-1", "operation": "customer-sync"}
    assert batch.records == [
        ("erp", "customer-sync", {"customer": "c-1"}, idempotency_key("ex-1", "s"))
    ]


async def test_a_batch_step_without_a_batch_integration_is_a_configuration_error() -> None:
    runner = StepRunner(None, registry())
    with pytest.raises(ConfigurationError, match="no batch integration"):
        await runner.run(attempt(step("erp", type="batch")))


def test_compensations_have_their_own_key() -> None:
    s = step("orders")
    assert attempt(s).key == idempotency_key("ex-1", "s")
    assert attempt(s, compensation=True).key == idempotency_key("ex-1", "s", "compensation")


@pytest.mark.parametrize(
    ("error", "retryable", "ambiguous"),
    [
        (TransportError("nope", status=400), False, False),
        (TransportError("busy", status=503), True, True),
        (TransportError("slow down", status=429), True, True),
        (TransportError("refused", status=None), True, True),
        (TimeoutError(), True, True),
        (ValidationError("bad payload"), False, False),
    ],
)
def test_failures_are_classified_for_retry_and_compensation(
    error: Exception, retryable: bool, ambiguous: bool
) -> None:
    failure = classify(error, RetrySpec(max_attempts=3))
    assert (failure.retryable, failure.ambiguous) == (retryable, ambiguous)


def test_a_policy_can_name_statuses_and_error_types_that_are_not_retried() -> None:
    retry = RetrySpec(max_attempts=3, non_retryable=("409", "KeyError"))
    assert not classify(TransportError("conflict", status=409), retry).retryable
    assert not classify(KeyError("x"), retry).retryable
    assert classify(TransportError("bad", status=400), retry).retryable  # "4xx" not listed
