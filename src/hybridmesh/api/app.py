"""The HTTP application: event ingest, WebSocket fan-out, metrics and health.

Routes live with their module, each a ``web.RouteTableDef`` named ``routes``
(:mod:`~hybridmesh.api.events`, :mod:`~hybridmesh.api.ops`); :func:`create_app` adds every
table in :data:`ROUTE_TABLES`. A new area of the API (the control plane, say) adds its own
module and table there, or mounts a sub-application with ``app.add_subapp(prefix, sub)``;
the middleware of this app (request id, trace, problem details) applies to both. Handlers
reach the bus, hub, metrics and settings through the keys in :mod:`hybridmesh.api._context`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from hybridmesh import dashboard
from hybridmesh.api import events, ops
from hybridmesh.api._context import BUS, HUB, MAX_BODY_BYTES, METRICS, SETTINGS
from hybridmesh.api._middleware import request_context, stamp_request_id
from hybridmesh.api.websocket import WebSocketHub
from hybridmesh.core.settings import Settings
from hybridmesh.events.bus import EventBus
from hybridmesh.observability import MeshMetrics

if TYPE_CHECKING:
    from hybridmesh.control import ControlPlane

#: Every module's route table, in the order they are added.
ROUTE_TABLES: tuple[web.RouteTableDef, ...] = (events.routes, ops.routes)

#: The default largest body of ``POST /events``: 1 MiB.
DEFAULT_MAX_BODY_BYTES = 1024 * 1024


def create_app(
    bus: EventBus,
    *,
    hub: WebSocketHub | None = None,
    metrics: MeshMetrics | None = None,
    settings: Settings | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    control: ControlPlane | None = None,
) -> web.Application:
    """The application, serving:

    - ``POST /events``: CloudEvents in (structured, batch or binary mode), published on
      ``bus``; 202 ``{"accepted", "ids"}``, 400/413 problem details.
    - ``GET /ws/events``: the WebSocket endpoint of ``hub`` (absent without a hub). On
      startup the hub is attached to ``bus``; on shutdown its connections are closed.
    - ``GET /metrics``: ``metrics`` (default: the bus's) in Prometheus text format.
    - ``GET /livez``: 200 while the process serves; ``GET /readyz`` and ``GET /healthz``:
      200 when the bus can publish and consume now, else 503 naming what fails.
    - ``GET /ui/``: the web dashboard (``GET /`` redirects there); see
      :mod:`hybridmesh.dashboard`.
    - with ``control``: the control-plane API under ``/api/v1``, its OpenAPI document at
      ``GET /openapi.json`` and its reference page at ``GET /api/docs`` (see
      :mod:`hybridmesh.control`).

    The app does not start or close ``bus``: whoever owns the bus does
    (:func:`~hybridmesh.api.server.run_server`). Unknown routes answer 404 and wrong methods
    405, as problem details; every response carries ``X-Request-ID``.
    """
    app = web.Application(middlewares=[request_context], client_max_size=max_body_bytes)
    app[BUS] = bus
    app[HUB] = hub
    app[METRICS] = metrics or bus.metrics
    app[SETTINGS] = settings or Settings()
    app[MAX_BODY_BYTES] = max_body_bytes
    for table in ROUTE_TABLES:
        app.add_routes(table)
    if control is not None:
        from hybridmesh.control import mount_control_plane

        mount_control_plane(app, control)
    dashboard.mount(app)
    if hub is not None:
        app.router.add_get("/ws/events", hub.handle, allow_head=False)
        app.on_startup.append(_attach_hub)
        app.on_shutdown.append(_close_hub)
    app.on_response_prepare.append(stamp_request_id)
    return app


async def _attach_hub(app: web.Application) -> None:
    hub = app[HUB]
    if hub is not None:
        await hub.attach(app[BUS])


async def _close_hub(app: web.Application) -> None:
    hub = app[HUB]
    if hub is not None:
        await hub.close()


__all__ = ["DEFAULT_MAX_BODY_BYTES", "ROUTE_TABLES", "create_app"]
