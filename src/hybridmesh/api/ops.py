"""Operations routes: liveness, readiness and health, and ``GET /metrics``.

- ``GET /livez``: 200 while the process serves HTTP at all. An orchestrator restarts the
  process when this fails; a backend that is away is no reason to.
- ``GET /readyz``: 200 when the bus can publish and consume now: it is running, its
  backend answers a check (a round trip to NATS or the database), and no consumer group's
  latest fetch failed. 503 otherwise: take the process out of rotation until it recovers
  (the backends reconnect by themselves).
- ``GET /healthz``: the same answer as ``/readyz``, for tools that ask one URL.

Readiness and health answer ``{"status": "ok" | "unavailable", "checks": {...}}``: ``bus``
has ``status`` (``ok``, ``stopped`` or ``failing``), ``backend``, and when failing the
``error`` of the backend's check and the ``failing_groups`` with why their fetches fail.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from hybridmesh.api._context import BUS, HUB, METRICS

routes = web.RouteTableDef()


@routes.get("/livez")
async def livez(request: web.Request) -> web.Response:
    """200 ``{"status": "ok"}``: the process serves."""
    return web.json_response({"status": "ok"})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    """200 when the bus can publish and consume now, else 503 with the failing check."""
    return await _readiness(request)


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    """As ``/readyz``: 200 ``{"status": "ok", "checks": {...}}`` or 503 ``unavailable``."""
    return await _readiness(request)


async def _readiness(request: web.Request) -> web.Response:
    health = await request.app[BUS].health()
    bus: dict[str, Any] = {"status": health.status, "backend": health.backend}
    if health.error is not None:
        bus["error"] = health.error
    if health.failing_groups:
        bus["failing_groups"] = health.failing_groups
    checks: dict[str, Any] = {"bus": bus}
    hub = request.app[HUB]
    if hub is not None:
        checks["websocket"] = {"status": "ok", "clients": hub.clients}
    return web.json_response(
        {"status": "ok" if health.ready else "unavailable", "checks": checks},
        status=200 if health.ready else 503,
    )


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    """The Prometheus text exposition of the process's metrics."""
    registry = request.app[METRICS]
    return web.Response(body=registry.render(), headers={"Content-Type": registry.content_type})


__all__ = ["healthz", "livez", "metrics", "readyz", "routes"]
