"""``/api/v1/review-items``: the manual review queue, as ``hybridmesh review
list|show|retry|resolve|discard`` has it, with the same JSON as their ``--json``.

The listing pages with an opaque ``cursor``, as ``/api/v1/executions`` does: items come
newest first, and a walk sees each once even while new ones are filed. The actor recorded
on an item's timeline is the name of the token that acted (the CLI records ``--actor``).
"""

from __future__ import annotations

from typing import Any, Literal

import pydantic
from aiohttp import web

from hybridmesh.control.auth import Role
from hybridmesh.control.cursors import PagedQuery, decode_cursor, encode_cursor
from hybridmesh.control.declare import Call, Operations
from hybridmesh.core.errors import ConfigurationError
from hybridmesh.review import ActionKind, Origin, ReviewPosition, ReviewStateError, Status

operations = Operations()

_TAGS = ("review",)

#: The largest page of the listing.
MAX_PAGE = 1_000


#: A status of the listing: one of the items' statuses, or every one (one literal, so that
#: a wrong value is one error naming the field).
StatusFilter = Literal["open", "retried", "resolved", "discarded", "all"]


class ReviewListQuery(PagedQuery):
    status: StatusFilter = pydantic.Field(
        default="open", description="Only items in this status (`all`: every status)."
    )
    origin: Origin | None = pydantic.Field(default=None, description="Only this origin.")
    limit: int = pydantic.Field(default=100, ge=1, le=MAX_PAGE, description="The page's size.")


class ReviewItemId(pydantic.BaseModel):
    id: str = pydantic.Field(description="The review item's id.")


class ReviewActionOut(pydantic.BaseModel):
    """One entry of an item's timeline."""

    action: ActionKind
    actor: str | None
    note: str | None
    at: str


class ReviewItemOut(pydantic.BaseModel):
    """Work that stopped and needs a person: as `hybridmesh review show ID --json`. The
    listing leaves `actions` empty; showing one item fills it, oldest first."""

    id: str
    origin: Origin
    origin_ref: str | None = pydantic.Field(
        description="What the item names in its origin: an execution, a batch record, a "
        "dead letter."
    )
    reason: str
    payload: dict[str, Any]
    status: Status
    created_at: str
    updated_at: str
    actions: list[ReviewActionOut]


class ReviewPage(pydantic.BaseModel):
    """One page of review items, newest first."""

    items: list[ReviewItemOut]
    next_cursor: str | None = pydantic.Field(
        description="Pass as `cursor` for the next page; null on the last page."
    )


class ReviewNote(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    note: str | None = pydantic.Field(
        default=None, max_length=2_000, description="Why; kept on the item's timeline."
    )


def _actor(call: Call) -> str | None:
    return call.principal.name if call.principal is not None else None


def _conflict(error: Exception) -> web.HTTPConflict:
    return web.HTTPConflict(text=str(error))


@operations.operation(
    "GET",
    "/api/v1/review-items",
    summary="List review items",
    tags=_TAGS,
    role=Role.READ,
    query=ReviewListQuery,
    response=ReviewPage,
)
async def list_review_items(call: Call) -> object:
    """Review items, newest first, `open` ones unless `status` says otherwise, a page at a
    time: pass `next_cursor` back as `cursor` (with the same filters) for the next page.
    The items are as `hybridmesh review list --json` prints them."""
    query: ReviewListQuery = call.query
    items, following = await call.plane.review.page(
        status=None if query.status == "all" else query.status,
        origin=query.origin,
        limit=query.limit,
        after=None if query.cursor is None else ReviewPosition(*decode_cursor(query.cursor)),
    )
    return {
        "items": [item.to_dict() for item in items],
        "next_cursor": (
            None if following is None else encode_cursor(following.created_at, following.id)
        ),
    }


@operations.operation(
    "GET",
    "/api/v1/review-items/{id}",
    summary="Show a review item",
    tags=_TAGS,
    role=Role.READ,
    path_params=ReviewItemId,
    response=ReviewItemOut,
    errors=(404,),
)
async def get_review_item(call: Call) -> object:
    """One item, its payload and the timeline of the actions taken on it, as `hybridmesh
    review show ID --json`."""
    path: ReviewItemId = call.path
    return (await call.plane.review.get(path.id)).to_dict()


@operations.operation(
    "POST",
    "/api/v1/review-items/{id}/retry",
    summary="Retry a review item",
    tags=_TAGS,
    role=Role.OPERATE,
    path_params=ReviewItemId,
    body=ReviewNote,
    response=ReviewItemOut,
    errors=(404, 409),
)
async def retry_review_item(call: Call) -> object:
    """Run an open item's work again through its origin (replay a dead letter, reopen a
    saga's compensations, requeue a batch record), as `hybridmesh review retry ID --json`;
    the item becomes `retried`. 409 when it is not open, another retry of it is running,
    its origin cannot be retried by this process, or the work failed again (the item then
    stays open and the failure is on its timeline)."""
    path: ReviewItemId = call.path
    body: ReviewNote = call.body
    queue = call.plane.review
    await queue.get(path.id)  # 404 for an unknown item, before any work runs
    try:
        item = await queue.retry(path.id, actor=_actor(call), note=body.note)
    except (ReviewStateError, ConfigurationError) as refused:
        raise _conflict(refused) from None
    except Exception as failed:  # the origin's work failed: the request was fine
        raise web.HTTPConflict(
            text=f"the retry of review item {path.id} failed; it stays open: "
            f"{type(failed).__name__}: {failed}"
        ) from None
    return item.to_dict()


@operations.operation(
    "POST",
    "/api/v1/review-items/{id}/resolve",
    summary="Resolve a review item",
    tags=_TAGS,
    role=Role.OPERATE,
    path_params=ReviewItemId,
    body=ReviewNote,
    response=ReviewItemOut,
    errors=(404, 409),
)
async def resolve_review_item(call: Call) -> object:
    """Mark an open item `resolved` (a person dealt with it), with an optional note, as
    `hybridmesh review resolve ID --json`. 409 unless it is open and no retry of it is
    running."""
    path: ReviewItemId = call.path
    body: ReviewNote = call.body
    try:
        item = await call.plane.review.resolve(path.id, actor=_actor(call), note=body.note)
    except ReviewStateError as refused:
        raise _conflict(refused) from None
    return item.to_dict()


@operations.operation(
    "POST",
    "/api/v1/review-items/{id}/discard",
    summary="Discard a review item",
    tags=_TAGS,
    role=Role.OPERATE,
    path_params=ReviewItemId,
    body=ReviewNote,
    response=ReviewItemOut,
    errors=(404, 409),
)
async def discard_review_item(call: Call) -> object:
    """Mark an open item `discarded` (nothing more is to be done), with an optional note,
    as `hybridmesh review discard ID --json`. 409 as for resolving."""
    path: ReviewItemId = call.path
    body: ReviewNote = call.body
    try:
        item = await call.plane.review.discard(path.id, actor=_actor(call), note=body.note)
    except ReviewStateError as refused:
        raise _conflict(refused) from None
    return item.to_dict()


__all__ = ["operations"]
