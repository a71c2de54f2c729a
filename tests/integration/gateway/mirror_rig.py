"""Real upstreams (aiohttp on loopback) and real in-process gateway replicas with the
store-backed hooks (mirroring, stats windows), for the mirroring and stats tests."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from hybridmesh.gateway.config import parse_routes
from hybridmesh.gateway.hooks import GatewayHooks
from hybridmesh.gateway.metrics import GatewayMetrics
from hybridmesh.gateway.server import Gateway, GatewaySettings
from hybridmesh.gateway.state import GatewayState
from hybridmesh.store import Store, open_store

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Seen:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Upstream:
    url: str
    seen: list[Seen] = field(default_factory=list)


@asynccontextmanager
async def upstream(routes: dict[str, Handler]) -> AsyncIterator[Upstream]:
    """An HTTP server on 127.0.0.1 that records every request and answers with the
    handler of the first path prefix in ``routes`` that matches (404 otherwise)."""
    served = Upstream("")

    async def any_request(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        served.seen.append(
            Seen(
                request.method,
                request.path,
                request.query_string,
                {k.lower(): v for k, v in request.headers.items()},
                body,
            )
        )
        for prefix, handler in routes.items():
            if request.path.startswith(prefix):
                return await handler(request)
        return web.json_response({"error": "no such thing"}, status=404)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", any_request)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    served.url = f"http://127.0.0.1:{port}"
    try:
        yield served
    finally:
        await runner.cleanup()


def closed_port_url() -> str:
    """A loopback URL where nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@dataclass
class Replica:
    gateway: Gateway
    hooks: GatewayHooks
    store: Store
    url: str
    http: aiohttp.ClientSession

    @property
    def metrics(self) -> GatewayMetrics:
        return self.gateway.metrics

    def mirrored(self, route: str, outcome: str) -> int:
        value = self.metrics.sample("hybridmesh_gateway_mirror_total", route=route, outcome=outcome)
        return int(value or 0)

    async def get(self, path: str, **kwargs: Any) -> tuple[int, dict[str, str], bytes]:
        return await self.call("GET", path, **kwargs)

    async def call(
        self, method: str, path: str, **kwargs: Any
    ) -> tuple[int, dict[str, str], bytes]:
        async with self.http.request(method, self.url + path, **kwargs) as answer:
            body = await answer.read()
            return answer.status, {k.lower(): v for k, v in answer.headers.items()}, body


async def apply_routes(store: Store, text: str) -> None:
    await GatewayState(store).apply(parse_routes(text, "routes.yaml"))


@asynccontextmanager
async def replica(
    database_url: str, *, name: str, flush_seconds: float | None = None
) -> AsyncIterator[Replica]:
    """A gateway replica with its own store connection, routing with the stored routes."""
    async with AsyncExitStack() as stack:
        store = await open_store(database_url)
        stack.push_async_callback(store.close)
        await store.upgrade()
        metrics = GatewayMetrics()
        hooks = GatewayHooks(store, metrics, replica=name, flush_seconds=flush_seconds)
        gateway = Gateway(GatewaySettings(access_log=False), metrics=metrics, hooks=hooks)
        hooks.start()
        stack.push_async_callback(hooks.close)
        gateway.use(await GatewayState(store).snapshot())
        host, port = await gateway.start("127.0.0.1", 0)
        stack.push_async_callback(gateway.close, 1.0)
        http = aiohttp.ClientSession()
        stack.push_async_callback(http.close)
        yield Replica(gateway, hooks, store, f"http://{host}:{port}", http)
