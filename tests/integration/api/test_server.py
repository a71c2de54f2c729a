"""run_server and ``hybridmesh serve``: start, answer, stop in order."""

from __future__ import annotations

import asyncio

import aiohttp
from click.testing import CliRunner
from tests.integration.api.helpers import WAIT, next_of_type

from hybridmesh.api import run_server
from hybridmesh.cli.serve import serve
from hybridmesh.core.settings import Settings
from hybridmesh.events.backends.memory import MemoryEventBackend
from hybridmesh.events.bus import EventBus
from hybridmesh.events.envelope import CloudEvent
from hybridmesh.events.hub import WebSocketHub, allow_any
from hybridmesh.observability import MeshMetrics


async def test_run_server_serves_until_cancelled_then_closes_hub_and_bus() -> None:
    metrics = MeshMetrics()
    bus = EventBus(MemoryEventBackend(), metrics=metrics, poll_wait=0.05)
    hub = WebSocketHub(allow_any, metrics=metrics)
    ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(
        run_server(
            Settings(),
            bus=bus,
            host="127.0.0.1",
            port=0,
            hub=hub,
            metrics=metrics,
            ready=ready.set_result,
        )
    )
    url = await asyncio.wait_for(ready, WAIT)
    assert url.startswith("http://127.0.0.1:")
    async with aiohttp.ClientSession() as http:
        async with http.get(url + "/healthz") as response:
            assert response.status == 200
        ws = await http.ws_connect(url.replace("http", "ws") + "/ws/events?token=42")
        await next_of_type(ws, "welcome")
        await ws.send_json({"action": "subscribe", "patterns": ["user.*"]})
        await next_of_type(ws, "subscribed")
        published = await bus.publish(CloudEvent.create("user.registered", "/users"))
        assert (await next_of_type(ws, "event"))["event"]["id"] == published.id

        task.cancel()
        message = await ws.receive(timeout=WAIT)
        assert message.type is aiohttp.WSMsgType.CLOSE
        assert ws.close_code == 1001
        await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), WAIT)
    assert task.cancelled()
    assert hub.clients == 0
    assert not bus._started


def test_serve_requires_tokens_or_dev_tokens() -> None:
    result = CliRunner().invoke(serve, [])
    assert result.exit_code == 2
    assert "--token NAME=USER_ID" in result.output


def test_serve_rejects_a_malformed_token() -> None:
    result = CliRunner().invoke(serve, ["--token", "no-user-id"])
    assert result.exit_code == 2
    assert "NAME=USER_ID" in result.output


def test_serve_explains_itself() -> None:
    result = CliRunner().invoke(serve, ["--help"])
    assert result.exit_code == 0
    assert "event ingest, WebSocket fan-out, metrics," in " ".join(result.output.split())
