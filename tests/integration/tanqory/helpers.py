"""Waiting for what the event-driven services do in the background, and recording events."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiohttp

from hybridmesh.events import CloudEvent
from tanqory.apps import ConsumerSettings, RelaySettings

T = TypeVar("T")

#: Seconds any single wait in these tests may take before it fails.
WAIT = 5.0

#: Retries and dead letters in milliseconds, so that a poison event takes no time.
FAST_CONSUMER = ConsumerSettings(max_deliveries=2, backoff_initial=0.01, backoff_max=0.02)
FAST_RELAY = RelaySettings(backoff_initial=0.01, backoff_max=0.02, poll_interval=0.05)


async def until(fetch: Callable[[], Awaitable[T]], ready: Callable[[T], bool]) -> T:
    """``fetch()`` again and again until ``ready`` says yes; fails after :data:`WAIT`."""
    value = await fetch()
    try:
        async with asyncio.timeout(WAIT):
            while not ready(value):
                await asyncio.sleep(0.02)
                value = await fetch()
    except TimeoutError:
        raise AssertionError(f"still not ready after {WAIT}s: {value!r}") from None
    return value


def getter(http: aiohttp.ClientSession, url: str) -> Callable[[], Awaitable[Any]]:
    """A ``fetch`` for :func:`until`: the JSON body of ``GET url`` (which must answer 200)."""

    async def fetch() -> Any:
        async with http.get(url) as resp:
            assert resp.status == 200, await resp.text()
            return await resp.json()

    return fetch


@dataclass
class Sink:
    """A bus handler that keeps every event it receives."""

    events: list[CloudEvent] = field(default_factory=list)

    async def __call__(self, event: CloudEvent) -> None:
        self.events.append(event)


async def next_event(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    """The next message that carries an event (skipping replies), as the hub sends it."""
    async with asyncio.timeout(WAIT):
        while True:
            message: dict[str, Any] = await ws.receive_json()
            if message["type"] == "event":
                return message


async def send(ws: aiohttp.ClientWebSocketResponse, action: dict[str, Any]) -> dict[str, Any]:
    """Send a client message and return the hub's reply to it."""
    await ws.send_json(action)
    reply: dict[str, Any] = await ws.receive_json(timeout=WAIT)
    return reply
