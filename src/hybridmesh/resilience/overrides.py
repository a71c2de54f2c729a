"""Per-service overrides of the architecture's default resilience policy, as written in YAML.

A service definition may carry a ``resilience:`` block; every key is optional and names one
knob of :class:`~hybridmesh.resilience.policies.ResiliencePolicy`. Unknown keys are refused.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class ResilienceOverrides(BaseModel):
    """Knobs a service may override. Durations are seconds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    timeout: float | None = Field(None, gt=0, description="Timeout of one attempt.")
    retries: int | None = Field(None, ge=0, description="Retries after the first attempt.")
    backoff_initial: float | None = Field(None, ge=0, description="First backoff delay.")
    backoff_max: float | None = Field(None, ge=0, description="Largest backoff delay.")
    deadline: float | None = Field(None, gt=0, description="All attempts together.")
    failure_rate_threshold: float | None = Field(None, gt=0, le=1)
    slow_call_rate_threshold: float | None = Field(None, gt=0, le=1)
    slow_call_duration: float | None = Field(None, gt=0)
    minimum_calls: int | None = Field(None, ge=1)
    window_type: Literal["count", "time"] | None = None
    window_size: int | None = Field(None, ge=1, description="Calls (count) or seconds (time).")
    wait_in_open: float | None = Field(None, ge=0)
    permitted_calls_in_half_open: int | None = Field(None, ge=1)
    max_concurrent: int | None = Field(None, ge=1, description="Bulkhead: calls in flight.")
    max_wait: float | None = Field(None, ge=0, description="Bulkhead: wait for a free slot.")
    rate_limit: float | None = Field(None, gt=0, description="Calls per second, token bucket.")
    burst: int | None = Field(None, ge=1, description="Token bucket size.")


__all__ = ["ResilienceOverrides"]
