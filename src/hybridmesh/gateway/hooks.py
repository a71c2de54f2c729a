"""The hooks a gateway replica runs with: mirroring and stats windows, both in the store.

:class:`~hybridmesh.gateway.server.Hooks` does nothing; :class:`GatewayHooks` mirrors
routes that say ``mirror:`` (:mod:`hybridmesh.gateway.mirror`) and counts every request in
the per-second windows of :mod:`hybridmesh.gateway.stats`. Both write to the store in the
background, never on a request's path::

    metrics = GatewayMetrics()
    hooks = GatewayHooks(store, metrics)
    gateway = Gateway(settings, metrics=metrics, hooks=hooks)
    hooks.start()
    ...
    await gateway.close()
    await hooks.close()
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from hybridmesh.gateway.metrics import GatewayMetrics
from hybridmesh.gateway.mirror import MirrorHub, RouteMirror
from hybridmesh.gateway.server import Hooks
from hybridmesh.gateway.stats import WindowRecorder
from hybridmesh.store import Store

if TYPE_CHECKING:
    from hybridmesh.gateway.config import Route
    from hybridmesh.gateway.server import RouteRuntime


class GatewayHooks(Hooks):
    """Mirroring and stats windows for one replica."""

    def __init__(
        self,
        store: Store,
        metrics: GatewayMetrics,
        *,
        replica: str | None = None,
        clock: Callable[[], float] = time.time,
        flush_seconds: float | None = None,
    ) -> None:
        self.windows = (
            WindowRecorder(store, replica=replica, clock=clock)
            if flush_seconds is None
            else WindowRecorder(store, replica=replica, clock=clock, flush_seconds=flush_seconds)
        )
        self.mirrors = MirrorHub(
            store,
            metrics,
            clock=clock,
            observe=self.windows.observe,
            compared=self.windows.compared,
        )

    def build_mirror(self, route: Route, runtime: RouteRuntime) -> RouteMirror | None:
        return self.mirrors.build(route, runtime)

    def observe(self, route: str, backend: str, status: int, seconds: float) -> None:
        self.windows.observe(route, backend, status, seconds)

    def start(self) -> None:
        """Begin writing stats windows (call on the event loop the gateway serves on)."""
        self.windows.start()

    async def close(self) -> None:
        """After the gateway closed: end the copies, write what is left."""
        await self.mirrors.close()
        await self.windows.close()


__all__ = ["GatewayHooks"]
