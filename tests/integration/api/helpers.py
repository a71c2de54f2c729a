"""A real API server on loopback over a bus on the in-memory backend, and WebSocket helpers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from hybridmesh.api import create_app
from hybridmesh.api.websocket import Authenticator, WebSocketHub, allow_any
from hybridmesh.core.settings import Settings
from hybridmesh.events.backends.memory import MemoryEventBackend
from hybridmesh.events.bus import EventBus
from hybridmesh.events.envelope import CloudEvent
from hybridmesh.observability import MeshMetrics

#: Seconds any single wait in these tests may take before it fails.
WAIT = 5.0


@dataclass
class Sink:
    """A bus subscriber that keeps what it receives."""

    events: list[CloudEvent] = field(default_factory=list)
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def __call__(self, event: CloudEvent) -> None:
        self.events.append(event)
        self._arrived.set()

    async def wait_for(self, count: int) -> list[CloudEvent]:
        async with asyncio.timeout(WAIT):
            while len(self.events) < count:
                self._arrived.clear()
                await self._arrived.wait()
        return self.events


@dataclass
class Served:
    url: str
    bus: EventBus
    hub: WebSocketHub
    metrics: MeshMetrics
    sink: Sink
    http: aiohttp.ClientSession

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://") + "/ws/events"


@asynccontextmanager
async def serving(
    authenticate: Authenticator | None = allow_any, **hub_options: Any
) -> AsyncIterator[Served]:
    metrics = MeshMetrics()
    bus = EventBus(MemoryEventBackend(), metrics=metrics, poll_wait=0.05)
    sink = Sink()
    bus.subscribe(">", sink, group="test-sink")
    hub = WebSocketHub(authenticate, metrics=metrics, **hub_options)
    app = create_app(bus, hub=hub, metrics=metrics, settings=Settings())
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await bus.start()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    async with aiohttp.ClientSession() as http:
        try:
            yield Served(url, bus, hub, metrics, sink, http)
        finally:
            await runner.cleanup()
            await bus.close()


async def next_json(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    """The next text message, parsed; fails on anything else."""
    message = await ws.receive(timeout=WAIT)
    assert message.type is aiohttp.WSMsgType.TEXT, (message.type, message.data)
    parsed: dict[str, Any] = message.json()
    return parsed


async def next_of_type(ws: aiohttp.ClientWebSocketResponse, kind: str) -> dict[str, Any]:
    """The next message whose ``type`` is ``kind``; fails if another type comes first."""
    message = await next_json(ws)
    assert message["type"] == kind, message
    return message


async def connect(served: Served, token: str | None = "42") -> aiohttp.ClientWebSocketResponse:
    """A WebSocket client past the welcome message."""
    url = served.ws_url + (f"?token={token}" if token is not None else "")
    ws = await served.http.ws_connect(url)
    if token is not None:
        await next_of_type(ws, "welcome")
    return ws


async def request(
    ws: aiohttp.ClientWebSocketResponse, message: dict[str, Any], reply: str
) -> dict[str, Any]:
    await ws.send_json(message)
    return await next_of_type(ws, reply)
