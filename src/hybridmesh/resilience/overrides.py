"""Per-service overrides of the architecture's default resilience policy, as written in YAML.

A service definition may carry a ``resilience:`` block; every key is optional and names one
knob of :class:`~hybridmesh.resilience.policies.ResiliencePolicy`. Unknown keys are refused,
and so are numbers the guards cannot work with (:mod:`hybridmesh.core.limits`): durations
are finite and at most one day, retries at most 99, counts at most 1,000,000, a rate limit
at most 1,000,000 calls a second, thresholds above 0 and at most 1.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from hybridmesh.core.limits import Count, Delay, Rate, Ratio, Retries, Seconds


class ResilienceOverrides(BaseModel):
    """Knobs a service may override. Durations are seconds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    timeout: Seconds | None = Field(None, description="Timeout of one attempt.")
    retries: Retries | None = Field(None, description="Retries after the first attempt.")
    backoff_initial: Delay | None = Field(None, description="First backoff delay.")
    backoff_max: Delay | None = Field(None, description="Largest backoff delay.")
    deadline: Seconds | None = Field(None, description="All attempts together.")
    failure_rate_threshold: Ratio | None = None
    slow_call_rate_threshold: Ratio | None = None
    slow_call_duration: Seconds | None = None
    minimum_calls: Count | None = None
    window_type: Literal["count", "time"] | None = None
    window_size: Count | None = Field(None, description="Calls (count) or seconds (time).")
    wait_in_open: Delay | None = None
    permitted_calls_in_half_open: Count | None = None
    max_concurrent: Count | None = Field(None, description="Bulkhead: calls in flight.")
    max_wait: Delay | None = Field(None, description="Bulkhead: wait for a free slot.")
    rate_limit: Rate | None = Field(None, description="Calls per second, token bucket.")
    burst: Count | None = Field(None, description="Token bucket size.")


__all__ = ["ResilienceOverrides"]
