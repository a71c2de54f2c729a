"""A real ``hybridmesh serve`` whose WebSocket hub has carried an event, then killed with
SIGKILL: for the tests that check what a killed server leaves in the event backend."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys

import aiohttp

from hybridmesh.events.envelope import CloudEvent

WAIT = 30.0  # seconds: only a hang takes this long


async def _see_an_event_through_the_hub(url: str) -> None:
    """Subscribe over the WebSocket, publish through the API, receive it: the hub reads."""
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(url.replace("http://", "ws://") + "/ws/events?token=42")
        assert (await ws.receive_json(timeout=WAIT))["type"] == "welcome"
        await ws.send_json({"action": "subscribe", "patterns": ["user.*"]})
        assert (await ws.receive_json(timeout=WAIT))["type"] == "subscribed"
        event = CloudEvent.create("user.registered", "/tests", {"n": 1})
        async with http.post(
            url + "/events",
            data=event.to_json(),
            headers={"Content-Type": "application/cloudevents+json"},
        ) as answer:
            assert answer.status == 202, await answer.text()
        got = await ws.receive_json(timeout=WAIT)
        assert got["type"] == "event" and got["event"]["id"] == event.id


def serve_then_kill(env: dict[str, str]) -> None:
    """Run ``hybridmesh serve`` (no worker: the hub is its only reader of the bus) with
    ``env``, carry an event through its hub, and kill it with SIGKILL."""
    server = subprocess.Popen(
        [sys.executable, "-m", "hybridmesh", "serve", "--dev-tokens", "--no-worker", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        assert line.startswith("serving on "), (line, server.stderr and server.stderr.read())
        asyncio.run(_see_an_event_through_the_hub(line.split()[2]))
    finally:
        server.send_signal(signal.SIGKILL)
        server.communicate(timeout=WAIT)
    assert server.returncode == -signal.SIGKILL
