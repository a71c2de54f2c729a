"""The circuit breaker: stop calling a target that keeps failing, and try it again later.

States follow the usual machine::

    CLOSED --(failure or slow-call rate over threshold, after minimum_calls)--> OPEN
    OPEN   --(wait_in_open elapsed; next acquire)-------------------------> HALF_OPEN
    (any)  --(force_open(duration): opened by hand)------------------------> OPEN
    HALF_OPEN --(permitted trial calls recorded, rates under threshold)---> CLOSED
    HALF_OPEN --(rates over threshold)-------------------------------------> OPEN

Outcomes are kept in a sliding window that is either the last ``window_size`` calls
(``count``) or the calls of the last ``window_size`` seconds (``time``, in one-second buckets).
The breaker is pure code: it reads time from the injected clock and never sleeps.

A breaker forced open for a ``duration`` (an operator or a chaos experiment isolating a
target) refuses calls until that duration ends instead of ``wait_in_open``, then recovers
as after any open period: the next call is a half-open trial. The expiry needs no one to
undo the fault: it is the same lazy clock check as the usual wait.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal, TypeVar

from hybridmesh.core.clock import SYSTEM_CLOCK, Clock
from hybridmesh.core.errors import (
    BulkheadFullError,
    CircuitOpenError,
    RateLimitedError,
    TransportError,
)

T = TypeVar("T")

#: HTTP statuses that count as the target failing (it is down, overloaded or timing out).
DEFAULT_FAILURE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


class BreakerState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


def _default_is_failure(error: BaseException, failure_statuses: frozenset[int]) -> bool | None:
    """True: a failure; False: a success (the target answered); None: not counted at all."""
    if isinstance(error, CircuitOpenError | BulkheadFullError | RateLimitedError):
        return None  # refused locally: says nothing about the target
    if isinstance(error, TransportError):
        if error.status is None:
            return True
        return error.status in failure_statuses
    if isinstance(error, Exception):
        return True
    return None  # cancellation and interpreter exits are not the target's fault


@dataclass(frozen=True)
class CircuitBreakerConfig:
    """When a breaker opens and how it recovers. Durations are seconds.

    ``failure_statuses`` are the HTTP statuses that count as failures; any other error status
    (a 404, a 422) means the target is up and answering, so it counts as a success.
    ``ignore_exceptions`` are never counted.
    """

    failure_rate_threshold: float = 0.5
    slow_call_rate_threshold: float = 1.0
    slow_call_duration: float = 5.0
    minimum_calls: int = 10
    window_type: Literal["count", "time"] = "count"
    window_size: int = 20
    wait_in_open: float = 30.0
    permitted_calls_in_half_open: int = 3
    failure_statuses: frozenset[int] = DEFAULT_FAILURE_STATUSES
    ignore_exceptions: tuple[type[BaseException], ...] = ()

    def classify(self, error: BaseException) -> bool | None:
        """Whether ``error`` counts as a failure (True), a success (False) or not at all."""
        if self.ignore_exceptions and isinstance(error, self.ignore_exceptions):
            return None
        return _default_is_failure(error, self.failure_statuses)


@dataclass(frozen=True)
class BreakerSnapshot:
    """A breaker's state and window, for metrics, the CLI and the dashboard."""

    name: str
    state: BreakerState
    calls: int
    failed: int
    slow: int
    failure_rate: float
    slow_call_rate: float
    retry_after: float
    #: When the breaker entered ``state`` (wall time): when it was made, or last changed.
    since: datetime | None = None
    #: When an open period forced by hand ends (wall time); None when not forced open.
    forced_until: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        """The snapshot as JSON-ready values, as the control plane answers it."""
        return {
            "name": self.name,
            "state": self.state.value,
            "since": self.since.isoformat() if self.since else None,
            "forced_until": self.forced_until.isoformat() if self.forced_until else None,
            "calls": self.calls,
            "failed": self.failed,
            "slow": self.slow,
            "failure_rate": self.failure_rate,
            "slow_call_rate": self.slow_call_rate,
            "retry_after": self.retry_after,
        }


