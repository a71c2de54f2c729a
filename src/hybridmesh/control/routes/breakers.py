"""``/api/v1/breakers``: the circuit breakers of the serving process's client.

Breakers live in the memory of the process whose client makes the calls: this answer is
what the process serving the API knows (its embedded worker's calls, when it runs one).
A `hybridmesh worker` elsewhere has breakers of its own, seen in its ``/metrics``
(``hybridmesh_circuit_breaker_state``). For that reason there is no CLI command: a CLI
process has made no calls, so it knows no breaker.

An operator (or a chaos experiment) may force one of these breakers open for a while:
the breaker itself ends the forced period at its expiry, so nothing stays open when
whoever opened it goes away. A breaker exists once the client has called through it.
"""

from __future__ import annotations

from typing import Literal

import pydantic

from hybridmesh.control.auth import Role
from hybridmesh.control.declare import Call, Operations
from hybridmesh.core.errors import NotFoundError
from hybridmesh.resilience.breaker import CircuitBreaker

#: The longest a breaker may be forced open, in seconds: a fault is for an experiment.
MAX_FORCED_OPEN = 3600.0

operations = Operations()


class NoQuery(pydantic.BaseModel):
    """The listing takes no parameters (an unknown one is a 400, as everywhere)."""

    model_config = pydantic.ConfigDict(extra="forbid")


class BreakerOut(pydantic.BaseModel):
    """One circuit breaker and its sliding window of recent calls."""

    name: str = pydantic.Field(
        description="The guard: a service's name for HTTP calls, `pattern:service` otherwise."
    )
    state: Literal["closed", "open", "half_open"]
    since: str | None = pydantic.Field(description="When it entered this state.")
    calls: int = pydantic.Field(description="Calls in the window.")
    failed: int = pydantic.Field(description="Failed calls in the window.")
    slow: int = pydantic.Field(description="Slow calls in the window.")
    failure_rate: float
    slow_call_rate: float
    retry_after: float = pydantic.Field(
        description="Seconds until an open breaker lets a trial call through (0 otherwise)."
    )
    forced_until: str | None = pydantic.Field(
        description="When an open period forced by hand ends (null when not forced open)."
    )


class BreakerName(pydantic.BaseModel):
    name: str = pydantic.Field(max_length=256, description="The breaker's name.")


class ForceOpen(pydantic.BaseModel):
    """How long the breaker stays open."""

    model_config = pydantic.ConfigDict(extra="forbid")

    duration: float = pydantic.Field(
        gt=0,
        le=MAX_FORCED_OPEN,
        allow_inf_nan=False,
        description="Seconds the breaker refuses calls; then it lets a half-open trial through.",
    )


class BreakerList(pydantic.RootModel[list[BreakerOut]]):
    """The breakers this process has made, by name."""


@operations.operation(
    "GET",
    "/api/v1/breakers",
    summary="List circuit breakers",
    tags=("breakers",),
    role=Role.READ,
    query=NoQuery,
    response=BreakerList,
)
async def list_breakers(call: Call) -> object:
    """The circuit breakers of the serving process's client, by name: state, since when,
    and the calls, failures and slow calls of their window. Only what this process knows:
    another process's breakers are in its own `/metrics`."""
    client = call.plane.client
    if client is None:
        return []
    return [snapshot.to_dict() for snapshot in client.breaker_snapshots()]


def _breaker(call: Call) -> CircuitBreaker:
    name = call.path.name
    client = call.plane.client
    breaker = client.policies.find_breaker(name) if client is not None else None
    if breaker is None:
        raise NotFoundError(
            f"no circuit breaker {name!r} in this process: a breaker exists once its "
            "client has called through it"
        )
    return breaker


@operations.operation(
    "POST",
    "/api/v1/breakers/{name}/open",
    summary="Force a circuit breaker open for a while",
    tags=("breakers",),
    role=Role.OPERATE,
    path_params=BreakerName,
    body=ForceOpen,
    response=BreakerOut,
    errors=(404,),
)
async def open_breaker(call: Call) -> object:
    """Force the serving process's breaker open for `duration` seconds (at most 3600): its
    client refuses the calls it guards without making them. At the end the breaker itself
    lets a half-open trial through, as after any open period, and closes when the trial
    calls succeed; no one needs to undo it. Forcing it again restarts the period. 404 for a
    breaker this process has not made (one exists once its client has called through it)."""
    breaker = _breaker(call)
    breaker.force_open(call.body.duration)
    return breaker.snapshot().to_dict()


@operations.operation(
    "POST",
    "/api/v1/breakers/{name}/reset",
    summary="Close a circuit breaker",
    tags=("breakers",),
    role=Role.OPERATE,
    path_params=BreakerName,
    response=BreakerOut,
    errors=(404,),
)
async def reset_breaker(call: Call) -> object:
    """Close the serving process's breaker now and forget its window of recent calls: it
    ends a forced open period early (a chaos experiment's rollback), or one the breaker
    opened by itself."""
    breaker = _breaker(call)
    breaker.reset()
    return breaker.snapshot().to_dict()


__all__ = ["MAX_FORCED_OPEN", "operations"]
