"""WebSocket through the gateway: the upgrade passes the route's policies, then frames go
both ways unchanged until either side closes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import WSMsgType, web

from hybridmesh.gateway.config import parse_routes
from hybridmesh.gateway.server import Gateway, GatewaySettings
from hybridmesh.gateway.state import GatewayState
from hybridmesh.store import open_store


@pytest.fixture
async def echo() -> AsyncIterator[str]:
    """A WebSocket server that echoes every message, prefixed with who it is."""

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for message in ws:
            if message.type is WSMsgType.TEXT:
                await ws.send_str(
                    f"echo {request.headers.get('x-consumer-username')}: {message.data}"
                )
            elif message.type is WSMsgType.BINARY:
                await ws.send_bytes(message.data[::-1])
        return ws

    app = web.Application()
    app.router.add_get("/ws", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
    await runner.cleanup()


async def gateway_for(tmp_path: Path, backend: str) -> tuple[Gateway, str, str, object]:
    store = await open_store(f"sqlite:///{tmp_path / 'mesh.db'}")
    await store.upgrade()
    state = GatewayState(store)
    routes = f"""
routes:
  - name: live
    match: {{path: {{prefix: /ws}}}}
    backends:
      - {{name: notifications, url: "{backend}", weight: 100}}
    policies:
      key_auth: {{}}
"""
    await state.apply(parse_routes(routes, "routes.yaml"))
    _, key = await state.create_key("dashboard")
    gateway = Gateway(GatewaySettings(access_log=False))
    gateway.use(await state.snapshot())
    host, port = await gateway.start("127.0.0.1", 0)
    return gateway, f"http://{host}:{port}", key, store


async def test_messages_go_both_ways_through_an_upgraded_connection(
    tmp_path: Path, echo: str
) -> None:
    gateway, base, key, store = await gateway_for(tmp_path, echo)
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(base + "/ws", headers={"apikey": key}) as ws,
        ):
            await ws.send_str("hello")
            assert (await ws.receive(timeout=5)).data == "echo dashboard: hello"
            await ws.send_bytes(b"\x01\x02\x03" * 50_000)
            assert (await ws.receive(timeout=5)).data == b"\x03\x02\x01" * 50_000
            await ws.close()
        assert (
            gateway.metrics.sample(
                "hybridmesh_gateway_requests_total",
                route="live",
                backend="notifications",
                status_class="1xx",
            )
            == 1
        )
    finally:
        await gateway.close(grace=1)
        await store.close()  # type: ignore[attr-defined]


async def test_an_upgrade_without_a_key_is_refused_before_the_backend(
    tmp_path: Path, echo: str
) -> None:
    gateway, base, _, store = await gateway_for(tmp_path, echo)
    try:
        async with aiohttp.ClientSession() as session:
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await session.ws_connect(base + "/ws")
            assert refused.value.status == 401
    finally:
        await gateway.close(grace=1)
        await store.close()  # type: ignore[attr-defined]


async def test_an_upgrade_to_a_backend_that_is_down_is_a_quick_502(tmp_path: Path) -> None:
    server = await asyncio.get_running_loop().create_server(asyncio.Protocol, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    gateway, base, key, store = await gateway_for(tmp_path, f"http://127.0.0.1:{port}")
    try:
        async with aiohttp.ClientSession() as session:
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await session.ws_connect(base + "/ws", headers={"apikey": key})
            assert refused.value.status == 502
    finally:
        await gateway.close(grace=1)
        await store.close()  # type: ignore[attr-defined]