class _CountWindow:
    """The outcomes of the last ``size`` calls, with running totals."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._outcomes: deque[tuple[bool, bool]] = deque()
        self.calls = self.failed = self.slow = 0

    def add(self, failed: bool, slow: bool, now: float) -> None:
        if len(self._outcomes) == self.size:
            old_failed, old_slow = self._outcomes.popleft()
            self.calls -= 1
            self.failed -= old_failed
            self.slow -= old_slow
        self._outcomes.append((failed, slow))
        self.calls += 1
        self.failed += failed
        self.slow += slow

    def totals(self, now: float) -> tuple[int, int, int]:
        return self.calls, self.failed, self.slow


@dataclass
class _Bucket:
    second: int
    calls: int = 0
    failed: int = 0
    slow: int = 0


class _TimeWindow:
    """The outcomes of the last ``size`` seconds, in one-second buckets."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._buckets: deque[_Bucket] = deque()
        self.calls = self.failed = self.slow = 0

    def _evict(self, now: float) -> None:
        oldest = int(now) - self.size + 1
        while self._buckets and self._buckets[0].second < oldest:
            gone = self._buckets.popleft()
            self.calls -= gone.calls
            self.failed -= gone.failed
            self.slow -= gone.slow

    def add(self, failed: bool, slow: bool, now: float) -> None:
        self._evict(now)
        second = int(now)
        if not self._buckets or self._buckets[-1].second != second:
            self._buckets.append(_Bucket(second))
        bucket = self._buckets[-1]
        bucket.calls += 1
        bucket.failed += failed
        bucket.slow += slow
        self.calls += 1
        self.failed += failed
        self.slow += slow

    def totals(self, now: float) -> tuple[int, int, int]:
        self._evict(now)
        return self.calls, self.failed, self.slow


StateListener = Callable[[str, BreakerState, BreakerState], None]


