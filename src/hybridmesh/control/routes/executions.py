"""``/api/v1/executions``: sagas and workflow executions, as ``hybridmesh executions
list|show|cancel`` and ``saga|workflow start --detach`` have them, with the same JSON.

The listing pages with an opaque ``cursor``: pass the ``next_cursor`` of one page to get the
next, with the same filters; ``next_cursor`` is null on the last page. Executions come
newest first (by when they were started, then by id), and the walk sees each exactly once,
even while others start (they are newer: they would be on a first page).
"""

from __future__ import annotations

from typing import Any, Literal

import pydantic
from aiohttp import web

from hybridmesh.control.auth import Role
from hybridmesh.control.cursors import PagedQuery, decode_cursor, encode_cursor
from hybridmesh.control.declare import Call, Operations
from hybridmesh.core.limits import MAX_VERSION
from hybridmesh.orchestration import Status
from hybridmesh.orchestration.admin import ExecutionPosition, load_execution, page_executions

operations = Operations()

_TAGS = ("executions",)

#: The largest page of the listing.
MAX_PAGE = 1_000


class ExecutionListQuery(PagedQuery):
    status: Status | None = pydantic.Field(default=None, description="Only in this status.")
    kind: Literal["saga", "workflow"] | None = pydantic.Field(
        default=None, description="Only sagas, or only workflows."
    )
    name: str | None = pydantic.Field(
        default=None, max_length=256, description="Only executions of this definition."
    )
    limit: int = pydantic.Field(default=50, ge=1, le=MAX_PAGE, description="The page's size.")


class ExecutionId(pydantic.BaseModel):
    id: str = pydantic.Field(description="The execution's id.")


class StepOut(pydantic.BaseModel):
    """Where one step of an execution stands."""

    step_id: str
    status: str
    attempt: int
    result: Any = None
    error: str | None = None
    compensation: str | None = None
    compensation_error: str | None = None


class ExecutionOut(pydantic.BaseModel):
    """An execution: as `hybridmesh executions list --json` shows each."""

    id: str
    kind: Literal["saga", "workflow"]
    name: str
    version: int
    status: Status
    input: Any
    context: dict[str, Any]
    steps: list[StepOut]
    error: str | None
    trace_context: str | None
    created_at: str
    updated_at: str
    ended_at: str | None
    wake_at: str | None
    lease_owner: str | None


class ExecutionPage(pydantic.BaseModel):
    """One page of executions, newest first."""

    items: list[ExecutionOut]
    next_cursor: str | None = pydantic.Field(
        description="Pass as `cursor` for the next page; null on the last page."
    )


class HistoryEventOut(pydantic.BaseModel):
    """One event of an execution's history."""

    seq: int
    type: str
    step_id: str | None
    attempt: int | None
    data: Any
    at: str


class ExecutionDetail(ExecutionOut):
    """An execution and its history, oldest event first: as `hybridmesh executions show
    ID --json`."""

    history: list[HistoryEventOut]


class StartExecution(pydantic.BaseModel):
    """What to start: a saga type or a workflow id, with its input."""

    model_config = pydantic.ConfigDict(extra="forbid")

    kind: Literal["saga", "workflow"]
    name: str = pydantic.Field(min_length=1, max_length=256, description="The definition.")
    input: dict[str, Any] = pydantic.Field(default_factory=dict)
    id: str | None = pydantic.Field(
        default=None,
        min_length=1,
        max_length=128,
        description="The execution's id. Starting again with the same id starts nothing.",
    )
    version: int | None = pydantic.Field(
        default=None,
        ge=1,
        le=MAX_VERSION,
        description="The definition's version (default: the newest not retired).",
    )


class Started(pydantic.BaseModel):
    """The execution recorded; a worker runs it: as `saga start --detach --json`."""

    id: str
    status: Literal["running"]


class CancelExecution(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    reason: str = pydantic.Field(default="cancelled by request", max_length=1_000)


class CancelRequested(pydantic.BaseModel):
    """The cancel is recorded; the worker holding the execution applies it."""

    id: str
    status: Status = pydantic.Field(description="The status when the cancel was recorded.")
    cancel_requested: bool


@operations.operation(
    "GET",
    "/api/v1/executions",
    summary="List executions",
    tags=_TAGS,
    role=Role.READ,
    query=ExecutionListQuery,
    response=ExecutionPage,
)
async def list_executions(call: Call) -> object:
    """Executions, newest first, filtered by status, kind and definition name, a page at a
    time: pass `next_cursor` back as `cursor` (with the same filters) for the next page."""
    query: ExecutionListQuery = call.query
    page, following = await page_executions(
        call.plane.store,
        status=None if query.status is None else query.status.value,
        kind=query.kind,
        name=query.name,
        limit=query.limit,
        after=None if query.cursor is None else ExecutionPosition(*decode_cursor(query.cursor)),
    )
    return {
        "items": [execution.to_dict() for execution in page],
        "next_cursor": (
            None if following is None else encode_cursor(following.created_at, following.id)
        ),
    }


@operations.operation(
    "GET",
    "/api/v1/executions/{id}",
    summary="Show an execution",
    tags=_TAGS,
    role=Role.READ,
    path_params=ExecutionId,
    response=ExecutionDetail,
    errors=(404,),
)
async def get_execution(call: Call) -> object:
    """One execution, its steps, and its history, oldest event first."""
    path: ExecutionId = call.path
    engine = call.plane.engine
    execution = await engine.get(path.id)
    history = await engine.history(path.id)
    return {**execution.to_dict(), "history": [event.to_dict() for event in history]}


@operations.operation(
    "POST",
    "/api/v1/executions",
    summary="Start a saga or a workflow",
    tags=_TAGS,
    role=Role.OPERATE,
    body=StartExecution,
    response=Started,
    status=202,
    errors=(404,),
)
async def start_execution(call: Call) -> object:
    """Record a new execution of the definition (its newest version that is not retired,
    or `version`) with `input`; any worker on the store runs it, as after `hybridmesh saga
    start --detach`. 404 when there is no such definition or version."""
    body: StartExecution = call.body
    execution_id = await call.plane.engine.start(
        body.kind, body.name, body.input, execution_id=body.id, version=body.version
    )
    call.target = execution_id
    return {"id": execution_id, "status": "running"}


@operations.operation(
    "POST",
    "/api/v1/executions/{id}/cancel",
    summary="Cancel an execution",
    tags=_TAGS,
    role=Role.OPERATE,
    path_params=ExecutionId,
    body=CancelExecution,
    response=CancelRequested,
    status=202,
    errors=(404, 409),
)
async def cancel_execution(call: Call) -> object:
    """Ask a running execution to stop (a saga compensates its completed steps first), as
    `hybridmesh executions cancel ID`; the worker holding it applies it. 409 when it has
    ended already."""
    path: ExecutionId = call.path
    body: CancelExecution = call.body
    execution = await load_execution(call.plane.store, path.id)
    if execution.ended:
        raise web.HTTPConflict(
            text=f"execution {path.id!r} has already ended ({execution.status.value})"
        )
    await call.plane.engine.cancel(path.id, body.reason)
    return {"id": path.id, "status": execution.status.value, "cancel_requested": True}


__all__ = ["operations"]
