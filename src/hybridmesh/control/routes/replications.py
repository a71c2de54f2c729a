"""``/api/v1/replications``: where each replication and bridge stands, with its latest
reconciliation run, as ``hybridmesh replicate list --json`` and ``replicate status NAME
--json`` print them (both call :mod:`hybridmesh.data.status`).

The listing is a plain array, as the CLI's: one entry per stored definition, a small and
bounded number.
"""

from __future__ import annotations

from typing import Any, Literal

import pydantic

from hybridmesh.control.auth import Role
from hybridmesh.control.declare import Call, Operations
from hybridmesh.data.status import replication_status, replication_statuses

operations = Operations()

_TAGS = ("replications",)


class ReplicationName(pydantic.BaseModel):
    name: str = pydantic.Field(max_length=256, description="The replication's or bridge's name.")


class ReconcileRunOut(pydantic.BaseModel):
    """A reconciliation run: counts before any repair, as `reconcile history NAME --json`."""

    id: str
    replication: str
    status: Literal["running", "consistent", "repaired", "inconsistent", "failed"]
    truth: str
    repair: bool
    started_at: float
    finished_at: float | None
    source_rows: int
    missing: int
    extra: int
    different: int
    inconsistency_rate: float
    repaired: int
    remaining: int | None
    error: str | None


class ReplicationOut(pydantic.BaseModel):
    """A replication or bridge: what is asked of it, whether a process runs it, what that
    process last reported (`status`: phase, position, head, lag, per-table backfill), its
    definition, and its latest reconciliation run."""

    name: str
    kind: Literal["replication", "bridge"]
    desired: Literal["running", "paused", "stopped"]
    reverse: bool
    running: bool
    owner: str | None
    status: dict[str, Any] | None
    heartbeat_at: float | None
    spec: dict[str, Any]
    last_reconciliation: ReconcileRunOut | None


class ReplicationList(pydantic.RootModel[list[ReplicationOut]]):
    """Every stored replication and bridge, by name."""


@operations.operation(
    "GET",
    "/api/v1/replications",
    summary="List replications and bridges",
    tags=_TAGS,
    role=Role.READ,
    response=ReplicationList,
)
async def list_replications(call: Call) -> object:
    """Every stored replication and bridge with its status and latest reconciliation run,
    as `hybridmesh replicate list --json`."""
    return await replication_statuses(call.plane.store)


@operations.operation(
    "GET",
    "/api/v1/replications/{name}",
    summary="Show a replication or bridge",
    tags=_TAGS,
    role=Role.READ,
    path_params=ReplicationName,
    response=ReplicationOut,
    errors=(404,),
)
async def get_replication(call: Call) -> object:
    """One replication or bridge, as `hybridmesh replicate status NAME --json`; 404 when
    none has that name."""
    path: ReplicationName = call.path
    return await replication_status(call.plane.store, path.name)


__all__ = ["operations"]
