"""A served control plane on loopback: the real app over a runtime on SQLite or PostgreSQL,
with one token of each role."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from tests.integration.loopback import serve

from hybridmesh.api import create_app
from hybridmesh.control import ControlPlane, TokenStore
from hybridmesh.core.clock import SYSTEM_CLOCK, Clock
from hybridmesh.core.settings import Settings
from hybridmesh.events.backends.memory import MemoryEventBackend
from hybridmesh.events.bus import EventBus
from hybridmesh.registry import ServiceRegistry
from hybridmesh.runtime import Runtime


@dataclass
class Plane:
    url: str
    http: aiohttp.ClientSession
    runtime: Runtime
    app: web.Application
    #: A live token of each role, by role.
    tokens: dict[str, str]

    def auth(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}

    async def call(
        self, method: str, path: str, role: str | None = "admin", **options: Any
    ) -> tuple[int, Any]:
        """``method path`` with the token of ``role`` (none for None): status and JSON."""
        headers = {**(self.auth(role) if role else {}), **options.pop("headers", {})}
        async with self.http.request(method, self.url + path, headers=headers, **options) as r:
            return r.status, await r.json(content_type=None)


OpenPlane = Callable[..., AbstractAsyncContextManager[Plane]]


@pytest.fixture
def open_plane(database_url: str, tmp_path: Path) -> OpenPlane:
    """``async with open_plane(registry=..., clock=...) as plane``: a control plane on the
    test's database."""

    @asynccontextmanager
    async def opened(
        registry: ServiceRegistry | None = None, clock: Clock = SYSTEM_CLOCK, events: bool = False
    ) -> AsyncIterator[Plane]:
        """``events=True`` serves the runtime's own bus (the SQL log in the test's database,
        as `hybridmesh serve` opens it), so the CLI sees the same dead letters."""
        settings = Settings(database_url=database_url)
        runtime = await Runtime.open(
            settings,
            events=events,
            registry=registry,
            clock=clock,
            exchange_dir=tmp_path / "exchange",
        )
        try:
            tokens = TokenStore(runtime.store)
            secrets = {
                role: (await tokens.create(role, role))[1] for role in ("read", "operate", "admin")
            }
            bus = runtime.bus or EventBus(MemoryEventBackend())
            app = create_app(bus, settings=settings, control=ControlPlane.of(runtime))
            async with serve(app) as url, aiohttp.ClientSession() as http:
                yield Plane(url, http, runtime, app, secrets)
        finally:
            await runtime.close()

    return opened


@pytest.fixture
async def plane(open_plane: OpenPlane) -> AsyncIterator[Plane]:
    async with open_plane() as opened:
        yield opened
