"""Resilience policies per architecture, their per-service overrides, and the live guards.

The defaults follow the integration guide: microservices answer queries fast (5 s, 3
retries), modular monoliths get more time over pooled connections (10 s, 2 retries), a
traditional monolith is treated conservatively (1 retry, never more than 60 s, rate limited,
few concurrent calls), and serverless functions allow for cold starts.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from hybridmesh.core.clock import SYSTEM_CLOCK, Clock
from hybridmesh.resilience.breaker import BreakerState, CircuitBreaker, CircuitBreakerConfig
from hybridmesh.resilience.guards import Bulkhead, BulkheadConfig, RateLimitConfig, TokenBucket
from hybridmesh.resilience.overrides import ResilienceOverrides
from hybridmesh.resilience.retry import RetryPolicy

#: No call to a traditional monolith waits longer than this, whatever overrides say.
LEGACY_MAX_TIMEOUT = 60.0


@dataclass(frozen=True)
class ResiliencePolicy:
    """Every guard's settings for calls to one target. Frozen and hashable, so it can key
    caches. ``max_timeout`` caps ``timeout`` through every override."""

    timeout: float = 5.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    breaker: CircuitBreakerConfig = field(default_factory=CircuitBreakerConfig)
    bulkhead: BulkheadConfig = field(default_factory=BulkheadConfig)
    rate_limit: RateLimitConfig | None = None
    pooled_connections: bool = False
    max_timeout: float | None = None


def _policy(
    timeout: float,
    retries: int,
    *,
    slow: float | None = None,
    wait_in_open: float = 30.0,
    half_open: int = 3,
    max_concurrent: int = 64,
    max_wait: float = 0.5,
    rate_limit: RateLimitConfig | None = None,
    pooled: bool = False,
    max_timeout: float | None = None,
    backoff_initial: float = 0.1,
) -> ResiliencePolicy:
    return ResiliencePolicy(
        timeout=timeout,
        retry=RetryPolicy(max_attempts=retries + 1, backoff_initial=backoff_initial),
        breaker=CircuitBreakerConfig(
            slow_call_duration=slow if slow is not None else timeout * 0.8,
            wait_in_open=wait_in_open,
            permitted_calls_in_half_open=half_open,
        ),
        bulkhead=BulkheadConfig(max_concurrent=max_concurrent, max_wait=max_wait),
        rate_limit=rate_limit,
        pooled_connections=pooled,
        max_timeout=max_timeout,
    )


def _legacy(timeout: float) -> ResiliencePolicy:
    return _policy(
        timeout,
        1,
        wait_in_open=60.0,
        half_open=1,
        max_concurrent=8,
        max_wait=2.0,
        rate_limit=RateLimitConfig(rate=20.0, burst=10, max_wait=2.0),
        max_timeout=LEGACY_MAX_TIMEOUT,
        backoff_initial=0.5,
    )


_DEFAULTS: dict[tuple[str, str], ResiliencePolicy] = {
    ("microservice", "query"): _policy(5.0, 3),
    ("microservice", "command"): _policy(15.0, 1),
    ("microservice", "batch"): _policy(60.0, 1),
    ("modular-monolith", "query"): _policy(10.0, 2, pooled=True),
    ("modular-monolith", "command"): _policy(10.0, 2, pooled=True),
    ("modular-monolith", "batch"): _policy(60.0, 1, pooled=True),
    ("traditional-monolith", "query"): _legacy(30.0),
    ("traditional-monolith", "command"): _legacy(30.0),
    ("traditional-monolith", "batch"): _legacy(60.0),
    ("serverless", "query"): _policy(30.0, 2, slow=10.0),
    ("serverless", "command"): _policy(30.0, 2, slow=10.0),
    ("serverless", "batch"): _policy(60.0, 1, slow=30.0),
}


def default_policy(architecture: str, request_type: str = "query") -> ResiliencePolicy:
    """The guide's policy for calls of ``request_type`` to a service of ``architecture``.

    An unknown architecture gets the microservice policy.
    """
    policy = _DEFAULTS.get((architecture, request_type))
    if policy is None:
        policy = _DEFAULTS.get(("microservice", request_type), _DEFAULTS[("microservice", "query")])
    return policy


def apply_overrides(
    policy: ResiliencePolicy, overrides: ResilienceOverrides | None
) -> ResiliencePolicy:
    """``policy`` with the knobs ``overrides`` sets replaced; the others are kept.

    Without overrides, ``policy`` itself is returned.
    """
    if overrides is None:
        return policy
    return _apply(policy, overrides)


@lru_cache(maxsize=1024)
def _apply(policy: ResiliencePolicy, o: ResilienceOverrides) -> ResiliencePolicy:
    retry = policy.retry
    retry_changes: dict[str, Any] = {
        k: v
        for k, v in {
            "max_attempts": o.retries + 1 if o.retries is not None else None,
            "backoff_initial": o.backoff_initial,
            "backoff_max": o.backoff_max,
            "deadline": o.deadline,
        }.items()
        if v is not None
    }
    if retry_changes:
        retry = dataclasses.replace(retry, **retry_changes)
    breaker_changes: dict[str, Any] = {
        k: v
        for k, v in {
            "failure_rate_threshold": o.failure_rate_threshold,
            "slow_call_rate_threshold": o.slow_call_rate_threshold,
            "slow_call_duration": o.slow_call_duration,
            "minimum_calls": o.minimum_calls,
            "window_type": o.window_type,
            "window_size": o.window_size,
            "wait_in_open": o.wait_in_open,
            "permitted_calls_in_half_open": o.permitted_calls_in_half_open,
        }.items()
        if v is not None
    }
    breaker = (
        dataclasses.replace(policy.breaker, **breaker_changes)
        if breaker_changes
        else (policy.breaker)
    )
    bulkhead = policy.bulkhead
    if o.max_concurrent is not None or o.max_wait is not None:
        bulkhead = BulkheadConfig(
            max_concurrent=o.max_concurrent or bulkhead.max_concurrent,
            max_wait=o.max_wait if o.max_wait is not None else bulkhead.max_wait,
        )
    rate_limit = policy.rate_limit
    if o.rate_limit is not None:
        burst = o.burst or (rate_limit.burst if rate_limit else max(1, int(o.rate_limit)))
        rate_limit = RateLimitConfig(
            rate=o.rate_limit, burst=burst, max_wait=rate_limit.max_wait if rate_limit else 1.0
        )
    elif o.burst is not None and rate_limit is not None:
        rate_limit = dataclasses.replace(rate_limit, burst=o.burst)
    timeout = o.timeout if o.timeout is not None else policy.timeout
    if policy.max_timeout is not None:
        timeout = min(timeout, policy.max_timeout)
    return dataclasses.replace(
        policy,
        timeout=timeout,
        retry=retry,
        breaker=breaker,
        bulkhead=bulkhead,
        rate_limit=rate_limit,
    )


BreakerListener = Callable[[str, BreakerState, BreakerState], None]


class PolicySet:
    """The live guards (breakers, bulkheads, rate limiters) of one client, by guard name.

    Guards keep their state across calls; asking again with changed settings reconfigures
    the existing guard rather than replacing it.
    """

    def __init__(
        self,
        *,
        clock: Clock = SYSTEM_CLOCK,
        on_breaker_change: BreakerListener | None = None,
    ) -> None:
        self.clock = clock
        self.on_breaker_change = on_breaker_change
        self._breakers: dict[str, CircuitBreaker] = {}
        self._bulkheads: dict[str, Bulkhead] = {}
        self._limiters: dict[str, TokenBucket] = {}

    def breaker(self, name: str, config: CircuitBreakerConfig) -> CircuitBreaker:
        breaker = self._breakers.get(name)
        if breaker is None:
            breaker = CircuitBreaker(name, config, self.clock, self.on_breaker_change)
            self._breakers[name] = breaker
        elif breaker.config is not config and breaker.config != config:
            breaker.reconfigure(config)
        return breaker

    def bulkhead(self, name: str, config: BulkheadConfig) -> Bulkhead:
        bulkhead = self._bulkheads.get(name)
        if bulkhead is None:
            bulkhead = Bulkhead(name, config)
            self._bulkheads[name] = bulkhead
        elif bulkhead.config is not config and bulkhead.config != config:
            bulkhead.resize(config)
        return bulkhead

    def rate_limiter(self, name: str, config: RateLimitConfig) -> TokenBucket:
        limiter = self._limiters.get(name)
        if limiter is None:
            limiter = TokenBucket(name, config, self.clock)
            self._limiters[name] = limiter
        elif limiter.config is not config and limiter.config != config:
            limiter.reconfigure(config)
        return limiter

    def find_breaker(self, name: str) -> CircuitBreaker | None:
        return self._breakers.get(name)

    def breakers(self) -> Iterator[CircuitBreaker]:
        return iter(list(self._breakers.values()))


__all__ = [
    "LEGACY_MAX_TIMEOUT",
    "PolicySet",
    "ResiliencePolicy",
    "apply_overrides",
    "default_policy",
]
