"""What ``hybridmesh routes list|show|stats|mismatches --json`` print, and the control
plane's ``/api/v1/routes`` answers: one function each, so the two cannot differ."""

from __future__ import annotations

from typing import Any

from hybridmesh.gateway.config import Route
from hybridmesh.gateway.mirror import Mismatch
from hybridmesh.gateway.state import GatewayState, StoredRoute
from hybridmesh.gateway.stats import WindowStats


def route_summary(stored: StoredRoute) -> dict[str, Any]:
    route = stored.route
    path = route.match.path
    return {
        "name": route.name,
        "hosts": list(route.match.hosts),
        "path": path.model_dump(exclude_none=True),
        "methods": list(route.match.methods),
        "backends": [
            {
                "name": b.name,
                "target": b.url or f"service:{b.service}",
                "weight": b.weight,
            }
            for b in route.backends
        ],
        "sticky": route.sticky.model_dump(exclude_none=True) if route.sticky else None,
        "mirror": route.mirror.model_dump(mode="json") if route.mirror else None,
        "policies": sorted(route.policies),
        "revision": stored.revision,
        "source": stored.source,
        "updated_at": stored.updated_at,
    }


#: Policy settings never printed: shared secrets (a jwt route's HS256 ``secret``).
_SECRET_SETTINGS = frozenset({"secret"})


def shown_spec(route: Route) -> dict[str, Any]:
    """The route as stored, with its secrets masked: `routes show` output is copied into
    tickets and chats, and a secret belongs in the environment (``secret_env``)."""
    spec = route.model_dump(mode="json", exclude_defaults=True)
    for settings in spec.get("policies", {}).values():
        if isinstance(settings, dict):
            for name in _SECRET_SETTINGS & settings.keys():
                settings[name] = "********"
    return spec


async def route_stats(state: GatewayState, name: str, seconds: int) -> WindowStats:
    """Route ``name``'s backends over the last ``seconds``; ``NotFoundError`` when there is
    no such route and no figures for it."""
    stats = await state.window_stats(name, seconds)
    if not stats.backends:
        await state.route(name)  # no route either: NotFoundError
    return stats


async def route_mismatches(state: GatewayState, name: str, limit: int) -> list[Mismatch]:
    """The newest mirror mismatches kept for route ``name``; ``NotFoundError`` when there
    is no such route and nothing kept for it."""
    found = await state.mismatches(name, limit)
    if not found:
        await state.route(name)  # no route either: NotFoundError
    return found


__all__ = ["route_mismatches", "route_stats", "route_summary", "shown_spec"]
