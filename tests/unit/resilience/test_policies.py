"""Default policies per architecture, per-service overrides and the live guard set."""

from __future__ import annotations

import dataclasses
from typing import Any

import pydantic
import pytest

from hybridmesh.core.clock import FakeClock
from hybridmesh.resilience import (
    LEGACY_MAX_TIMEOUT,
    BreakerState,
    BulkheadConfig,
    CircuitBreakerConfig,
    PolicySet,
    RateLimitConfig,
    ResilienceOverrides,
    apply_overrides,
    default_policy,
)

# -- default_policy -----------------------------------------------------------------------


def test_microservice_query() -> None:
    policy = default_policy("microservice", "query")
    assert policy.timeout == 5.0
    assert policy.retry.max_attempts == 4  # 3 retries
    assert policy.rate_limit is None
    assert policy.pooled_connections is False


def test_microservice_command() -> None:
    policy = default_policy("microservice", "command")
    assert policy.timeout == 15.0
    assert policy.retry.max_attempts == 2  # 1 retry


@pytest.mark.parametrize("request_type", ["query", "command"])
def test_modular_monolith(request_type: str) -> None:
    policy = default_policy("modular-monolith", request_type)
    assert policy.timeout == 10.0
    assert policy.retry.max_attempts == 3  # 2 retries
    assert policy.pooled_connections is True


@pytest.mark.parametrize("request_type", ["query", "command", "batch"])
def test_traditional_monolith_is_treated_conservatively(request_type: str) -> None:
    policy = default_policy("traditional-monolith", request_type)
    micro = default_policy("microservice", request_type)
    assert policy.retry.max_attempts == 2  # 1 retry
    assert policy.timeout <= 60.0
    assert policy.max_timeout == LEGACY_MAX_TIMEOUT == 60.0
    assert policy.rate_limit is not None
    assert policy.bulkhead.max_concurrent < micro.bulkhead.max_concurrent


@pytest.mark.parametrize("request_type", ["query", "command"])
def test_serverless_allows_for_cold_starts(request_type: str) -> None:
    assert default_policy("serverless", request_type).timeout == 30.0


def test_default_request_type_is_query() -> None:
    assert default_policy("microservice") == default_policy("microservice", "query")


@pytest.mark.parametrize("request_type", ["query", "command", "batch"])
def test_unknown_architecture_falls_back_to_microservice(request_type: str) -> None:
    assert default_policy("mainframe", request_type) == default_policy("microservice", request_type)


def test_breaker_slow_call_duration_follows_the_timeout() -> None:
    # A call that takes most of its timeout counts as slow; it is set per policy.
    for architecture in ("microservice", "modular-monolith"):
        policy = default_policy(architecture)
        assert 0 < policy.breaker.slow_call_duration < policy.timeout


# -- apply_overrides ----------------------------------------------------------------------


def test_no_overrides_returns_the_same_policy() -> None:
    policy = default_policy("microservice")
    assert apply_overrides(policy, None) is policy


def test_timeout_override_changes_only_the_timeout() -> None:
    policy = default_policy("microservice")
    changed = apply_overrides(policy, ResilienceOverrides(timeout=7.0))
    assert changed.timeout == 7.0
    assert dataclasses.replace(changed, timeout=policy.timeout) == policy


def test_retries_override_sets_max_attempts() -> None:
    policy = default_policy("microservice")
    changed = apply_overrides(policy, ResilienceOverrides(retries=5))
    assert changed.retry.max_attempts == 6
    assert changed.retry == dataclasses.replace(policy.retry, max_attempts=6)
    assert dataclasses.replace(changed, retry=policy.retry) == policy


def test_zero_retries_means_one_attempt() -> None:
    changed = apply_overrides(default_policy("microservice"), ResilienceOverrides(retries=0))
    assert changed.retry.max_attempts == 1


def test_retry_backoff_and_deadline_overrides() -> None:
    policy = default_policy("microservice")
    overrides = ResilienceOverrides(backoff_initial=0.0, backoff_max=2.0, deadline=9.0)
    retry = apply_overrides(policy, overrides).retry
    assert (retry.backoff_initial, retry.backoff_max, retry.deadline) == (0.0, 2.0, 9.0)
    assert retry.max_attempts == policy.retry.max_attempts


