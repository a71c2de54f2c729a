"""``/api/v1/stream``: bus events and execution changes as server-sent events, live.

The answer is ``text/event-stream``. Each bus event whose type matches ``type`` comes as
``event: cloudevent`` with ``id:`` the event's id and ``data:`` the structured CloudEvent;
each execution whose status changed as ``event: execution`` with ``data:`` its ``id``,
``kind``, ``name``, ``status`` and ``updated_at``. An idle stream gets a comment every 15
seconds, so proxies keep it open and a gone client is noticed. A client that reconnects
with ``Last-Event-ID`` first gets the events it missed, when the server still keeps that
id (the newest thousand); otherwise a comment says some may be missing. See
:mod:`hybridmesh.control.live`.
"""

from __future__ import annotations

import asyncio

import pydantic
from aiohttp import web

from hybridmesh.control.auth import Role
from hybridmesh.control.declare import Call, Operations
from hybridmesh.control.live import LIVE, Subscriber
from hybridmesh.core.errors import ValidationError
from hybridmesh.events.subjects import validate_pattern

operations = Operations()

#: What a stream may carry.
TOPICS = ("events", "executions")


class StreamQuery(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    topics: str = pydantic.Field(
        default="events,executions",
        max_length=100,
        description="What to send, comma-separated: `events` (bus events), `executions` "
        "(execution status changes).",
    )
    type: str | None = pydantic.Field(
        default=None,
        max_length=256,
        description="Only bus events whose type matches this NATS-style pattern "
        "(`order.*`, `order.>`).",
    )

    @pydantic.field_validator("topics")
    @classmethod
    def _known_topics(cls, topics: str) -> str:
        named = [t.strip() for t in topics.split(",") if t.strip()]
        unknown = sorted(set(named) - set(TOPICS))
        if not named or unknown:
            raise ValueError(f"expected a comma-separated list of {', '.join(TOPICS)}")
        return ",".join(t for t in TOPICS if t in named)

    @pydantic.field_validator("type")
    @classmethod
    def _pattern(cls, pattern: str | None) -> str | None:
        if pattern is not None:
            try:
                validate_pattern(pattern)
            except ValidationError as error:
                raise ValueError(error.problems[0].message) from None
        return pattern

    def wants(self, topic: str) -> bool:
        return topic in self.topics.split(",")


@operations.operation(
    "GET",
    "/api/v1/stream",
    summary="Live bus events and execution changes",
    tags=("live",),
    role=Role.READ,
    query=StreamQuery,
    media="text/event-stream",
    media_schema={
        "type": "string",
        "description": "Server-sent events: `event: cloudevent` (with `id:`, `data:` a "
        "structured CloudEvent) and `event: execution` (`data:` id, kind, name, status, "
        "updated_at); comments as heartbeats.",
    },
    errors=(503,),
)
async def stream_events(call: Call) -> object:
    """Server-sent events until the client goes or the server stops: the bus events whose
    type matches `type`, and the executions whose status changes, as they happen. Send
    `Last-Event-ID` when reconnecting to get the events missed meanwhile."""
    query: StreamQuery = call.query
    request = call.request
    feed = request.app[LIVE]
    if feed.closing:
        raise web.HTTPServiceUnavailable(text="the server is stopping")
    subscriber = Subscriber(
        events=query.wants("events"),
        executions=query.wants("executions"),
        pattern=query.type or ">",
    )
    kept = await feed.subscribe(subscriber, last_event_id=request.headers.get("Last-Event-ID"))
    response = web.StreamResponse(headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
    response.content_type = "text/event-stream"
    response.charset = "utf-8"
    try:
        await response.prepare(request)
        await response.write(b": stream open\n\n")
        if not kept:
            await response.write(b": events since Last-Event-ID may be missing\n\n")
        while True:
            try:
                message = await asyncio.wait_for(subscriber.queue.get(), feed.heartbeat)
            except TimeoutError:
                await response.write(b": heartbeat\n\n")
                continue
            if message is None:
                break
            await response.write(message.encode())
    except ConnectionError:
        pass  # the client went away
    finally:
        feed.unsubscribe(subscriber)
    return response


__all__ = ["StreamQuery", "operations"]
