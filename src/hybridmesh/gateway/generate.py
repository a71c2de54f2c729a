"""Routes generated from the service registry: a starting point for the gateway's YAML.

One route per registered service: the path prefix ``/<service>`` (stripped before the
service sees the path) to one backend naming the service, with the resilience the
service's architecture calls for (:func:`~hybridmesh.resilience.policies.default_policy`,
with the service's own ``resilience:`` overrides):

- ``timeouts``: ``read`` is one attempt's timeout, ``total`` the retry deadline, or every
  attempt's timeout together when there is none; ``connect`` at most 2 s;
- ``retries``: the retries after the first attempt (the gateway retries at most 5 times);
- ``breaker``: the breaker's failure rate, minimum calls, window (of calls) and wait;
- a ``traditional-monolith`` is also protected: ``key_auth`` (callers need an API key)
  and a ``rate_limit`` of its rate (calls a second, rounded down; per minute or hour when
  below one a second).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import pydantic

from hybridmesh.core.limits import DAY_SECONDS
from hybridmesh.gateway.config import Breaker, Retries, Route, Timeouts
from hybridmesh.registry.models import Architecture, ServiceDefinition
from hybridmesh.resilience.policies import ResiliencePolicy, apply_overrides, default_policy

#: The longest connect timeout a generated route gets.
CONNECT_SECONDS = 2.0
#: The most retries a route may make (:class:`~hybridmesh.gateway.config.Retries`).
MAX_ROUTE_RETRIES = 5


def service_policy(service: ServiceDefinition) -> ResiliencePolicy:
    """The resilience for calls to ``service``: its architecture's default for queries
    with its own overrides."""
    return apply_overrides(default_policy(service.architecture.value), service.resilience)


def _seconds(value: float) -> float:
    return round(min(value, DAY_SECONDS), 3)


def _rate_limit(rate: float) -> dict[str, Any]:
    """A whole number of calls per second, minute or hour, never above ``rate``."""
    for per, seconds in (("second", 1), ("minute", 60), ("hour", 3600)):
        limit = math.floor(rate * seconds + 1e-9)
        if limit >= 1:
            return {"limit": limit, "per": per}
    return {"limit": 1, "per": "hour"}


def _valid(model: type[pydantic.BaseModel], values: dict[str, Any]) -> dict[str, Any]:
    """``values`` that ``model`` takes one by one (a knob it cannot take keeps its
    default)."""
    kept: dict[str, Any] = {}
    for name, value in values.items():
        try:
            model.model_validate({**kept, name: value})
        except pydantic.ValidationError:
            continue
        kept[name] = value
    return kept


def route_for(service: ServiceDefinition) -> dict[str, Any]:
    """The route document (as YAML would hold it) for one registered service."""
    policy = service_policy(service)
    retries = max(policy.retry.max_attempts - 1, 0)
    deadline = policy.retry.deadline
    total = deadline if deadline is not None else policy.timeout * (retries + 1)
    timeouts = _valid(
        Timeouts,
        {
            "connect": _seconds(min(CONNECT_SECONDS, policy.timeout)),
            "read": _seconds(policy.timeout),
            "total": _seconds(max(total, policy.timeout)),
        },
    )
    breaker_settings = policy.breaker
    breaker: dict[str, Any] = {
        "failure_rate": breaker_settings.failure_rate_threshold,
        "minimum_calls": breaker_settings.minimum_calls,
    }
    if breaker_settings.window_type == "count":
        breaker["window"] = breaker_settings.window_size
    breaker["wait_in_open"] = _seconds(breaker_settings.wait_in_open)
    route: dict[str, Any] = {
        "name": service.name,
        "match": {"path": {"prefix": f"/{service.name}"}},
        "strip_prefix": True,
        "backends": [{"name": service.name, "service": service.name, "weight": 100}],
        "timeouts": timeouts,
        "retries": _valid(Retries, {"attempts": min(retries, MAX_ROUTE_RETRIES)}),
        "breaker": _valid(Breaker, breaker),
    }
    if service.architecture is Architecture.TRADITIONAL_MONOLITH:
        policies: dict[str, Any] = {"key_auth": {}}
        if policy.rate_limit is not None:
            policies["rate_limit"] = _rate_limit(policy.rate_limit.rate)
        route["policies"] = policies
    return route


def routes_from_registry(services: Iterable[ServiceDefinition]) -> list[dict[str, Any]]:
    """A route document per service, by name; each valid as a :class:`Route` (its
    policies aside, which are checked when the file is read)."""
    routes = [route_for(s) for s in sorted(services, key=lambda s: s.name)]
    for route in routes:
        Route.model_validate({**route, "policies": {}})
    return routes


def render_yaml(routes: Sequence[dict[str, Any]]) -> str:
    """The routes file: a ``routes:`` list, in the order given."""
    import yaml

    header = (
        "# Routes generated from the service registry (hybridmesh routes generate\n"
        "# --from-registry): one per service, with its architecture's resilience.\n"
        "# Review, then: hybridmesh routes apply FILE\n"
    )
    return header + yaml.safe_dump(
        {"routes": list(routes)}, sort_keys=False, default_flow_style=None, width=100
    )


__all__ = [
    "render_yaml",
    "route_for",
    "routes_from_registry",
    "service_policy",
]
