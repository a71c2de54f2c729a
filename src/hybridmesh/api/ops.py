"""Operations routes: ``GET /healthz`` and ``GET /metrics``."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from hybridmesh.api._context import BUS, HUB, METRICS
from hybridmesh.events.bus import EventBus

routes = web.RouteTableDef()


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    """200 ``{"status": "ok", "checks": {...}}`` when the bus is running; 503 with
    ``"status": "unavailable"`` and the failing check otherwise."""
    bus = request.app[BUS]
    running = _is_running(bus)
    checks: dict[str, Any] = {
        "bus": {"status": "ok" if running else "stopped", "backend": bus.backend.name}
    }
    hub = request.app[HUB]
    if hub is not None:
        checks["websocket"] = {"status": "ok", "clients": hub.clients}
    return web.json_response(
        {"status": "ok" if running else "unavailable", "checks": checks},
        status=200 if running else 503,
    )


def _is_running(bus: EventBus) -> bool:
    return bus.running


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    """The Prometheus text exposition of the process's metrics."""
    registry = request.app[METRICS]
    return web.Response(body=registry.render(), headers={"Content-Type": registry.content_type})


__all__ = ["healthz", "metrics", "routes"]
