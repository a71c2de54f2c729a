"""The circuit breaker: windows, thresholds, the open/half-open/closed cycle, classification."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from hybridmesh.core.clock import FakeClock
from hybridmesh.core.errors import (
    BulkheadFullError,
    CircuitOpenError,
    RateLimitedError,
    TransportError,
)
from hybridmesh.resilience import BreakerState, CircuitBreaker, CircuitBreakerConfig

CLOSED, OPEN, HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN

Transition = tuple[str, BreakerState, BreakerState]


def make(clock: FakeClock | None = None, **overrides: Any) -> CircuitBreaker:
    settings: dict[str, Any] = {
        "failure_rate_threshold": 0.5,
        "minimum_calls": 4,
        "window_size": 10,
        "wait_in_open": 30.0,
        "permitted_calls_in_half_open": 2,
        "slow_call_duration": 5.0,
    }
    settings.update(overrides)
    return CircuitBreaker("orders", CircuitBreakerConfig(**settings), clock or FakeClock())


def fail(breaker: CircuitBreaker, times: int = 1, duration: float = 0.01) -> None:
    for _ in range(times):
        breaker.record_failure(duration, TransportError("down", status=503))


def succeed(breaker: CircuitBreaker, times: int = 1, duration: float = 0.01) -> None:
    for _ in range(times):
        breaker.record_success(duration)


def open_breaker(breaker: CircuitBreaker) -> None:
    fail(breaker, breaker.config.minimum_calls)
    assert breaker.state is OPEN


# -- the count window ---------------------------------------------------------------------


def test_count_window_opens_only_once_minimum_calls_are_recorded() -> None:
    breaker = make()
    fail(breaker, 3)
    assert breaker.state is CLOSED  # 100 % failures, but only 3 of the 4 minimum calls
    breaker.acquire()  # still admits calls
    succeed(breaker)
    assert breaker.state is OPEN  # 3 of 4 failed


@pytest.mark.parametrize(
    ("failures", "successes", "state"),
    [(2, 2, OPEN), (1, 3, CLOSED)],
    ids=["at-threshold-opens", "under-threshold-stays-closed"],
)
def test_count_window_threshold_is_inclusive(
    failures: int, successes: int, state: BreakerState
) -> None:
    breaker = make()
    succeed(breaker, successes)
    fail(breaker, failures)
    assert breaker.state is state


def test_stays_closed_while_failure_rate_stays_under_threshold() -> None:
    breaker = make()
    for failed in [False, False, True, False, True, False, False, True, False, True]:
        if failed:
            fail(breaker)
        else:
            succeed(breaker)
        assert breaker.state is CLOSED
    snap = breaker.snapshot()
    assert (snap.calls, snap.failed, snap.failure_rate) == (10, 4, 0.4)


def test_count_window_slides_so_old_failures_drop_out() -> None:
    breaker = make(window_size=4)
    fail(breaker)
    succeed(breaker, 3)
    assert breaker.snapshot().failed == 1
    succeed(breaker)  # pushes the first failure out of the 4-call window
    assert (breaker.snapshot().calls, breaker.snapshot().failed) == (4, 0)
    fail(breaker)
    # Had the first failure stayed, this would be 2 of 4 and the breaker would open.
    assert breaker.state is CLOSED
    fail(breaker)
    assert breaker.state is OPEN


# -- the time window ----------------------------------------------------------------------


def test_time_window_keeps_calls_within_window_size_seconds() -> None:
    clock = FakeClock()
    breaker = make(clock, window_type="time", window_size=10)
    fail(breaker, 3)
    clock.advance(9)
    assert breaker.snapshot().calls == 3
    succeed(breaker)
    assert breaker.state is OPEN  # 3 of 4 in the last 10 s


def test_time_window_forgets_calls_older_than_window_size_seconds() -> None:
    clock = FakeClock()
    breaker = make(clock, window_type="time", window_size=10)
    fail(breaker, 3)
    clock.advance(11)
    assert breaker.snapshot().calls == 0
    fail(breaker)
    succeed(breaker, 3)
    # With the three old failures it would be 4 of 7; without them it is 1 of 4.
    assert breaker.state is CLOSED
    assert (breaker.snapshot().calls, breaker.snapshot().failed) == (4, 1)


# -- slow calls ---------------------------------------------------------------------------


async def test_slow_call_rate_opens_the_breaker_even_when_every_call_succeeds() -> None:
    clock = FakeClock()
    breaker = make(clock, slow_call_rate_threshold=0.5, slow_call_duration=2.0)

    def taking(seconds: float) -> Any:
        async def fn() -> str:
            clock.advance(seconds)
            return "ok"

        return fn

    assert await breaker.call(taking(0.5)) == "ok"
    assert await breaker.call(taking(1.99)) == "ok"
    assert await breaker.call(taking(2.0)) == "ok"  # at slow_call_duration counts as slow
    assert breaker.state is CLOSED
    assert await breaker.call(taking(3.0)) == "ok"
    assert breaker.state is OPEN
    assert breaker.snapshot().failed == 0


def test_slow_calls_under_the_slow_rate_threshold_keep_it_closed() -> None:
    breaker = make(slow_call_rate_threshold=0.5, slow_call_duration=2.0)
    succeed(breaker, 1, duration=2.5)
    succeed(breaker, 3, duration=0.1)
    assert breaker.state is CLOSED
    assert breaker.snapshot().slow_call_rate == 0.25


# -- open and half-open -------------------------------------------------------------------


def test_open_breaker_rejects_with_retry_after() -> None:
    clock = FakeClock()
    breaker = make(clock)
    open_breaker(breaker)
    with pytest.raises(CircuitOpenError) as caught:
        breaker.acquire()
    assert caught.value.name == "orders"
    assert caught.value.retry_after == 30.0
    clock.advance(10)
    with pytest.raises(CircuitOpenError) as caught:
        breaker.acquire()
    assert caught.value.retry_after == 20.0


def test_still_open_just_before_wait_in_open_elapses() -> None:
    clock = FakeClock()
    breaker = make(clock)
    open_breaker(breaker)
    clock.advance(29.5)
    with pytest.raises(CircuitOpenError):
        breaker.acquire()
    assert breaker.state is OPEN


def test_half_open_permits_exactly_the_trial_calls() -> None:
    clock = FakeClock()
    breaker = make(clock, permitted_calls_in_half_open=3)
    open_breaker(breaker)
    clock.advance(30)
    breaker.acquire()
    assert breaker.state is HALF_OPEN
    breaker.acquire()
    breaker.acquire()
    with pytest.raises(CircuitOpenError) as caught:
        breaker.acquire()
    assert caught.value.retry_after == 0.0
    assert breaker.state is HALF_OPEN


def test_half_open_closes_when_the_trials_succeed() -> None:
    clock = FakeClock()
    breaker = make(clock)
    open_breaker(breaker)
    clock.advance(30)
    breaker.acquire()
    breaker.acquire()
    succeed(breaker)
    assert breaker.state is HALF_OPEN  # decides only once every trial is back
    succeed(breaker)
    assert breaker.state is CLOSED
    assert breaker.snapshot().calls == 0  # a fresh window: the old failures are gone
    for _ in range(5):
        breaker.acquire()  # no limit once closed


def test_half_open_reopens_when_the_trials_fail() -> None:
    clock = FakeClock()
    breaker = make(clock)
    open_breaker(breaker)
    clock.advance(30)
    breaker.acquire()
    breaker.acquire()
    succeed(breaker)
    fail(breaker)  # 1 of 2 trials failed: at the 50 % threshold
    assert breaker.state is OPEN
    with pytest.raises(CircuitOpenError) as caught:
        breaker.acquire()
    assert caught.value.retry_after == 30.0  # a full new wait from the re-opening


def test_listener_sees_every_transition_in_order() -> None:
    clock = FakeClock()
    seen: list[Transition] = []
    breaker = make(clock)
    breaker.on_state_change = lambda name, old, new: seen.append((name, old, new))

    open_breaker(breaker)
    clock.advance(30)
    breaker.acquire()
    breaker.acquire()
    fail(breaker, 2)
    clock.advance(30)
    breaker.acquire()
    breaker.acquire()
    succeed(breaker, 2)

    assert seen == [
        ("orders", CLOSED, OPEN),
        ("orders", OPEN, HALF_OPEN),
        ("orders", HALF_OPEN, OPEN),
        ("orders", OPEN, HALF_OPEN),
        ("orders", HALF_OPEN, CLOSED),
    ]


# -- what counts --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "failed"),
    [
        (TransportError("not found", status=404), False),
        (TransportError("invalid", status=422), False),
        (TransportError("unavailable", status=503), True),
        (TransportError("refused", status=None), True),
        (ValueError("bug in the handler"), True),
    ],
    ids=["404", "422", "503", "connection-error", "other-exception"],
)
def test_error_classification(error: BaseException, failed: bool) -> None:
    breaker = make()
    for _ in range(4):
        breaker.record_failure(0.01, error)
    if failed:
        assert breaker.state is OPEN
    else:
        assert breaker.state is CLOSED
        snap = breaker.snapshot()
        assert (snap.calls, snap.failed) == (4, 0)  # counted, as successes


@pytest.mark.parametrize(
    "error",
    [
        CircuitOpenError("orders", 5.0),
        BulkheadFullError("orders", 8, 0.5),
        RateLimitedError("orders", 10.0, 0.1),
        asyncio.CancelledError(),
    ],
    ids=["circuit-open", "bulkhead-full", "rate-limited", "cancelled"],
)
def test_local_refusals_and_cancellation_are_not_counted(error: BaseException) -> None:
    breaker = make()
    for _ in range(6):
        breaker.record_failure(0.01, error)
    assert breaker.state is CLOSED
    assert breaker.snapshot().calls == 0


@pytest.mark.parametrize(
    "error",
    [BulkheadFullError("orders", 8, 0.5), asyncio.CancelledError(), CircuitOpenError("x", 1.0)],
    ids=["bulkhead-full", "cancelled", "circuit-open"],
)
def test_uncounted_outcome_gives_the_half_open_slot_back(error: BaseException) -> None:
    clock = FakeClock()
    breaker = make(clock)
    open_breaker(breaker)
    clock.advance(30)
    breaker.acquire()
    breaker.acquire()
    breaker.record_failure(0.01, error)
    breaker.acquire()  # the returned slot can be used again
    with pytest.raises(CircuitOpenError):
        breaker.acquire()
    succeed(breaker, 2)
    assert breaker.state is CLOSED


def test_ignore_exceptions_are_not_counted() -> None:
    breaker = make(ignore_exceptions=(KeyError,))
    for _ in range(6):
        breaker.record_failure(0.01, KeyError("cache miss"))
    assert breaker.snapshot().calls == 0
    assert breaker.state is CLOSED
    for _ in range(4):
        breaker.record_failure(0.01, ValueError("counted"))
    assert breaker.state is OPEN


def test_ignore_exceptions_take_precedence_over_failure_statuses() -> None:
    class Throttled(TransportError):
        pass

    breaker = make(ignore_exceptions=(Throttled,))
    for _ in range(6):
        breaker.record_failure(0.01, Throttled("slow down", status=503))
    assert breaker.snapshot().calls == 0


# -- call() -------------------------------------------------------------------------------


async def test_call_returns_the_result_and_records_a_success() -> None:
    breaker = make()

    async def fn() -> int:
        return 42

    assert await breaker.call(fn) == 42
    assert (breaker.snapshot().calls, breaker.snapshot().failed) == (1, 0)


async def test_call_reraises_and_records_the_failure() -> None:
    breaker = make()
    boom = TransportError("down", status=503)

    async def fn() -> int:
        raise boom

    for _ in range(4):
        with pytest.raises(TransportError) as caught:
            await breaker.call(fn)
        assert caught.value is boom
    assert breaker.state is OPEN


async def test_call_does_not_run_fn_while_open() -> None:
    breaker = make()
    open_breaker(breaker)
    ran: list[bool] = []

    async def fn() -> None:
        ran.append(True)

    with pytest.raises(CircuitOpenError):
        await breaker.call(fn)
    assert ran == []


async def test_call_cancelled_is_reraised_and_not_counted() -> None:
    breaker = make()

    async def fn() -> None:
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await breaker.call(fn)
    assert breaker.snapshot().calls == 0


# -- snapshot, force_open, reset ----------------------------------------------------------


def test_snapshot_figures() -> None:
    clock = FakeClock()
    breaker = make(clock, minimum_calls=10, slow_call_duration=1.0)
    fail(breaker, 2)
    succeed(breaker, 1, duration=1.5)
    succeed(breaker, 2)
    snap = breaker.snapshot()
    assert snap.name == "orders"
    assert snap.state is CLOSED
    assert (snap.calls, snap.failed, snap.slow) == (5, 2, 1)
    assert snap.failure_rate == 0.4
    assert snap.slow_call_rate == 0.2
    assert snap.retry_after == 0.0

    breaker.force_open()
    clock.advance(12)
    snap = breaker.snapshot()
    assert snap.state is OPEN
    assert snap.retry_after == 18.0
    clock.advance(100)
    assert breaker.snapshot().retry_after == 0.0


def test_empty_snapshot_has_zero_rates() -> None:
    snap = make().snapshot()
    assert (snap.calls, snap.failure_rate, snap.slow_call_rate) == (0, 0.0, 0.0)


def test_force_open_and_reset() -> None:
    clock = FakeClock()
    seen: list[Transition] = []
    breaker = make(clock)
    breaker.on_state_change = lambda name, old, new: seen.append((name, old, new))
    fail(breaker, 2)

    breaker.force_open()
    assert breaker.state is OPEN
    with pytest.raises(CircuitOpenError) as caught:
        breaker.acquire()
    assert caught.value.retry_after == 30.0

    breaker.reset()
    assert breaker.state is CLOSED
    assert breaker.snapshot().calls == 0
    breaker.acquire()
    assert seen == [("orders", CLOSED, OPEN), ("orders", OPEN, CLOSED)]


def test_reset_of_a_closed_breaker_clears_the_window_without_a_transition() -> None:
    seen: list[Transition] = []
    breaker = make()
    breaker.on_state_change = lambda name, old, new: seen.append((name, old, new))
    fail(breaker, 3)
    breaker.reset()
    fail(breaker, 3)
    assert breaker.state is CLOSED  # only 3 failures since the reset, under minimum_calls
    assert seen == []


def test_forced_open_lasts_its_duration_then_lets_a_trial_through() -> None:
    clock = FakeClock()
    breaker = make(clock)
    breaker.force_open(90.0)  # longer than wait_in_open: the duration decides
    assert breaker.snapshot().forced_until == clock.now() + timedelta(seconds=90)
    clock.advance(60)
    with pytest.raises(CircuitOpenError) as caught:
        breaker.acquire()
    assert caught.value.retry_after == 30.0
    clock.advance(30)
    breaker.acquire()  # the half-open trial, with no one undoing the fault
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.snapshot().forced_until is None
    succeed(breaker, 1)
    breaker.acquire()
    succeed(breaker, 1)
    assert breaker.state is BreakerState.CLOSED


def test_a_forced_open_period_is_positive_and_a_reset_ends_it() -> None:
    breaker = make()
    with pytest.raises(ValueError):
        breaker.force_open(0)
    assert breaker.state is BreakerState.CLOSED
    breaker.force_open(3600)
    breaker.reset()
    breaker.acquire()
    snapshot = breaker.snapshot()
    assert (snapshot.state, snapshot.forced_until) == (BreakerState.CLOSED, None)
