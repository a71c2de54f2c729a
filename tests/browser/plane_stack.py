"""The real control plane on loopback, for the browser tests of its views: the HTTP
application as ``hybridmesh serve`` builds it (:func:`~hybridmesh.api.app.create_app` with
the dashboard and ``ControlPlane.of(runtime)``) over a :class:`~hybridmesh.runtime.Runtime`
on a temporary SQLite store, whose bus is the SQL event log in that store, with one token of
each role. State is made through the domain APIs, on the stack's loop, with
:meth:`PlaneStack.call`.

As :mod:`tests.browser.stack`, it runs on an event loop of its own in a background thread
(the tests drive Playwright's synchronous API from theirs).
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
from hybridmesh.events import EventBus
from hybridmesh.events.envelope import CloudEvent
from hybridmesh.runtime import Runtime
from hybridmesh.store import Store

T = TypeVar("T")


class PlaneStack:
    """The running platform: ``url`` is its base URL, ``runtime`` its parts, ``tokens`` a
    live token of each role, by role."""

    def __init__(self, store_path: Path) -> None:
        self.store_path = store_path
        self.database_url = f"sqlite:///{store_path}"
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="plane", daemon=True)
        self.url = ""
        self.tokens: dict[str, str] = {}

    def call(self, coroutine: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        """Run ``coroutine`` on the stack's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    @property
    def store(self) -> Store:
        return self.runtime.store

    @property
    def bus(self) -> EventBus:
        assert self.runtime.bus is not None
        return self.runtime.bus

    def publish(self, type: str, data: Any = None, subject: str | None = None) -> CloudEvent:
        """Publish an event on the stack's bus; the event as published."""
        event = CloudEvent.create(type, "/orders", data, subject=subject)
        return self.call(self.bus.publish(event))

    def start(self) -> None:
        self.thread.start()
        self.call(self._start())

    def stop(self) -> None:
        self.call(self._stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    async def _start(self) -> None:
        settings = Settings(database_url=self.database_url)
        self.runtime = await Runtime.open(
            settings, exchange_dir=self.store_path.parent / "exchange"
        )
        tokens = TokenStore(self.runtime.store)
        for role in ("read", "operate", "admin"):
            self.tokens[role] = (await tokens.create(role, role))[1]
        await self.bus.start()
        app = create_app(self.bus, settings=settings, control=ControlPlane.of(self.runtime))
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}"

    async def _stop(self) -> None:
        await self.runner.cleanup()
        await self.runtime.close()


__all__ = ["PlaneStack"]
