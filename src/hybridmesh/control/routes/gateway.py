"""``/api/v1/routes``: the gateway's routes, as ``hybridmesh routes list|show|stats|
mismatches|set-weight`` have them, with the same JSON as their ``--json``.

The list is a plain array, as ``routes list --json`` prints it (routes are few: they are
written by hand or generated from the registry). ``stats`` reads the per-second windows
every gateway replica writes, over the last ``window`` (60 s by default, at most an hour):
a view that polls it sees the live request rate, error rate and p95 per backend.
"""

from __future__ import annotations

from typing import Any

import pydantic

from hybridmesh.control.auth import Role
from hybridmesh.control.declare import Call, Operations
from hybridmesh.gateway.state import GatewayState
from hybridmesh.gateway.stats import MAX_WINDOW_SECONDS, parse_duration
from hybridmesh.gateway.summary import route_mismatches, route_stats, route_summary, shown_spec

operations = Operations()

_TAGS = ("routes",)


class RouteName(pydantic.BaseModel):
    name: str = pydantic.Field(max_length=256, description="The route's name.")


class BackendOut(pydantic.BaseModel):
    name: str
    target: str = pydantic.Field(description="Its URL, or `service:<name>`.")
    weight: float


class RouteOut(pydantic.BaseModel):
    """A route as `hybridmesh routes list --json` shows each."""

    name: str
    hosts: list[str]
    path: dict[str, str]
    methods: list[str]
    backends: list[BackendOut]
    sticky: dict[str, Any] | None
    mirror: dict[str, Any] | None
    policies: list[str]
    revision: int
    source: str | None
    updated_at: float


class RouteList(pydantic.RootModel[list[RouteOut]]):
    """The stored routes."""


class RouteDetail(RouteOut):
    """A route and its spec as stored (secrets masked): as `routes show NAME --json`."""

    spec: dict[str, Any]


class StatsQuery(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    window: str = pydantic.Field(
        default="60s", max_length=32, description="How far back: 30s, 5m, 1h (at most 1h)."
    )

    @pydantic.field_validator("window")
    @classmethod
    def _whole_seconds(cls, window: str) -> str:
        seconds = parse_duration(window)
        if not 1 <= seconds <= MAX_WINDOW_SECONDS or seconds != int(seconds):
            raise ValueError(f"{window!r}: a window is whole seconds, 1s to 1h")
        return window

    @property
    def seconds(self) -> int:
        return int(parse_duration(self.window))


class BackendStats(pydantic.BaseModel):
    """One backend over the window, every replica together."""

    backend: str
    requests: int
    errors: int
    error_rate: float
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    mean_ms: float | None
    compared: int
    mismatches: int


class RouteStats(pydantic.BaseModel):
    """A route's backends over the seconds ``since`` (included) to ``until`` (excluded):
    as `routes stats NAME --window W --json`."""

    route: str
    window_seconds: int
    since: int
    until: int
    replicas: int
    requests: int
    backends: list[BackendStats]


class MismatchQuery(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    limit: int = pydantic.Field(default=20, ge=1, le=1_000, description="How many, newest first.")


class MismatchList(pydantic.RootModel[list[dict[str, Any]]]):
    """The mirror mismatches kept for the route, newest first: as `routes mismatches NAME
    --json`."""


class SetWeight(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    backend: str = pydantic.Field(min_length=1, max_length=256)
    percent: float = pydantic.Field(description="0 to 100, in steps of 0.01.")


class Weights(pydantic.BaseModel):
    """The route's weights after the change: as `routes set-weight ... --json`."""

    route: str
    weights: dict[str, float]


@operations.operation(
    "GET",
    "/api/v1/routes",
    summary="List the gateway's routes",
    tags=_TAGS,
    role=Role.READ,
    response=RouteList,
)
async def list_routes(call: Call) -> object:
    """The stored routes, their backends and weights, as `hybridmesh routes list --json`."""
    return [route_summary(s) for s in await GatewayState(call.plane.store).routes()]


@operations.operation(
    "GET",
    "/api/v1/routes/{name}",
    summary="Show a route",
    tags=_TAGS,
    role=Role.READ,
    path_params=RouteName,
    response=RouteDetail,
    errors=(404,),
)
async def get_route(call: Call) -> object:
    """One route, with its spec as stored (secrets masked), as `hybridmesh routes show NAME
    --json`."""
    path: RouteName = call.path
    stored = await GatewayState(call.plane.store).route(path.name)
    return {**route_summary(stored), "spec": shown_spec(stored.route)}


@operations.operation(
    "GET",
    "/api/v1/routes/{name}/stats",
    summary="A route's figures per backend",
    tags=_TAGS,
    role=Role.READ,
    path_params=RouteName,
    query=StatsQuery,
    response=RouteStats,
    errors=(404,),
)
async def get_route_stats(call: Call) -> object:
    """Requests, errors, error rate and p50/p95/p99 latency of the route's backends over
    the last `window`, every gateway replica together, as `hybridmesh routes stats NAME
    --window W --json`. 404 when there is no such route and no figures for it."""
    path: RouteName = call.path
    query: StatsQuery = call.query
    stats = await route_stats(GatewayState(call.plane.store), path.name, query.seconds)
    return stats.to_dict()


@operations.operation(
    "GET",
    "/api/v1/routes/{name}/mismatches",
    summary="A route's mirror mismatches",
    tags=_TAGS,
    role=Role.READ,
    path_params=RouteName,
    query=MismatchQuery,
    response=MismatchList,
    errors=(404,),
)
async def list_route_mismatches(call: Call) -> object:
    """What differed between the primary's answers and a mirrored candidate's, newest
    first, as `hybridmesh routes mismatches NAME --json`."""
    path: RouteName = call.path
    query: MismatchQuery = call.query
    found = await route_mismatches(GatewayState(call.plane.store), path.name, query.limit)
    return [m.to_dict() for m in found]


@operations.operation(
    "POST",
    "/api/v1/routes/{name}/weights",
    summary="Set a backend's weight",
    tags=_TAGS,
    role=Role.OPERATE,
    path_params=RouteName,
    body=SetWeight,
    response=Weights,
    errors=(404,),
)
async def set_route_weight(call: Call) -> object:
    """Give `backend` `percent` of the route's traffic; the other backends share the rest
    in their present proportions, as `hybridmesh routes set-weight NAME BACKEND PERCENT`.
    Every gateway replica picks it up within a second. A migration plan monitoring the
    route puts its own weight back."""
    path: RouteName = call.path
    body: SetWeight = call.body
    route = await GatewayState(call.plane.store).set_weight(path.name, body.backend, body.percent)
    return {"route": path.name, "weights": {b.name: b.weight for b in route.backends}}


__all__ = ["operations"]
