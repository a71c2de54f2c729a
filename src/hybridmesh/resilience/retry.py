"""Retry with exponential backoff, jitter and an overall deadline.

Only failures that a later attempt can fix are retried: connection errors, timeouts and the
statuses in :attr:`RetryPolicy.retry_statuses` (408, 429, 502, 503, 504 by default). A 4xx answer
is the caller's mistake and is raised at once. A ``Retry-After`` the target sent is honoured
in place of the computed backoff.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from hybridmesh.core.clock import SYSTEM_CLOCK, Clock
from hybridmesh.core.errors import (
    AttemptFailure,
    CallTimeoutError,
    ResilienceError,
    RetriesExhaustedError,
    TransportError,
)

T = TypeVar("T")

DEFAULT_RETRY_STATUSES = frozenset({408, 429, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry. Durations are seconds.

    The n-th retry waits ``backoff_initial * multiplier**(n-1)``, capped at ``backoff_max``,
    scaled by a random factor in ``[1 - jitter, 1 + jitter]``. ``deadline`` bounds all attempts
    and waits together (None: no bound). A ``Retry-After`` longer than ``max_retry_after``
    is not waited for.
    """

    max_attempts: int = 3
    backoff_initial: float = 0.1
    backoff_max: float = 5.0
    multiplier: float = 2.0
    jitter: float = 0.2
    deadline: float | None = None
    retry_statuses: frozenset[int] = DEFAULT_RETRY_STATUSES
    max_retry_after: float = 60.0

    def backoff(self, retry_number: int, rng: random.Random) -> float:
        """The wait before retry ``retry_number`` (1 for the first retry)."""
        base = min(self.backoff_max, self.backoff_initial * self.multiplier ** (retry_number - 1))
        if self.jitter:
            base *= 1 - self.jitter + 2 * self.jitter * rng.random()
        return base

    def is_retryable(self, error: BaseException) -> bool:
        """Whether another attempt could succeed where this one failed."""
        if isinstance(error, TransportError):
            return error.status is None or error.status in self.retry_statuses
        if isinstance(error, CallTimeoutError):
            return True
        if isinstance(error, ResilienceError):
            return False  # a local guard refused: retrying at once would be refused too
        return isinstance(error, OSError | TimeoutError)


RetryListener = Callable[[int, BaseException, float], None]


class Retry:
    """Runs an async callable under a :class:`RetryPolicy`.

    ``on_retry(attempt, error, delay)`` is called before each wait, for logs and metrics.
    """

    def __init__(
        self,
        name: str,
        policy: RetryPolicy,
        *,
        clock: Clock = SYSTEM_CLOCK,
        rng: random.Random | None = None,
        on_retry: RetryListener | None = None,
    ) -> None:
        self.name = name
        self.policy = policy
        self.clock = clock
        self.rng = rng or random.Random()
        self.on_retry = on_retry

    async def call(self, fn: Callable[[int], Awaitable[T]]) -> T:
        """Call ``fn(attempt)`` (attempts count from 1) until it returns.

        Raises the error itself when it is not retryable, and
        :class:`~hybridmesh.core.errors.RetriesExhaustedError` with every attempt's failure
        when the attempts or the deadline run out.
        """
        policy = self.policy
        started = self.clock.monotonic()
        failures: list[AttemptFailure] = []
        attempt = 1
        while True:
            try:
                return await fn(attempt)
            except Exception as error:
                if not policy.is_retryable(error):
                    for earlier in failures:
                        error.add_note(f"{self.name}: earlier {earlier}")
                    raise
                if attempt >= policy.max_attempts:
                    failures.append(AttemptFailure(attempt, error))
                    raise RetriesExhaustedError(self.name, failures) from error
                delay = self._delay(attempt, error)
                if delay is None:
                    failures.append(AttemptFailure(attempt, error))
                    raise RetriesExhaustedError(
                        self.name, failures, "the target asked to wait too long"
                    ) from error
                if policy.deadline is not None:
                    spent = self.clock.monotonic() - started
                    if spent + delay > policy.deadline:
                        failures.append(AttemptFailure(attempt, error))
                        raise RetriesExhaustedError(
                            self.name, failures, f"deadline of {policy.deadline:g}s"
                        ) from error
                failures.append(AttemptFailure(attempt, error, delay))
                if self.on_retry is not None:
                    self.on_retry(attempt, error, delay)
                await self.clock.sleep(delay)
                attempt += 1

    def _delay(self, attempt: int, error: BaseException) -> float | None:
        retry_after = error.retry_after if isinstance(error, TransportError) else None
        if retry_after is not None:
            return retry_after if retry_after <= self.policy.max_retry_after else None
        return self.policy.backoff(attempt, self.rng)


__all__ = ["DEFAULT_RETRY_STATUSES", "Retry", "RetryPolicy"]
