"""Resilience primitives: circuit breaker, retry, timeout, bulkhead, rate limiter, policies.

Pure code with the clock injected; the hybrid client composes them per call.
"""

from hybridmesh.resilience.breaker import (
    DEFAULT_FAILURE_STATUSES,
    BreakerSnapshot,
    BreakerState,
    CircuitBreaker,
    CircuitBreakerConfig,
)
from hybridmesh.resilience.guards import (
    Bulkhead,
    BulkheadConfig,
    RateLimitConfig,
    TokenBucket,
    with_timeout,
)
from hybridmesh.resilience.overrides import ResilienceOverrides
from hybridmesh.resilience.policies import (
    LEGACY_MAX_TIMEOUT,
    PolicySet,
    ResiliencePolicy,
    apply_overrides,
    default_policy,
)
from hybridmesh.resilience.retry import DEFAULT_RETRY_STATUSES, Retry, RetryPolicy

__all__ = [
    "DEFAULT_FAILURE_STATUSES",
    "DEFAULT_RETRY_STATUSES",
    "LEGACY_MAX_TIMEOUT",
    "BreakerSnapshot",
    "BreakerState",
    "Bulkhead",
    "BulkheadConfig",
    "CircuitBreaker",
    "CircuitBreakerConfig",
    "PolicySet",
    "RateLimitConfig",
    "ResilienceOverrides",
    "ResiliencePolicy",
    "Retry",
    "RetryPolicy",
    "TokenBucket",
    "apply_overrides",
    "default_policy",
    "with_timeout",
]
