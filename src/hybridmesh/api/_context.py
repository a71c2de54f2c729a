"""What the routes of the API share, stored on the application and the request."""

from __future__ import annotations

from aiohttp import web

from hybridmesh.api.websocket import WebSocketHub
from hybridmesh.core.settings import Settings
from hybridmesh.events.bus import EventBus
from hybridmesh.observability import MeshMetrics

BUS = web.AppKey("bus", EventBus)
HUB: web.AppKey[WebSocketHub | None] = web.AppKey("hub")
METRICS = web.AppKey("metrics", MeshMetrics)
SETTINGS = web.AppKey("settings", Settings)
#: The largest request body ``POST /events`` reads, in bytes.
MAX_BODY_BYTES = web.AppKey("max_body_bytes", int)

#: The request's ``X-Request-ID``: the caller's, or a new one.
REQUEST_ID = web.RequestKey("request_id", str)

__all__ = ["BUS", "HUB", "MAX_BODY_BYTES", "METRICS", "REQUEST_ID", "SETTINGS"]
