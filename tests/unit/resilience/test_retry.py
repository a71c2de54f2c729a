"""Retry: backoff and jitter, what is retried, Retry-After, giving up, the deadline."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from hybridmesh.core.clock import FakeClock
from hybridmesh.core.errors import (
    BulkheadFullError,
    CallTimeoutError,
    CircuitOpenError,
    RetriesExhaustedError,
    TransportError,
)
from hybridmesh.resilience import Retry, RetryPolicy


class FixedRandom(random.Random):
    """An rng whose ``random()`` always returns ``value``: pins the jitter factor."""

    def __init__(self, value: float) -> None:
        super().__init__(0)
        self.value = value

    def random(self) -> float:
        return self.value


def scripted(*outcomes: Any) -> tuple[Callable[[int], Awaitable[Any]], list[int]]:
    """A callable that raises or returns ``outcomes[attempt - 1]``; records its attempts."""
    attempts: list[int] = []

    async def fn(attempt: int) -> Any:
        attempts.append(attempt)
        outcome = outcomes[attempt - 1]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    return fn, attempts


def status(code: int | None, retry_after: float | None = None) -> TransportError:
    return TransportError("failed", target="orders", status=code, retry_after=retry_after)


# -- backoff ------------------------------------------------------------------------------


def test_backoff_grows_exponentially_without_jitter() -> None:
    policy = RetryPolicy(backoff_initial=0.1, multiplier=2.0, backoff_max=100.0, jitter=0.0)
    rng = random.Random(1)
    assert [policy.backoff(n, rng) for n in range(1, 6)] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.6])


@pytest.mark.parametrize(
    ("draw", "factor"), [(0.0, 0.8), (0.5, 1.0), (0.999999, 1.2)], ids=["low", "mid", "high"]
)
def test_jitter_scales_the_backoff_within_its_bounds(draw: float, factor: float) -> None:
    policy = RetryPolicy(backoff_initial=1.0, multiplier=3.0, backoff_max=100.0, jitter=0.2)
    rng = FixedRandom(draw)
    assert policy.backoff(1, rng) == pytest.approx(1.0 * factor, rel=1e-5)
    assert policy.backoff(3, rng) == pytest.approx(9.0 * factor, rel=1e-5)


def test_jittered_backoff_stays_within_bounds_for_many_draws() -> None:
    policy = RetryPolicy(backoff_initial=0.5, multiplier=2.0, backoff_max=1000.0, jitter=0.25)
    rng = random.Random(7)
    for n in range(1, 8):
        base = 0.5 * 2 ** (n - 1)
        for _ in range(200):
            assert base * 0.75 <= policy.backoff(n, rng) <= base * 1.25


def test_backoff_is_capped_by_backoff_max() -> None:
    policy = RetryPolicy(backoff_initial=1.0, multiplier=2.0, backoff_max=5.0, jitter=0.0)
    rng = random.Random(1)
    assert [policy.backoff(n, rng) for n in range(1, 7)] == [1.0, 2.0, 4.0, 5.0, 5.0, 5.0]
    # The jitter applies around the cap, never around the uncapped value.
    jittered = RetryPolicy(backoff_initial=1.0, multiplier=2.0, backoff_max=5.0, jitter=0.2)
    assert jittered.backoff(20, FixedRandom(0.999999)) == pytest.approx(6.0, rel=1e-5)
    assert jittered.backoff(20, FixedRandom(0.0)) == pytest.approx(4.0)


async def test_sleeps_are_reproducible_with_a_seeded_rng() -> None:
    policy = RetryPolicy(max_attempts=5, backoff_initial=0.1, backoff_max=10.0, jitter=0.3)

    async def sleeps_for(seed: int) -> list[float]:
        clock = FakeClock()
        fn, _ = scripted(*[status(503)] * 4, "ok")
        retry = Retry("orders", policy, clock=clock, rng=random.Random(seed))
        assert await retry.call(fn) == "ok"
        return clock.sleeps

    first = await sleeps_for(42)
    assert first == await sleeps_for(42)
    assert first != await sleeps_for(43)
    assert len(first) == 4
    for n, slept in enumerate(first, start=1):
        base = 0.1 * 2 ** (n - 1)
        assert base * 0.7 <= slept <= base * 1.3


# -- what is retried ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "error",
    [
        status(503),
        status(502),
        status(504),
        status(429),
        status(408),
        status(None),
        CallTimeoutError("orders", 5.0),
        OSError("network unreachable"),
        ConnectionResetError("reset by peer"),
    ],
    ids=["503", "502", "504", "429", "408", "connection", "timeout", "oserror", "reset"],
)
async def test_retries_transient_failures(error: Exception) -> None:
    clock = FakeClock()
    fn, attempts = scripted(error, "ok")
    retry = Retry("orders", RetryPolicy(max_attempts=3, jitter=0.0), clock=clock)
    assert await retry.call(fn) == "ok"
    assert attempts == [1, 2]
    assert clock.sleeps == [0.1]


@pytest.mark.parametrize(
    "error",
    [
        status(400),
        status(404),
        status(422),
        CircuitOpenError("orders", 12.0),
        BulkheadFullError("orders", 8, 0.5),
        ValueError("a bug"),
    ],
    ids=["400", "404", "422", "circuit-open", "bulkhead-full", "value-error"],
)
async def test_does_not_retry_permanent_failures(error: Exception) -> None:
    clock = FakeClock()
    fn, attempts = scripted(error, "never reached")
    retry = Retry("orders", RetryPolicy(max_attempts=5), clock=clock, rng=random.Random(1))
    with pytest.raises(type(error)) as caught:
        await retry.call(fn)
    assert caught.value is error
    assert attempts == [1]
    assert clock.sleeps == []


async def test_permanent_failure_after_retries_is_raised_as_is_with_the_history() -> None:
    clock = FakeClock()
    not_found = status(404)
    fn, attempts = scripted(status(503), not_found)
    retry = Retry("orders", RetryPolicy(max_attempts=5, jitter=0.0), clock=clock)
    with pytest.raises(TransportError) as caught:
        await retry.call(fn)
    assert caught.value is not_found
    assert attempts == [1, 2]
    assert any("attempt 1" in note and "503" in note for note in not_found.__notes__)


# -- Retry-After --------------------------------------------------------------------------


@pytest.mark.parametrize("code", [503, 429])
async def test_retry_after_is_used_as_the_delay_exactly(code: int) -> None:
    clock = FakeClock()
    fn, _ = scripted(status(code, retry_after=7.5), "ok")
    retry = Retry("orders", RetryPolicy(jitter=0.5), clock=clock, rng=random.Random(3))
    assert await retry.call(fn) == "ok"
    assert clock.sleeps == [7.5]


async def test_retry_after_at_max_retry_after_is_waited_for() -> None:
    clock = FakeClock()
    fn, _ = scripted(status(503, retry_after=60.0), "ok")
    retry = Retry("orders", RetryPolicy(max_retry_after=60.0), clock=clock)
    assert await retry.call(fn) == "ok"
    assert clock.sleeps == [60.0]


async def test_retry_after_over_max_retry_after_gives_up() -> None:
    clock = FakeClock()
    too_long = status(503, retry_after=61.0)
    fn, attempts = scripted(too_long, "never reached")
    retry = Retry("orders", RetryPolicy(max_attempts=5, max_retry_after=60.0), clock=clock)
    with pytest.raises(RetriesExhaustedError) as caught:
        await retry.call(fn)
    assert attempts == [1]
    assert clock.sleeps == []
    assert caught.value.last_error is too_long
    assert [a.attempt for a in caught.value.attempts] == [1]


# -- giving up ----------------------------------------------------------------------------


async def test_exhausted_error_lists_every_attempt_in_order() -> None:
    clock = FakeClock()
    errors = [status(503), CallTimeoutError("orders", 5.0), status(None)]
    fn, attempts = scripted(*errors)
    policy = RetryPolicy(max_attempts=3, backoff_initial=1.0, jitter=0.0)
    retry = Retry("orders", policy, clock=clock)
    with pytest.raises(RetriesExhaustedError) as caught:
        await retry.call(fn)
    exhausted = caught.value
    assert attempts == [1, 2, 3]
    assert [a.attempt for a in exhausted.attempts] == [1, 2, 3]
    assert [a.error for a in exhausted.attempts] == errors
    assert [a.delay_after for a in exhausted.attempts] == [1.0, 2.0, None]
    assert clock.sleeps == [1.0, 2.0]
    assert exhausted.last_error is errors[-1]
    assert exhausted.__cause__ is errors[-1]
    assert exhausted.name == "orders"


async def test_single_attempt_policy_never_retries() -> None:
    clock = FakeClock()
    fn, attempts = scripted(status(503), "never reached")
    retry = Retry("orders", RetryPolicy(max_attempts=1), clock=clock)
    with pytest.raises(RetriesExhaustedError):
        await retry.call(fn)
    assert attempts == [1]
    assert clock.sleeps == []


async def test_deadline_stops_before_a_wait_that_would_pass_it() -> None:
    clock = FakeClock()
    start = clock.monotonic()
    fn, attempts = scripted(*[status(503)] * 10)
    policy = RetryPolicy(
        max_attempts=10, backoff_initial=1.0, multiplier=2.0, jitter=0.0, deadline=5.0
    )
    retry = Retry("orders", policy, clock=clock)
    with pytest.raises(RetriesExhaustedError, match="deadline") as caught:
        await retry.call(fn)
    # Waits 1 s (at 0 s) and 2 s (at 1 s); the 4 s wait at 3 s would end at 7 s > 5 s.
    assert clock.sleeps == [1.0, 2.0]
    assert attempts == [1, 2, 3]
    assert len(caught.value.attempts) == 3
    assert clock.monotonic() - start <= 5.0


async def test_deadline_counts_the_time_spent_in_attempts() -> None:
    clock = FakeClock()

    async def slow_failure(attempt: int) -> None:
        clock.advance(1.0)
        raise status(503)

    policy = RetryPolicy(
        max_attempts=10, backoff_initial=1.0, multiplier=2.0, jitter=0.0, deadline=4.0
    )
    retry = Retry("orders", policy, clock=clock)
    with pytest.raises(RetriesExhaustedError, match="deadline"):
        await retry.call(slow_failure)
    # Attempt 1 ends at 1 s, waits 1 s; attempt 2 ends at 3 s: a 2 s wait would reach 5 s.
    assert clock.sleeps == [1.0]


async def test_on_retry_is_called_before_each_wait() -> None:
    clock = FakeClock()
    errors = [status(503), status(502), status(504)]
    fn, _ = scripted(*errors)
    seen: list[tuple[int, BaseException, float]] = []
    retry = Retry(
        "orders",
        RetryPolicy(max_attempts=3, jitter=0.2),
        clock=clock,
        rng=random.Random(5),
        on_retry=lambda attempt, error, delay: seen.append((attempt, error, delay)),
    )
    with pytest.raises(RetriesExhaustedError):
        await retry.call(fn)
    assert seen == [(1, errors[0], clock.sleeps[0]), (2, errors[1], clock.sleeps[1])]