def test_breaker_overrides_replace_only_the_given_knobs() -> None:
    policy = default_policy("microservice")
    knobs: dict[str, Any] = {
        "failure_rate_threshold": 0.3,
        "slow_call_duration": 2.0,
        "minimum_calls": 7,
        "window_type": "time",
        "window_size": 30,
        "wait_in_open": 12.0,
        "permitted_calls_in_half_open": 4,
    }
    changed = apply_overrides(policy, ResilienceOverrides(**knobs))
    assert changed.breaker == dataclasses.replace(policy.breaker, **knobs)
    assert changed.breaker.slow_call_rate_threshold == policy.breaker.slow_call_rate_threshold
    assert dataclasses.replace(changed, breaker=policy.breaker) == policy


def test_one_breaker_knob_keeps_the_others() -> None:
    policy = default_policy("modular-monolith")
    changed = apply_overrides(policy, ResilienceOverrides(minimum_calls=3))
    assert changed.breaker == dataclasses.replace(policy.breaker, minimum_calls=3)


def test_bulkhead_overrides() -> None:
    policy = default_policy("microservice")
    only_size = apply_overrides(policy, ResilienceOverrides(max_concurrent=3)).bulkhead
    assert only_size == BulkheadConfig(max_concurrent=3, max_wait=policy.bulkhead.max_wait)
    only_wait = apply_overrides(policy, ResilienceOverrides(max_wait=0.0)).bulkhead
    assert only_wait == BulkheadConfig(max_concurrent=policy.bulkhead.max_concurrent, max_wait=0.0)


def test_rate_limit_override_adds_a_limiter_where_there_was_none() -> None:
    policy = default_policy("microservice")
    assert policy.rate_limit is None
    limit = apply_overrides(policy, ResilienceOverrides(rate_limit=5.0, burst=2)).rate_limit
    assert limit == RateLimitConfig(rate=5.0, burst=2, max_wait=1.0)
    limit = apply_overrides(policy, ResilienceOverrides(rate_limit=5.0)).rate_limit
    assert limit is not None
    assert (limit.rate, limit.burst) == (5.0, 5)


def test_rate_limit_override_keeps_the_existing_burst_and_wait() -> None:
    policy = default_policy("traditional-monolith")
    assert policy.rate_limit is not None
    limit = apply_overrides(policy, ResilienceOverrides(rate_limit=50.0)).rate_limit
    assert limit == dataclasses.replace(policy.rate_limit, rate=50.0)


def test_burst_override_alone() -> None:
    legacy = default_policy("traditional-monolith")
    assert legacy.rate_limit is not None
    limit = apply_overrides(legacy, ResilienceOverrides(burst=3)).rate_limit
    assert limit == dataclasses.replace(legacy.rate_limit, burst=3)
    # A burst without any rate limit to apply it to changes nothing.
    micro = default_policy("microservice")
    assert apply_overrides(micro, ResilienceOverrides(burst=3)).rate_limit is None


@pytest.mark.parametrize("request_type", ["query", "command", "batch"])
def test_legacy_timeout_override_is_capped_at_max_timeout(request_type: str) -> None:
    policy = default_policy("traditional-monolith", request_type)
    assert apply_overrides(policy, ResilienceOverrides(timeout=120.0)).timeout == 60.0
    assert apply_overrides(policy, ResilienceOverrides(timeout=45.0)).timeout == 45.0


def test_other_architectures_take_a_long_timeout_override() -> None:
    policy = default_policy("microservice")
    assert apply_overrides(policy, ResilienceOverrides(timeout=120.0)).timeout == 120.0


def test_overrides_leave_the_default_policy_untouched() -> None:
    before = default_policy("microservice")
    apply_overrides(before, ResilienceOverrides(timeout=1.0, retries=0, max_concurrent=1))
    assert default_policy("microservice").timeout == 5.0
    assert default_policy("microservice").retry.max_attempts == 4


# -- ResilienceOverrides ------------------------------------------------------------------


def test_overrides_parse_from_a_yaml_block() -> None:
    overrides = ResilienceOverrides.model_validate({"timeout": 8, "retries": 2})
    assert (overrides.timeout, overrides.retries) == (8.0, 2)
    assert overrides.max_concurrent is None


