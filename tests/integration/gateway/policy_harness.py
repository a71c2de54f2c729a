"""Real gateways in front of real upstreams, for the policy tests.

:class:`Upstream` is an aiohttp server on a free loopback port that records every request it
gets (so a test can show that a refused request never reached it) and answers as the test
says. :func:`gateways` stores routes in a SQLite store in the test's folder and starts any
number of in-process gateway replicas on them, like ``hybridmesh gateway`` does.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web
from multidict import CIMultiDictProxy
from tests.integration.loopback import serve

from hybridmesh.gateway.config import parse_routes
from hybridmesh.gateway.server import Gateway, GatewaySettings
from hybridmesh.gateway.state import GatewayState
from hybridmesh.store import open_store

Answerer = Callable[[web.Request, bytes], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Seen:
    """A request as the upstream got it."""

    method: str
    path: str
    #: The query string as it came, still percent-encoded.
    query: str
    headers: CIMultiDictProxy[str]
    body: bytes
    content_length: int | None


async def _echo(request: web.Request, body: bytes) -> web.StreamResponse:
    return web.json_response({"path": request.path})


@dataclass
class Upstream:
    """Records what reaches it; ``answer`` makes each answer (default: a small JSON)."""

    answer: Answerer = _echo
    seen: list[Seen] = field(default_factory=list)
    url: str = ""

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.seen.append(
            Seen(
                request.method,
                request.path,
                request.raw_path.partition("?")[2],
                request.headers,
                body,
                request.content_length,
            )
        )
        return await self.answer(request, body)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Upstream]:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        async with serve(app) as url:
            self.url = url
            yield self


@dataclass
class Gateways:
    """Replicas routing with the same store, and that store."""

    state: GatewayState
    replicas: list[Gateway]
    urls: list[str]

    @property
    def url(self) -> str:
        return self.urls[0]

    async def reload(self) -> None:
        """Every replica routes with the store's current revision."""
        snapshot = await self.state.snapshot()
        for gateway in self.replicas:
            gateway.use(snapshot)


@asynccontextmanager
async def gateways(
    tmp_path: Path, routes: str, *, replicas: int = 1, redis_url: str | None = None
) -> AsyncIterator[Gateways]:
    """``replicas`` gateways on 127.0.0.1, routing with ``routes`` (YAML)."""
    async with AsyncExitStack() as stack:
        store = await open_store(f"sqlite:///{tmp_path / 'gateway.db'}")
        stack.push_async_callback(store.close)
        await store.upgrade()
        state = GatewayState(store)
        await state.apply(parse_routes(routes, "routes.yaml"))
        snapshot = await state.snapshot()
        running = Gateways(state, [], [])
        for _ in range(replicas):
            gateway = Gateway(GatewaySettings(redis_url=redis_url, access_log=False))
            gateway.use(snapshot)
            host, port = await gateway.start("127.0.0.1", 0)
            stack.push_async_callback(gateway.close, 1.0)
            running.replicas.append(gateway)
            running.urls.append(f"http://{host}:{port}")
        yield running