@dataclass
class CircuitBreaker:
    """Guards calls to one target. Not thread-safe; one event loop owns it.

    Use :meth:`acquire` before a call and :meth:`record_success` or :meth:`record_failure`
    after it, or wrap a coroutine function with :meth:`call`. ``acquire`` raises
    :class:`~hybridmesh.core.errors.CircuitOpenError` while the breaker refuses calls.
    """

    name: str
    config: CircuitBreakerConfig = field(default_factory=CircuitBreakerConfig)
    clock: Clock = SYSTEM_CLOCK
    on_state_change: StateListener | None = None

    def __post_init__(self) -> None:
        self.state = BreakerState.CLOSED
        self.since = self.clock.now()
        self._window: _CountWindow | _TimeWindow = self._new_window()
        self._opened_at = 0.0
        #: A forced open period's length; None: ``wait_in_open`` as configured now (a
        #: breaker reconfigured while open waits the new time).
        self._forced_for: float | None = None
        self.forced_until: datetime | None = None
        self._trials_started = 0
        self._trials: list[tuple[bool, bool]] = []

    def _new_window(self) -> _CountWindow | _TimeWindow:
        if self.config.window_type == "time":
            return _TimeWindow(self.config.window_size)
        return _CountWindow(self.config.window_size)

    def reconfigure(self, config: CircuitBreakerConfig) -> None:
        """Take new settings; the window restarts, the state is kept."""
        self.config = config
        self._window = self._new_window()

    # -- the call protocol -----------------------------------------------------------------

    def acquire(self) -> None:
        """Permit one call, or raise ``CircuitOpenError``."""
        state = self.state
        if state is BreakerState.CLOSED:
            return
        if state is BreakerState.OPEN:
            remaining = self._opened_at + self._open_for() - self.clock.monotonic()
            if remaining > 0:
                raise CircuitOpenError(self.name, remaining)
            self._transition(BreakerState.HALF_OPEN)
        if self._trials_started >= self.config.permitted_calls_in_half_open:
            raise CircuitOpenError(self.name, 0.0)
        self._trials_started += 1

    def record_success(self, duration: float) -> None:
        """Record a call that succeeded after ``duration`` seconds."""
        self._record(False, duration >= self.config.slow_call_duration)

    def record_failure(self, duration: float, error: BaseException) -> None:
        """Record a call that raised ``error``; the config decides whether it counts."""
        verdict = self.config.classify(error)
        if verdict is None:
            if self.state is BreakerState.HALF_OPEN and self._trials_started > len(self._trials):
                self._trials_started -= 1  # give the trial slot back
            return
        self._record(verdict, duration >= self.config.slow_call_duration)

    async def call(self, fn: Callable[[], Awaitable[T]]) -> T:
        """Run ``fn`` under the breaker."""
        self.acquire()
        began = self.clock.monotonic()
        try:
            result = await fn()
        except BaseException as error:
            self.record_failure(self.clock.monotonic() - began, error)
            raise
        self.record_success(self.clock.monotonic() - began)
        return result

    # -- state -----------------------------------------------------------------------------

    def _record(self, failed: bool, slow: bool) -> None:
        state = self.state
        if state is BreakerState.CLOSED:
            now = self.clock.monotonic()
            window = self._window
            window.add(failed, slow, now)
            calls, failures, slows = window.totals(now)
            if calls >= self.config.minimum_calls and self._over_threshold(calls, failures, slows):
                self._open()
        elif state is BreakerState.HALF_OPEN:
            self._trials.append((failed, slow))
            permitted = self.config.permitted_calls_in_half_open
            if len(self._trials) >= permitted:
                failures = sum(f for f, _ in self._trials)
                slows = sum(s for _, s in self._trials)
                if self._over_threshold(len(self._trials), failures, slows):
                    self._open()
                else:
                    self._window = self._new_window()
                    self._transition(BreakerState.CLOSED)
        # OPEN: a call admitted before the breaker opened finished late; it changes nothing.

    def _over_threshold(self, calls: int, failures: int, slows: int) -> bool:
        return (
            failures / calls >= self.config.failure_rate_threshold
            or slows / calls >= self.config.slow_call_rate_threshold
        )

    def _open(self, duration: float | None = None) -> None:
        self._opened_at = self.clock.monotonic()
        self._forced_for = duration
        self._transition(BreakerState.OPEN)

    def _open_for(self) -> float:
        """How long the current open period lasts."""
        return self.config.wait_in_open if self._forced_for is None else self._forced_for

    def _transition(self, new: BreakerState) -> None:
        old = self.state
        self.state = new
        if old is not new:
            self.since = self.clock.now()
        self.forced_until = None
        self._trials_started = 0
        self._trials = []
        if self.on_state_change is not None and old is not new:
            self.on_state_change(self.name, old, new)

    def force_open(self, duration: float | None = None) -> None:
        """Open the breaker by hand (an operator isolating a target) for ``duration``
        seconds, or ``wait_in_open`` without one. It then lets a half-open trial through by
        itself, as after any open period; forcing it again restarts the period."""
        if duration is not None and duration <= 0:
            raise ValueError("a forced open period lasts more than 0 seconds")
        self._open(duration)
        if duration is not None:
            self.forced_until = self.clock.now() + timedelta(seconds=duration)

    def reset(self) -> None:
        """Close the breaker and forget its window."""
        self._window = self._new_window()
        if self.state is not BreakerState.CLOSED:
            self._transition(BreakerState.CLOSED)

    def snapshot(self) -> BreakerSnapshot:
        now = self.clock.monotonic()
        calls, failed, slow = self._window.totals(now)
        retry_after = 0.0
        if self.state is BreakerState.OPEN:
            retry_after = max(0.0, self._opened_at + self._open_for() - now)
        return BreakerSnapshot(
            name=self.name,
            state=self.state,
            calls=calls,
            failed=failed,
            slow=slow,
            failure_rate=failed / calls if calls else 0.0,
            slow_call_rate=slow / calls if calls else 0.0,
            retry_after=retry_after,
            since=self.since,
            forced_until=self.forced_until,
        )


__all__ = [
    "DEFAULT_FAILURE_STATUSES",
    "BreakerSnapshot",
    "BreakerState",
    "CircuitBreaker",
    "CircuitBreakerConfig",
]
