"""``/api/v1/dead-letters``: the event bus's dead letters, as ``hybridmesh dlq
list|show|replay|purge`` has them, with the same JSON as their ``--json``.

The dead letters belong to the bus the application serves (``hybridmesh serve`` opens it
from the settings: the SQL log in the store, NATS or Kafka), so these routes work on that
bus, not on the control plane's store.
"""

from __future__ import annotations

from typing import Any

import pydantic
from aiohttp import web

from hybridmesh.api._context import BUS
from hybridmesh.control.auth import Role
from hybridmesh.control.declare import Call, Operations
from hybridmesh.core.errors import ValidationError
from hybridmesh.events.bus import EventBus

operations = Operations()

_TAGS = ("dead-letters",)

#: The longest listing (the CLI's `--limit` takes more; the API bounds one answer).
MAX_LIST = 1_000


class DeadLetterQuery(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    group: str | None = pydantic.Field(
        default=None, min_length=1, max_length=256, description="Only this consumer group's."
    )
    limit: int = pydantic.Field(default=100, ge=1, le=MAX_LIST, description="How many, at most.")


class DeadLetterId(pydantic.BaseModel):
    id: str = pydantic.Field(description="The dead letter's id.")


class DeadLetterOut(pydantic.BaseModel):
    """An event that exhausted its deliveries, or never parsed: as `hybridmesh dlq show ID
    --json`. One of `event` (the CloudEvent) and `body` (the raw text) is null."""

    id: str
    group: str = pydantic.Field(description="The consumer group that gave up on it.")
    reason: str = pydantic.Field(description="Why the last delivery failed.")
    attempts: int = pydantic.Field(description="How many deliveries were made.")
    failed_at: str
    replayed_at: str | None = pydantic.Field(description="When it was last replayed, if ever.")
    event: dict[str, Any] | None
    body: str | None


class DeadLetterList(pydantic.RootModel[list[DeadLetterOut]]):
    """The dead letters, newest first."""


class PurgeDeadLetters(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    group: str | None = pydantic.Field(
        default=None,
        min_length=1,
        max_length=256,
        description="Only this consumer group's dead letters; without it, every one.",
    )


class Purged(pydantic.BaseModel):
    """How many dead letters were deleted: as `hybridmesh dlq purge --yes --json`."""

    purged: int
    group: str | None


def _bus(call: Call) -> EventBus:
    return call.request.app[BUS]


@operations.operation(
    "GET",
    "/api/v1/dead-letters",
    summary="List dead letters",
    tags=_TAGS,
    role=Role.READ,
    query=DeadLetterQuery,
    response=DeadLetterList,
)
async def list_dead_letters(call: Call) -> object:
    """The bus's dead letters, newest first, optionally of one consumer group, as
    `hybridmesh dlq list --json`."""
    query: DeadLetterQuery = call.query
    letters = await _bus(call).dead_letters(group=query.group, limit=query.limit)
    return [letter.to_dict() for letter in letters]


@operations.operation(
    "GET",
    "/api/v1/dead-letters/{id}",
    summary="Show a dead letter",
    tags=_TAGS,
    role=Role.READ,
    path_params=DeadLetterId,
    response=DeadLetterOut,
    errors=(404,),
)
async def get_dead_letter(call: Call) -> object:
    """One dead letter with its event, as `hybridmesh dlq show ID --json`."""
    path: DeadLetterId = call.path
    return (await _bus(call).dead_letter(path.id)).to_dict()


@operations.operation(
    "POST",
    "/api/v1/dead-letters/{id}/replay",
    summary="Replay a dead letter",
    tags=_TAGS,
    role=Role.OPERATE,
    path_params=DeadLetterId,
    response=DeadLetterOut,
    errors=(404, 409),
)
async def replay_dead_letter(call: Call) -> object:
    """Deliver the dead letter's event again, to its own consumer group only, and mark it
    replayed, as `hybridmesh dlq replay ID --json`. A letter may be replayed again (each
    replay delivers once more). 404 for an unknown (or purged) letter; 409 when its stored
    body is not a CloudEvent, so there is nothing to deliver."""
    path: DeadLetterId = call.path
    bus = _bus(call)
    letter = await bus.dead_letter(path.id)
    try:
        return (await bus.replay(letter.id)).to_dict()
    except ValidationError as error:  # the letter's body, not the request, is at fault
        raise web.HTTPConflict(
            text=f"dead letter {letter.id} cannot be replayed: its body is not a CloudEvent "
            f"({error})"
        ) from None


@operations.operation(
    "POST",
    "/api/v1/dead-letters/purge",
    summary="Purge dead letters",
    tags=_TAGS,
    role=Role.OPERATE,
    body=PurgeDeadLetters,
    response=Purged,
)
async def purge_dead_letters(call: Call) -> object:
    """Delete dead letters for good: those of `group`, or every one without it, as
    `hybridmesh dlq purge [--group GROUP] --yes --json`. Replayed or not, they are gone."""
    body: PurgeDeadLetters = call.body
    call.target = body.group
    count = await _bus(call).purge(group=body.group)
    return {"purged": count, "group": body.group}


__all__ = ["operations"]
