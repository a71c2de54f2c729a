"""A real gateway in front of real upstreams, for the access policy tests.

The gateway is :class:`~hybridmesh.gateway.server.Gateway` on 127.0.0.1 port 0, routing
with the snapshot of a SQLite store in the test's folder; each upstream is an aiohttp
server that answers with what it received (path, query, headers) and counts its hits, so
a test can tell that a refused request never reached it.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from tests.integration.loopback import serve

from hybridmesh.gateway.config import parse_routes
from hybridmesh.gateway.server import Gateway, GatewaySettings
from hybridmesh.gateway.state import GatewayState
from hybridmesh.store import open_store


@dataclass
class Upstream:
    name: str
    url: str = ""
    hits: list[dict[str, Any]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        seen = {
            "upstream": self.name,
            "path": request.path,
            "query": request.raw_path.partition("?")[2],
            "headers": [[k.lower(), v] for k, v in request.headers.items()],
        }
        self.hits.append(seen)
        return web.json_response(seen)


@asynccontextmanager
async def upstream(name: str = "app") -> AsyncIterator[Upstream]:
    target = Upstream(name)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", target.handle)
    async with serve(app) as url:
        target.url = url
        yield target


@dataclass
class Reply:
    status: int
    headers: Mapping[str, str]
    body: Any

    @property
    def upstream_headers(self) -> dict[str, list[str]]:
        """The headers the upstream saw (an answer from the upstream only)."""
        found: dict[str, list[str]] = {}
        for name, value in self.body["headers"]:
            found.setdefault(name, []).append(value)
        return found


class Rig:
    """A store, a gateway using its routes and keys, and a client."""

    def __init__(self, state: GatewayState, gateway: Gateway, base: str) -> None:
        self.state = state
        self.gateway = gateway
        self.base = base

    async def apply(self, routes_yaml: str) -> None:
        await self.state.apply(parse_routes(routes_yaml, "routes.yaml"))
        await self.reload()

    async def reload(self) -> None:
        """Route with the store's current routes and keys (what a replica's watcher does)."""
        self.gateway.use(await self.state.snapshot())

    async def get(
        self,
        target: str,
        headers: Mapping[str, str] | list[tuple[str, str]] | None = None,
        *,
        source: str | None = None,
    ) -> Reply:
        """GET ``target`` through the gateway, from the address ``source`` when given."""
        connector = aiohttp.TCPConnector(local_addr=(source, 0) if source else None)
        async with (
            aiohttp.ClientSession(connector=connector) as http,
            http.get(self.base + target, headers=headers) as answer,
        ):
            raw = await answer.read()
            body = json.loads(raw) if raw else None
            return Reply(answer.status, answer.headers, body)


@asynccontextmanager
async def gateway_rig(
    tmp_path: Path, settings: GatewaySettings | None = None, *, host: str = "127.0.0.1"
) -> AsyncIterator[Rig]:
    async with AsyncExitStack() as stack:
        store = await open_store(f"sqlite:///{tmp_path / 'mesh.db'}")
        stack.push_async_callback(store.close)
        await store.upgrade()
        gateway = Gateway(settings or GatewaySettings(access_log=False))
        bound, port = await gateway.start(host, 0)
        stack.push_async_callback(gateway.close, 1.0)
        shown = f"[{bound}]" if ":" in bound else bound
        yield Rig(GatewayState(store), gateway, f"http://{shown}:{port}")


def route_yaml(name: str, path: str, backend_url: str, policies: str, extra: str = "") -> str:
    """One route taking ``path`` (a prefix) to ``backend_url``, with ``policies`` (YAML
    lines of the mapping under ``policies:``, indented by eight spaces)."""
    return f"""
  - name: {name}
    match: {{path: {{prefix: {path}}}}}
    backends:
      - {{name: main, url: "{backend_url}", weight: 100}}
{extra}    policies:
{policies}
"""


def problem_of(reply: Reply) -> dict[str, Any]:
    """The problem+json body of a refusal, checked to be one."""
    assert reply.headers["content-type"] == "application/problem+json", reply.headers
    assert reply.body["status"] == reply.status
    assert reply.body["request_id"] == reply.headers["x-request-id"]
    return dict(reply.body)