def test_overrides_reject_unknown_keys() -> None:
    with pytest.raises(pydantic.ValidationError, match="retry_count"):
        ResilienceOverrides.model_validate({"retry_count": 3})


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("timeout", -1.0),
        ("timeout", 0.0),
        ("retries", -1),
        ("backoff_initial", -0.1),
        ("deadline", -5.0),
        ("failure_rate_threshold", 1.5),
        ("minimum_calls", 0),
        ("window_size", -10),
        ("wait_in_open", -1.0),
        ("max_concurrent", 0),
        ("max_wait", -0.5),
        ("rate_limit", -2.0),
        ("burst", 0),
    ],
)
def test_overrides_reject_out_of_range_values(key: str, value: float) -> None:
    with pytest.raises(pydantic.ValidationError, match=key):
        ResilienceOverrides.model_validate({key: value})


def test_overrides_reject_an_unknown_window_type() -> None:
    with pytest.raises(pydantic.ValidationError):
        ResilienceOverrides.model_validate({"window_type": "sliding"})


# -- PolicySet ----------------------------------------------------------------------------


def test_policy_set_returns_the_same_breaker_for_the_same_name() -> None:
    guards = PolicySet(clock=FakeClock())
    config = CircuitBreakerConfig()
    first = guards.breaker("orders", config)
    assert guards.breaker("orders", CircuitBreakerConfig()) is first
    assert guards.breaker("billing", config) is not first
    assert guards.find_breaker("orders") is first
    assert guards.find_breaker("unknown") is None
    assert {b.name for b in guards.breakers()} == {"orders", "billing"}


def test_policy_set_keeps_the_window_for_an_equal_config() -> None:
    guards = PolicySet(clock=FakeClock())
    breaker = guards.breaker("orders", CircuitBreakerConfig(minimum_calls=5))
    breaker.record_success(0.01)
    guards.breaker("orders", CircuitBreakerConfig(minimum_calls=5))
    assert breaker.snapshot().calls == 1


def test_policy_set_reconfigures_on_changed_config_keeping_state() -> None:
    clock = FakeClock()
    guards = PolicySet(clock=clock)
    breaker = guards.breaker("orders", CircuitBreakerConfig(wait_in_open=30.0))
    breaker.force_open()
    again = guards.breaker("orders", CircuitBreakerConfig(wait_in_open=5.0))
    assert again is breaker
    assert breaker.config.wait_in_open == 5.0
    assert breaker.state is BreakerState.OPEN
    clock.advance(5.0)
    breaker.acquire()  # the new wait_in_open applies
    assert breaker.state is BreakerState.HALF_OPEN


def test_policy_set_breakers_use_its_clock() -> None:
    clock = FakeClock()
    breaker = PolicySet(clock=clock).breaker("orders", CircuitBreakerConfig(wait_in_open=10.0))
    breaker.force_open()
    clock.advance(10.0)
    breaker.acquire()
    assert breaker.state is BreakerState.HALF_OPEN


def test_policy_set_calls_on_breaker_change() -> None:
    seen: list[tuple[str, BreakerState, BreakerState]] = []
    guards = PolicySet(
        clock=FakeClock(), on_breaker_change=lambda name, old, new: seen.append((name, old, new))
    )
    breaker = guards.breaker("orders", CircuitBreakerConfig(minimum_calls=2))
    breaker.record_failure(0.01, OSError("refused"))
    breaker.record_failure(0.01, OSError("refused"))
    breaker.reset()
    assert seen == [
        ("orders", BreakerState.CLOSED, BreakerState.OPEN),
        ("orders", BreakerState.OPEN, BreakerState.CLOSED),
    ]


def test_policy_set_bulkhead_is_shared_and_resized() -> None:
    guards = PolicySet(clock=FakeClock())
    bulkhead = guards.bulkhead("orders", BulkheadConfig(max_concurrent=2))
    assert guards.bulkhead("orders", BulkheadConfig(max_concurrent=2)) is bulkhead
    assert guards.bulkhead("orders", BulkheadConfig(max_concurrent=5)) is bulkhead
    assert bulkhead.config.max_concurrent == 5
    assert bulkhead.in_flight == 0
