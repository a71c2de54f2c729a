"""``GET /api/v1/stream``: bus events and execution status changes as server-sent events,
read by a real HTTP client from the served app."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from tests.integration.control.conftest import OpenPlane, Plane
from tests.integration.control.test_executions_api import held_service, load_sagas, registry
from tests.waiting import HANG, eventually

from hybridmesh.api._context import BUS
from hybridmesh.control.live import LIVE
from hybridmesh.core.serialization import dumps, loads
from hybridmesh.events.envelope import CloudEvent

__all__ = ["held_service"]  # a fixture used here


@dataclass
class Sse:
    """One server-sent event as read off the wire; comments are kept apart."""

    event: str | None = None
    id: str | None = None
    data: str = ""
    comments: list[str] = field(default_factory=list)


class SseReader:
    """Parses a ``text/event-stream`` body line by line."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response
        self.comments: list[str] = []

    async def next(self) -> Sse:
        """The next event (with a name or data); comments before it go to ``comments``."""
        message = Sse()
        while True:
            raw = await asyncio.wait_for(self.response.content.readline(), HANG)
            assert raw, "the stream ended"
            line = raw.decode().rstrip("\n")
            if line == "":
                if message.event is not None or message.data:
                    return message
                continue
            if line.startswith(":"):
                self.comments.append(line[1:].strip())
                continue
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "event":
                message.event = value
            elif name == "id":
                message.id = value
            elif name == "data":
                message.data += value

    async def comment(self) -> str:
        """The next comment line (heartbeats, the greeting)."""
        while not self.comments:
            raw = await asyncio.wait_for(self.response.content.readline(), HANG)
            assert raw, "the stream ended"
            line = raw.decode().rstrip("\n")
            if line.startswith(":"):
                self.comments.append(line[1:].strip())
        return self.comments.pop(0)


@asynccontextmanager
async def opened(
    plane: Plane, query: str, *, role: str = "read", headers: dict[str, str] | None = None
) -> AsyncIterator[SseReader]:
    """The stream of ``query``, once the server has subscribed it (its greeting read)."""
    async with plane.http.get(
        f"{plane.url}/api/v1/stream?{query}",
        headers={**plane.auth(role), **(headers or {})},
        timeout=aiohttp.ClientTimeout(total=None, sock_read=None),
    ) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        reader = SseReader(response)
        assert await reader.comment() == "stream open"
        yield reader


async def publish(plane: Plane, type: str, data: object) -> CloudEvent:
    return await plane.app[BUS].publish(CloudEvent.create(type, "/orders", data))


async def test_a_published_event_arrives_as_a_cloudevent(plane: Plane) -> None:
    async with opened(plane, "topics=events") as stream:
        sent = await publish(plane, "order.placed", {"order_id": "o-1"})
        got = await stream.next()
    assert (got.event, got.id) == ("cloudevent", sent.id)
    assert loads(got.data) == loads(dumps(sent.to_dict()))


async def test_the_type_filter_leaves_other_events_out(plane: Plane) -> None:
    async with opened(plane, "topics=events&type=order.*") as stream:
        await publish(plane, "user.registered", {"user_id": "u-1"})
        wanted = await publish(plane, "order.shipped", {"order_id": "o-2"})
        got = await stream.next()
    assert (got.event, got.id) == ("cloudevent", wanted.id)
    assert loads(got.data)["type"] == "order.shipped"


async def test_reconnecting_with_last_event_id_sends_what_was_missed(plane: Plane) -> None:
    async with opened(plane, "topics=events&type=order.>") as first:
        seen = await publish(plane, "order.placed", {"n": 1})
        assert (await first.next()).id == seen.id
        # While the first stream still holds the feed, events go by that a reconnecting
        # client has not seen.
        missed = [await publish(plane, "order.placed", {"n": n}) for n in (2, 3)]
        await publish(plane, "user.registered", {"n": 4})
        assert (await first.next()).id == missed[0].id
        assert (await first.next()).id == missed[1].id
        async with opened(
            plane, "topics=events&type=order.>", headers={"Last-Event-ID": seen.id}
        ) as again:
            assert [(await again.next()).id for _ in missed] == [e.id for e in missed]


async def test_a_last_event_id_no_longer_kept_is_said_to_leave_a_gap(plane: Plane) -> None:
    headers = {"Last-Event-ID": "an-event-this-server-never-saw"}
    async with opened(plane, "topics=events", headers=headers) as stream:
        assert await stream.comment() == "events since Last-Event-ID may be missing"
        sent = await publish(plane, "order.placed", {"n": 1})
        assert (await stream.next()).id == sent.id


async def test_an_idle_stream_gets_heartbeats(plane: Plane) -> None:
    plane.app[LIVE].heartbeat = 0.05
    async with opened(plane, "topics=events") as stream:
        assert await stream.comment() == "heartbeat"


async def test_an_execution_status_change_arrives(
    open_plane: OpenPlane, tmp_path: Path, held_service: tuple[str, list[str]]
) -> None:
    url, calls = held_service
    async with open_plane(registry=registry(url)) as plane:
        plane.app[LIVE].poll_interval = 0.05
        await load_sagas(plane, tmp_path, "slow")
        await plane.runtime.engine.start_worker()
        async with opened(plane, "topics=executions") as stream:
            status, started = await plane.call(
                "POST", "/api/v1/executions", role="operate", json={"kind": "saga", "name": "slow"}
            )
            assert status == 202
            execution_id = started["id"]
            first = await stream.next()
            assert first.event == "execution"
            assert {k: v for k, v in loads(first.data).items() if k != "updated_at"} == {
                "id": execution_id,
                "kind": "saga",
                "name": "slow",
                "status": "running",
            }
            await eventually(lambda: bool(calls), what="the step's call")
            await plane.call("POST", f"/api/v1/executions/{execution_id}/cancel", role="operate")
            later = await stream.next()
            while loads(later.data)["status"] == "running":
                later = await stream.next()
        change = loads(later.data)
        assert (later.event, change["id"], change["status"]) == (
            "execution",
            execution_id,
            "cancelled",
        )
        _, shown = await plane.call("GET", f"/api/v1/executions/{execution_id}", role="read")
        assert change["updated_at"] == shown["updated_at"]


async def test_the_stream_needs_a_token_and_valid_input(plane: Plane) -> None:
    status, problem = await plane.call("GET", "/api/v1/stream", role=None)
    assert status == 401
    assert problem["status"] == 401
    for query in ("topics=metrics", "type=order..placed", "colour=red"):
        status, problem = await plane.call("GET", f"/api/v1/stream?{query}", role="read")
        assert status == 400, query
        assert problem["errors"], query


async def test_stopping_the_server_ends_open_streams(plane: Plane) -> None:
    async with opened(plane, "topics=events,executions") as stream:
        await plane.app.shutdown()
        rest = await asyncio.wait_for(stream.response.content.read(), HANG)
    assert rest.strip() == b""  # nothing more, and the body ended
