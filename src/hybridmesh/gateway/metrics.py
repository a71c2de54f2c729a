"""The gateway's Prometheus metrics, per route and backend.

- ``hybridmesh_gateway_requests_total{route,backend,status_class}``: answers by class
  (``2xx`` .. ``5xx``); the gateway's own refusals count under backend ``-``.
- ``hybridmesh_gateway_request_seconds{route,backend}``: time from the request's head to
  the end of its answer.
- ``hybridmesh_gateway_refused_total{route,reason}``: requests the gateway answered
  itself (``unauthorized``, ``forbidden``, ``rate_limited``, ``too_large``, ``no_route``,
  ``fault``, ...).
- ``hybridmesh_gateway_upstream_failures_total{route,backend,reason}``: calls with no usable
  answer (``connect``, ``timeout``, ``reset``, ``breaker_open``, ``ejected``).
- ``hybridmesh_gateway_ejections_total{route,backend}``: outlier ejections.
- ``hybridmesh_gateway_mirror_total{route,outcome}``: mirrored copies by outcome
  (``match``, ``mismatch``, ``dropped``, ``failed``).
- ``hybridmesh_gateway_fail_open_total{route,policy}``: requests a policy let through
  unchecked because what it relies on failed (``rate_limit`` when Redis is unreachable).
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

#: Latency buckets (seconds): fine below 10 ms, where a gateway's added latency lives.
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")


def refusal_reason(status: int) -> str:
    """The ``reason`` label of a request the gateway answered itself with ``status``."""
    return {
        401: "unauthorized",
        403: "forbidden",
        413: "too_large",
        429: "rate_limited",
    }.get(status, f"status_{status}")


class GatewayMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self._requests = Counter(
            "hybridmesh_gateway_requests_total",
            "Requests answered, by route, backend and status class.",
            ["route", "backend", "status_class"],
            registry=self.registry,
        )
        self._seconds = Histogram(
            "hybridmesh_gateway_request_seconds",
            "Seconds from a request's head to the end of its answer.",
            ["route", "backend"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self._refused = Counter(
            "hybridmesh_gateway_refused_total",
            "Requests the gateway answered itself, by reason.",
            ["route", "reason"],
            registry=self.registry,
        )
        self._failures = Counter(
            "hybridmesh_gateway_upstream_failures_total",
            "Calls to a backend that brought no usable answer, by reason.",
            ["route", "backend", "reason"],
            registry=self.registry,
        )
        self._ejections = Counter(
            "hybridmesh_gateway_ejections_total",
            "Backends ejected after consecutive failures.",
            ["route", "backend"],
            registry=self.registry,
        )
        self._mirror = Counter(
            "hybridmesh_gateway_mirror_total",
            "Mirrored copies, by outcome (match, mismatch, dropped, failed).",
            ["route", "outcome"],
            registry=self.registry,
        )
        self._fail_open = Counter(
            "hybridmesh_gateway_fail_open_total",
            "Requests a policy let through unchecked because what it relies on failed.",
            ["route", "policy"],
            registry=self.registry,
        )
        # Looking a child up through .labels() validates and locks each time: keep them.
        self._children: dict[tuple[str, str], tuple[Any, ...]] = {}

    def observe(self, route: str, backend: str, status: int, seconds: float) -> None:
        children = self._children.get((route, backend))
        if children is None:
            children = (
                *(self._requests.labels(route, backend, c) for c in _CLASSES),
                self._seconds.labels(route, backend),
            )
            self._children[(route, backend)] = children
        index = min(max(status // 100, 1), 5) - 1
        children[index].inc()
        children[5].observe(seconds)

    def refused(self, route: str, reason: str) -> None:
        self._refused.labels(route, reason).inc()

    def upstream_failure(self, route: str, backend: str, reason: str) -> None:
        self._failures.labels(route, backend, reason).inc()

    def ejected(self, route: str, backend: str) -> None:
        self._ejections.labels(route, backend).inc()

    def mirrored(self, route: str, outcome: str) -> None:
        self._mirror.labels(route, outcome).inc()

    def failed_open(self, route: str, policy: str) -> None:
        self._fail_open.labels(route, policy).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def sample(self, name: str, /, **labels: str) -> float | None:
        return self.registry.get_sample_value(name, labels)


__all__ = ["BUCKETS", "GatewayMetrics", "refusal_reason"]
