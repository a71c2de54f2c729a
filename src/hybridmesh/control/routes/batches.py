"""``/api/v1/batch``: the records queued for legacy systems and the runs that delivered
them, as ``hybridmesh batch list|runs|requeue`` has them, with the same JSON as their
``--json``.

Both listings are bounded by ``limit`` and answer a plain array, as the CLI prints it.
"""

from __future__ import annotations

from typing import Any, Literal

import pydantic
from aiohttp import web

from hybridmesh.batch import BatchLedger, RecordStatus, RunStatus
from hybridmesh.control.auth import Role
from hybridmesh.control.declare import Call, Operations
from hybridmesh.core.errors import ValidationError

operations = Operations()

_TAGS = ("batch",)

#: The longest listing.
MAX_LIST = 1_000


class BatchRecordQuery(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    status: Literal["queued", "sent", "acknowledged", "failed", "all"] = pydantic.Field(
        default="all", description="Only records in this status."
    )
    target: str | None = pydantic.Field(
        default=None, min_length=1, max_length=128, description="Only this target's records."
    )
    limit: int = pydantic.Field(default=100, ge=1, le=MAX_LIST, description="How many, at most.")


class BatchRunQuery(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    limit: int = pydantic.Field(default=100, ge=1, le=MAX_LIST, description="How many, at most.")


class BatchRecordId(pydantic.BaseModel):
    id: str = pydantic.Field(description="The batch record's id.")


class BatchRecordOut(pydantic.BaseModel):
    """One operation queued for a legacy system, and where it stands: as `hybridmesh batch
    list --json` prints each."""

    id: str
    target: str
    operation: str
    payload: dict[str, Any]
    idempotency_key: str | None
    status: RecordStatus
    run_id: str | None = pydantic.Field(description="The run that carried it, once sent.")
    error: str | None
    created_at: str
    updated_at: str


class BatchRecordList(pydantic.RootModel[list[BatchRecordOut]]):
    """The records, newest first."""


class BatchRunOut(pydantic.BaseModel):
    """One delivery of records (a file written, a bulk POST): as `hybridmesh batch runs
    --json` prints each."""

    id: str
    target: str
    operation: str
    format: str
    location: str = pydantic.Field(description="The file written, or the URL posted to.")
    records: int
    status: RunStatus
    error: str | None
    created_at: str
    acknowledged_at: str | None


class BatchRunList(pydantic.RootModel[list[BatchRunOut]]):
    """The runs, newest first."""


def _ledger(call: Call) -> BatchLedger:
    """The serving process's batch ledger, else one on the plane's store."""
    batch = call.plane.batch
    return batch.ledger if batch is not None else BatchLedger(call.plane.store)


@operations.operation(
    "GET",
    "/api/v1/batch/records",
    summary="List batch records",
    tags=_TAGS,
    role=Role.READ,
    query=BatchRecordQuery,
    response=BatchRecordList,
)
async def list_batch_records(call: Call) -> object:
    """The records queued for legacy systems, newest first, optionally of one status and
    target, as `hybridmesh batch list --json`."""
    query: BatchRecordQuery = call.query
    records = await _ledger(call).records(
        status=None if query.status == "all" else query.status,
        target=query.target,
        limit=query.limit,
    )
    return [record.to_dict() for record in records]


@operations.operation(
    "GET",
    "/api/v1/batch/runs",
    summary="List batch runs",
    tags=_TAGS,
    role=Role.READ,
    query=BatchRunQuery,
    response=BatchRunList,
)
async def list_batch_runs(call: Call) -> object:
    """The runs (files written, bulk POSTs), newest first, as `hybridmesh batch runs
    --json`."""
    query: BatchRunQuery = call.query
    return [run.to_dict() for run in await _ledger(call).runs(limit=query.limit)]


@operations.operation(
    "POST",
    "/api/v1/batch/records/{id}/requeue",
    summary="Requeue a failed batch record",
    tags=_TAGS,
    role=Role.OPERATE,
    path_params=BatchRecordId,
    response=BatchRecordOut,
    errors=(404, 409),
)
async def requeue_batch_record(call: Call) -> object:
    """Queue a failed record again, for the next run of its queue, as `hybridmesh batch
    requeue ID --json`; a record already queued stays so. 409 for a record that was sent
    or acknowledged."""
    path: BatchRecordId = call.path
    ledger = _ledger(call)
    await ledger.get(path.id)  # 404 for an unknown record
    try:
        record = await ledger.requeue(path.id)
    except ValidationError as refused:  # its status does not allow it
        raise web.HTTPConflict(text=str(refused)) from None
    return record.to_dict()


__all__ = ["operations"]
