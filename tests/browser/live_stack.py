"""The real control plane on loopback, for the views that read the live stream, the SLO
report and the replications: ``hybridmesh serve``'s application with the control plane
(:class:`~hybridmesh.control.ControlPlane` over a :class:`~hybridmesh.runtime.Runtime` on a
temporary SQLite store, with its event bus), and a live token of each role.

As :class:`tests.browser.stack.Stack`, it runs on an event loop of its own in a background
thread; :meth:`LiveStack.call` runs a coroutine there.
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
from hybridmesh.events.bus import EventBus
from hybridmesh.events.envelope import CloudEvent
from hybridmesh.runtime import Runtime
from hybridmesh.store import Store

T = TypeVar("T")


class LiveStack:
    """The served app: ``url``, ``tokens`` by role, the runtime's ``store`` and ``bus``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="live", daemon=True)
        self.url = ""
        self.tokens: dict[str, str] = {}

    def call(self, coroutine: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def start(self) -> None:
        self.thread.start()
        self.call(self._start())

    def stop(self) -> None:
        self.call(self._stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    @property
    def store(self) -> Store:
        return self.runtime.store

    @property
    def bus(self) -> EventBus:
        assert self.runtime.bus is not None
        return self.runtime.bus

    def publish(self, type: str, data: Any = None, subject: str | None = None) -> CloudEvent:
        event = CloudEvent.create(type, "/orders", data, subject=subject)
        return self.call(self.bus.publish(event))

    async def _start(self) -> None:
        settings = Settings(database_url=f"sqlite:///{self.folder / 'mesh.db'}")
        self.runtime = await Runtime.open(settings, exchange_dir=self.folder / "exchange")
        await self.bus.start()
        tokens = TokenStore(self.store)
        self.tokens = {
            role: (await tokens.create(f"browser-{role}", role))[1]
            for role in ("read", "operate", "admin")
        }
        app = create_app(
            self.bus,
            settings=settings,
            control=ControlPlane.on(self.store, self.runtime.engine),
        )
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}"

    async def _stop(self) -> None:
        await self.runner.cleanup()
        await self.runtime.close()
