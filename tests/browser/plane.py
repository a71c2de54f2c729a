"""The real control plane on loopback, for the browser tests of its views.

As ``hybridmesh serve`` serves it: :func:`~hybridmesh.api.app.create_app` with the
dashboard and the control plane over a :class:`~hybridmesh.runtime.Runtime` on a temporary
SQLite store, on an event loop of its own in a background thread (the tests drive
Playwright's synchronous API from theirs). A token of each role is made in the store; state
is made through the domain APIs with :meth:`RealPlane.call`.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web

from hybridmesh.api.app import create_app
from hybridmesh.control import ControlPlane, TokenStore
from hybridmesh.core.settings import Settings
from hybridmesh.events.backends.memory import MemoryEventBackend
from hybridmesh.events.bus import EventBus
from hybridmesh.runtime import Runtime
from hybridmesh.store import Store

T = TypeVar("T")


class RealPlane:
    """The running plane: ``url`` its base URL, ``tokens`` a live token per role."""

    def __init__(self, store_path: Path) -> None:
        self.store_path = store_path
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="plane", daemon=True)
        self.url = ""
        self.tokens: dict[str, str] = {}

    @property
    def store(self) -> Store:
        return self.runtime.store

    def call(self, coroutine: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        """Run ``coroutine`` on the plane's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def start(self) -> None:
        self.thread.start()
        self.call(self._start())

    def stop(self) -> None:
        self.call(self._stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    async def _start(self) -> None:
        settings = Settings(database_url=f"sqlite:///{self.store_path}")
        self.runtime = await Runtime.open(
            settings, events=False, exchange_dir=self.store_path.parent / "exchange"
        )
        tokens = TokenStore(self.runtime.store)
        for role in ("read", "operate", "admin"):
            self.tokens[role] = (await tokens.create(role, role))[1]
        app = create_app(
            EventBus(MemoryEventBackend()),
            settings=settings,
            control=ControlPlane.on(self.runtime.store, self.runtime.engine),
        )
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}"

    async def _stop(self) -> None:
        await self.runner.cleanup()
        await self.runtime.close()
