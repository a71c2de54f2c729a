"""run_server and ``hybridmesh serve``: start, answer, stop in order."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import aiohttp
import pytest
from click.testing import CliRunner
from tests.integration.api.helpers import WAIT, next_of_type

from hybridmesh.api import run_server
from hybridmesh.api.websocket import WebSocketHub, allow_any
from hybridmesh.cli.serve import serve
from hybridmesh.core.settings import Settings
from hybridmesh.events.backends.memory import MemoryEventBackend
from hybridmesh.events.bus import EventBus
from hybridmesh.events.envelope import CloudEvent
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


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_serve_as_the_readme_shows_it_starts_and_refuses_websockets_until_tokens_are_set(
    tmp_path: Path,
) -> None:
    port = _free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if key.startswith(("PATH", "PYTHON", "LANG", "LC_", "HOME", "TMP", "VIRTUAL_ENV"))
    }
    env |= {
        "HYBRIDMESH_DATABASE_URL": f"sqlite:///{tmp_path / 'mesh.db'}",
        "HYBRIDMESH_EXCHANGE_DIR": str(tmp_path / "exchange"),
        "HYBRIDMESH_HTTP_PORT": str(port),
        "HYBRIDMESH_LOG_FORMAT": "text",
    }
    base = f"http://127.0.0.1:{port}"
    with (tmp_path / "stderr.log").open("w") as errors:
        server = subprocess.Popen(
            [sys.executable, "-m", "hybridmesh", "serve"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
        )
        try:
            assert server.stdout is not None
            # The first line is the announcement; it comes once the port is listening.
            assert server.stdout.readline().startswith(f"serving on {base}")
            with urllib.request.urlopen(base + "/healthz", timeout=WAIT) as health:
                assert health.status == 200
            handshake = urllib.request.Request(
                base + "/ws/events?token=anything",
                headers={
                    "Connection": "Upgrade",
                    "Upgrade": "websocket",
                    "Sec-WebSocket-Version": "13",
                    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
                },
            )
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(handshake, timeout=WAIT)
            assert refused.value.code == 401
            assert refused.value.headers["Content-Type"].startswith("application/problem+json")
            problem = json.loads(refused.value.read())
            assert problem["status"] == 401
            assert problem["setting"] == "HYBRIDMESH_WS_TOKENS"
            assert "HYBRIDMESH_WS_TOKENS" in problem["detail"]
        finally:
            server.send_signal(signal.SIGTERM)
            server.communicate(timeout=30)
    assert server.returncode == 0
    log = (tmp_path / "stderr.log").read_text()
    warning = [line for line in log.splitlines() if "no WebSocket tokens are configured" in line]
    assert len(warning) == 1, log
    assert "WARNING" in warning[0]
    assert "HYBRIDMESH_WS_TOKENS='NAME=USER_ID" in warning[0]
    assert "--token NAME=USER_ID" in warning[0]


def test_serve_refuses_a_malformed_token_from_the_environment(tmp_path: Path) -> None:
    result = CliRunner().invoke(serve, [], env={"HYBRIDMESH_WS_TOKENS": "s3cr3t=42 no-user"})
    assert result.exit_code == 2
    assert "'no-user': expected NAME=USER_ID" in result.output


def test_serve_rejects_a_malformed_token() -> None:
    result = CliRunner().invoke(serve, ["--token", "no-user-id"])
    assert result.exit_code == 2
    assert "NAME=USER_ID" in result.output


def test_serve_explains_itself() -> None:
    result = CliRunner().invoke(serve, ["--help"])
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert "event ingest, WebSocket fan-out, metrics," in text
    assert "HYBRIDMESH_WS_TOKENS" in text
    assert "/ws/events refuses every connection with 401" in text
