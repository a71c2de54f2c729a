"""``POST /events``: CloudEvents in over HTTP, published on the bus.

Accepts the three HTTP modes of the CloudEvents HTTP binding: structured
(``application/cloudevents+json``), batch (``application/cloudevents-batch+json``) and binary
(``ce-*`` headers, the data as the body). Every event is validated before any is published,
and a batch is published in one write, so a request is accepted or refused as a whole.

Answers 202 ``{"accepted": n, "ids": [...]}``; 400 problem details naming each bad field
(``id``, ``[1].type``, ``content-type``), including an attribute past its limit
(:mod:`hybridmesh.events.limits`) and a batch that holds the same (source, id) twice
(``[2].id``); 413 when the body is larger than the limit (1 MiB by default); 408 when the
body has not all arrived within the body timeout (``HYBRIDMESH_HTTP_BODY_TIMEOUT``, 30 s by
default); 503 when the event backend did not take the events (it is unreachable, or lost its
connection and did not get it back in time), which is safe to retry because the bus ignores
an event whose (source, id) it already has. An event sent again after a 202 is answered 202
again and stored once: a client that is unsure whether its request arrived sends it again.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from hybridmesh.api._context import BUS, MAX_BODY_BYTES, SETTINGS
from hybridmesh.api.problems import INVALID_EVENT, problem_response
from hybridmesh.core.errors import ValidationError
from hybridmesh.events.envelope import EventFormatError, from_http
from hybridmesh.observability import get_logger

log = get_logger("hybridmesh.api.events")

routes = web.RouteTableDef()

_CHUNK = 64 * 1024


@routes.post("/events")
async def ingest_events(request: web.Request) -> web.Response:
    """Parse the request's CloudEvents and publish them; see the module docstring."""
    body = await read_body(
        request, request.app[MAX_BODY_BYTES], request.app[SETTINGS].http_body_timeout
    )
    try:
        events = from_http(request.headers, body)
    except EventFormatError as error:
        return _invalid(error)
    try:
        published = await request.app[BUS].publish_many(events)
    except ValidationError as error:
        return _invalid(error)
    except Exception:
        log.exception("publishing %d event(s) failed", len(events))
        return problem_response(
            503,
            "the event backend did not take the events; retrying is safe, as events are "
            "deduplicated by source and id",
            headers={"Retry-After": "1"},
        )
    return web.json_response(
        {"accepted": len(published), "ids": [event.id for event in published]}, status=202
    )


def _invalid(error: ValidationError) -> web.Response:
    count = len(error.problems)
    return problem_response(
        400,
        f"the request does not hold valid CloudEvents ({count} problem{'s' * (count != 1)})",
        type=INVALID_EVENT,
        title="Invalid CloudEvent",
        errors=error.problems,
    )


async def read_body(request: web.Request, limit: int, within: float | None = None) -> bytes:
    """The request body, or ``413 Payload Too Large`` as soon as it exceeds ``limit`` bytes
    (by its ``Content-Length``, or while reading a chunked body), or ``408 Request Timeout``
    when it has not all arrived within ``within`` seconds (then the connection is closed:
    what is left of the body cannot be told from a next request)."""
    if request.content_length is not None and request.content_length > limit:
        raise _too_large(limit, request.content_length)
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(within):
            async for chunk in request.content.iter_chunked(_CHUNK):
                size += len(chunk)
                if size > limit:
                    raise _too_large(limit, size)
                chunks.append(chunk)
    except TimeoutError:
        raise web.HTTPRequestTimeout(
            text=f"the body did not arrive within {within:g} s ({size} bytes came)"
        ) from None
    return b"".join(chunks)


def _too_large(limit: int, size: int) -> web.HTTPRequestEntityTooLarge:
    return web.HTTPRequestEntityTooLarge(
        max_size=limit, actual_size=size, text=f"the body is larger than {limit} bytes"
    )


__all__ = ["ingest_events", "read_body", "routes"]
