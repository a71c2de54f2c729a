"""``/api/v1/breakers``: the circuit breakers of the serving process's client.

Breakers live in the memory of the process whose client makes the calls: this answer is
what the process serving the API knows (its embedded worker's calls, when it runs one).
A `hybridmesh worker` elsewhere has breakers of its own, seen in its ``/metrics``
(``hybridmesh_circuit_breaker_state``). For that reason there is no CLI command: a CLI
process has made no calls, so it knows no breaker.
"""

from __future__ import annotations

from typing import Literal

import pydantic

from hybridmesh.control.auth import Role
from hybridmesh.control.declare import Call, Operations

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


__all__ = ["operations"]
