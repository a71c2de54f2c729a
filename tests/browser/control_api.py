"""A stand-in for the control-plane API's first resources, on the real store and engine.

The dashboard is tested against the documented contract of ``/api/v1``: bearer tokens with
roles (read < operate), problem details for errors, and these shapes:

- ``GET /services``: ``{"items": [definition, ...]}`` (each as the registry dumps it);
- ``GET /services/{name}``: the definition and its ``links`` (as ``registry show --json``);
- ``GET /registry/graph``: ``{"nodes": [{"name", "architecture", "lifecycle", "version"}],
  "edges": [{"source", "target", "type", "patterns"}]}``;
- ``GET /executions?status=&limit=&cursor=``: ``{"items": [execution, ...],
  "next_cursor": str | null}``, newest first;
- ``GET /executions/{id}``: the execution with its ``history`` (oldest first);
- ``POST /executions/{id}/cancel`` (operate): 202 with the execution; 409 once it ended;
- ``GET /stream``: the real live stream (:mod:`hybridmesh.control.routes.stream`) over the
  app's bus and the engine's store, behind the stand-in's tokens, for the views that
  follow it.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from hybridmesh.api._context import BUS
from hybridmesh.api.problems import problem_response
from hybridmesh.control.declare import Call
from hybridmesh.control.live import LIVE, LiveFeed
from hybridmesh.control.routes.stream import StreamQuery, stream_events
from hybridmesh.core.errors import ValidationError
from hybridmesh.orchestration import Orchestrator
from hybridmesh.orchestration.admin import list_executions, load_execution, load_history
from hybridmesh.registry import ServiceRegistry

READ_TOKEN = "hmt_read_token_for_tests"
OPERATE_TOKEN = "hmt_operate_token_for_tests"
TOKENS = {READ_TOKEN: "read", OPERATE_TOKEN: "operate"}
ROLES = ["read", "operate", "admin"]

REGISTRY = web.AppKey("registry", ServiceRegistry)
ENGINE = web.AppKey("engine", Orchestrator)


def _allowed(request: web.Request, needed: str) -> web.Response | None:
    """None when the request's bearer token has ``needed``; else the 401/403 answer."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    role = TOKENS.get(token) if scheme == "Bearer" else None
    if role is None:
        return problem_response(
            401,
            "the token is missing, unknown or revoked",
            title="Unauthorized",
            headers={"WWW-Authenticate": 'Bearer realm="hybridmesh"'},
        )
    if ROLES.index(role) < ROLES.index(needed):
        return problem_response(403, f"this needs the {needed} role; the token has {role}")
    return None


def _guarded(needed: str, handler: Any) -> Any:
    async def guarded(request: web.Request) -> web.StreamResponse:
        refused = _allowed(request, needed)
        return refused if refused is not None else await handler(request)

    return guarded


async def services(request: web.Request) -> web.Response:
    registry = request.app[REGISTRY]
    return web.json_response({"items": [d.model_dump(mode="json") for d in registry]})


async def service(request: web.Request) -> web.Response:
    registry = request.app[REGISTRY]
    name = request.match_info["name"]
    definition = registry.find(name)
    if definition is None:
        return problem_response(404, f"no service named {name!r}")
    links = [
        {
            "service": dep.service,
            "type": dep.type.value,
            "purpose": dep.purpose,
            "patterns": [p.type.value for p in registry.patterns_between(name, dep.service)]
            if dep.service in registry
            else [],
        }
        for dep in definition.dependencies
    ]
    return web.json_response({**definition.model_dump(mode="json"), "links": links})


async def graph(request: web.Request) -> web.Response:
    registry = request.app[REGISTRY]
    nodes = [
        {
            "name": d.name,
            "architecture": d.architecture.value,
            "lifecycle": d.lifecycle,
            "version": d.version,
        }
        for d in registry
    ]
    edges = [
        {
            "source": d.name,
            "target": dep.service,
            "type": dep.type.value,
            "patterns": [p.type.value for p in registry.patterns_between(d.name, dep.service)],
        }
        for d in registry
        for dep in d.dependencies
        if dep.service in registry
    ]
    return web.json_response({"nodes": nodes, "edges": edges})


async def executions(request: web.Request) -> web.Response:
    # An offset for a cursor: enough for a stand-in over a store nobody writes to meanwhile.
    status = request.query.get("status") or None
    limit = int(request.query.get("limit", "25"))
    offset = int(request.query.get("cursor") or 0)
    store = request.app[ENGINE].store
    found = await list_executions(store, status=status, limit=offset + limit + 1)
    page = found[offset : offset + limit]
    more = len(found) > offset + limit
    return web.json_response(
        {
            "items": [e.to_dict() for e in page],
            "next_cursor": str(offset + limit) if more else None,
        }
    )


async def execution(request: web.Request) -> web.Response:
    store = request.app[ENGINE].store
    execution_id = request.match_info["id"]
    found = await load_execution(store, execution_id)
    history = await load_history(store, execution_id)
    return web.json_response({**found.to_dict(), "history": [h.to_dict() for h in history]})


async def cancel(request: web.Request) -> web.Response:
    try:
        found = await request.app[ENGINE].cancel(request.match_info["id"], "cancelled by a user")
    except ValidationError as ended:
        return problem_response(409, str(ended), title="Conflict")
    return web.json_response(found.to_dict(), status=202)


async def stream(request: web.Request) -> web.StreamResponse:
    query = StreamQuery.model_validate(dict(request.query))
    call = Call(request, plane=None, principal=None, query=query)  # type: ignore[arg-type]
    response = await stream_events(call)
    assert isinstance(response, web.StreamResponse)
    return response


async def _close_feed(app: web.Application) -> None:
    await app[LIVE].close()


def add_control_api(app: web.Application, registry: ServiceRegistry, engine: Orchestrator) -> None:
    """Serve the stand-in under ``/api/v1`` on ``app``."""
    app[REGISTRY] = registry
    app[ENGINE] = engine
    app[LIVE] = LiveFeed(app[BUS], engine.store)
    app.on_shutdown.append(_close_feed)
    app.router.add_get("/api/v1/stream", _guarded("read", stream))
    app.router.add_get("/api/v1/services", _guarded("read", services))
    app.router.add_get("/api/v1/services/{name}", _guarded("read", service))
    app.router.add_get("/api/v1/registry/graph", _guarded("read", graph))
    app.router.add_get("/api/v1/executions", _guarded("read", executions))
    app.router.add_get("/api/v1/executions/{id}", _guarded("read", execution))
    app.router.add_post("/api/v1/executions/{id}/cancel", _guarded("operate", cancel))
