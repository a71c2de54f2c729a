"""Mounting the control plane on the HTTP application, and its self-description.

:data:`OPERATION_TABLES` lists every resource's operations; :func:`mount_control_plane`
adds their routes to an application, with ``GET /openapi.json`` (the OpenAPI 3.1 document
of them all) and ``GET /api/docs`` (a page that reads that document and shows it), both
open to anyone. A new resource adds its module under :mod:`hybridmesh.control.routes` and
its table here: its routes and its documentation come from the same declarations.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

from aiohttp import web

from hybridmesh.api._context import BUS
from hybridmesh.control.declare import Call, Operation, Operations
from hybridmesh.control.live import LIVE, LiveFeed
from hybridmesh.control.openapi import openapi_document
from hybridmesh.control.plane import PLANE, ControlPlane
from hybridmesh.control.routes import (
    audit,
    batches,
    breakers,
    dead_letters,
    executions,
    flags,
    gateway,
    migrations,
    registry,
    replications,
    review,
    slo,
    stream,
)

meta = Operations()

#: Each tag of the document, and what it covers.
TAGS = {
    "registry": "The service registry: services, their graph, pattern recommendations.",
    "executions": "Saga and workflow executions: list, inspect, start, cancel.",
    "dead-letters": "Events the bus gave up on: list, inspect, replay, purge.",
    "review": "The manual review queue: list, inspect, retry, resolve, discard.",
    "batch": "Records queued for legacy systems and the runs that delivered them.",
    "breakers": "The circuit breakers of the serving process.",
    "migrations": "Migration plans: where each stands, its history, a person's controls.",
    "routes": "The gateway's routes: weights, live figures per backend, mirror mismatches.",
    "flags": "Feature flags: list, inspect, evaluate, set.",
    "live": "Live bus events and execution changes, as server-sent events.",
    "slo": "Service level objectives: SLI, error budget and burn rate per window.",
    "replications": "Replications and bridges: status, lag, latest reconciliation run.",
    "audit": "Who wrote what through this API.",
    "meta": "This API's own description.",
}


@meta.operation(
    "GET",
    "/openapi.json",
    summary="The OpenAPI document",
    tags=("meta",),
    role=None,
    media_schema={"type": "object"},
)
async def get_openapi(call: Call) -> object:
    """This API's OpenAPI 3.1 document, made from the same declarations as its routes."""
    return openapi()


@meta.operation(
    "GET",
    "/api/docs",
    summary="The API reference page",
    tags=("meta",),
    role=None,
    media="text/html",
    media_schema={"type": "string"},
)
async def get_api_docs(call: Call) -> object:
    """A page that reads `/openapi.json` and lists the operations by tag, with their
    parameters, bodies and answers."""
    return web.Response(text=_docs_page(), content_type="text/html", charset="utf-8")


#: Every table of operations, in the order the document lists them.
OPERATION_TABLES: tuple[Operations, ...] = (
    registry.operations,
    executions.operations,
    dead_letters.operations,
    review.operations,
    batches.operations,
    breakers.operations,
    migrations.operations,
    gateway.operations,
    flags.operations,
    stream.operations,
    slo.operations,
    replications.operations,
    audit.operations,
    meta,
)


def all_operations() -> list[Operation]:
    return [op for table in OPERATION_TABLES for op in table.operations]


@cache
def openapi() -> dict[str, Any]:
    """The OpenAPI document of every operation (made once: the declarations are fixed)."""
    return openapi_document(all_operations(), tags=TAGS)


@cache
def _docs_page() -> str:
    return resources.files("hybridmesh.control").joinpath("static/docs.html").read_text("utf-8")


def mount_control_plane(app: web.Application, plane: ControlPlane) -> None:
    """Serve the control plane from ``app`` (before it starts), working on ``plane``."""
    app[PLANE] = plane
    app[LIVE] = LiveFeed(app[BUS], plane.store)
    app.on_shutdown.append(_close_live_feed)
    for table in OPERATION_TABLES:
        app.add_routes(table.routes())


async def _close_live_feed(app: web.Application) -> None:
    """End every event stream as the server stops, so none holds the shutdown up."""
    await app[LIVE].close()


__all__ = ["OPERATION_TABLES", "TAGS", "all_operations", "mount_control_plane", "openapi"]
