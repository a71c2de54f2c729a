"""The policy base: what a route does to a request besides sending it on, like Kong's plugins.

Each kind lives in its own module here, registers itself with
:func:`~hybridmesh.gateway.config.register_policy` (its settings model, its place in the
order, its builder), and is documented in docs/gateway.md. A route's policies are built
once per route revision and run in their kinds' order: first who may call (IP
restriction, then authentication), then how much (rate limits), then what is changed
(transformations, fault injection). On the way back the answer passes them in the reverse
order (the last to touch the request is the first to see the answer), so a pair of
conversions nests: the XML policy turns a JSON request into XML after the request
transformer ran, and turns the XML answer back into JSON before the response transformer
runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hybridmesh.gateway.http import Answer, Headers, ProxyRequest, ReplaceAnswer

if TYPE_CHECKING:
    from hybridmesh.gateway.metrics import GatewayMetrics
    from hybridmesh.gateway.snapshot import Snapshot

#: Where each kind runs (lower first).
ORDER_IP = 10
ORDER_AUTH = 20
ORDER_RATE = 30
ORDER_TRANSFORM = 40
ORDER_FAULTS = 50


@dataclass(frozen=True)
class PolicyContext:
    """What a policy may use besides its settings."""

    route: str
    #: The gateway's current routes and keys (changes live).
    snapshot: Callable[[], Snapshot]
    #: ``HYBRIDMESH_REDIS_URL``, when rate limits are shared through Redis.
    redis_url: str | None = None
    #: The proxies whose ``X-Forwarded-For`` is believed.
    trusted_proxies: tuple[str, ...] = ()
    #: The gateway's metrics (policies count what they let through unchecked).
    metrics: GatewayMetrics | None = None
    #: What a kind keeps across route revisions (policies are rebuilt on every change of
    #: routes or keys): local rate limit counters, the Redis connection pool. One per
    #: gateway; keys are the kind's own.
    shared: dict[str, Any] = field(default_factory=dict)


class Policy:
    """One step of a route's pipeline."""

    #: Set by policies that change the answer's body: the gateway then reads the whole
    #: answer before it sends it on.
    transforms_response_body: bool = False
    #: Set by policies that need the request's whole body (all do today: bodies are read
    #: before the pipeline runs, within the route's ``max_body_bytes``).
    reads_request_body: bool = False
    #: Set by policies that act once the backend is chosen (:meth:`before_send`).
    acts_before_send: bool = False

    async def request(self, request: ProxyRequest) -> Answer | None:
        """Look at (and maybe change) ``request``; an :class:`Answer` refuses it."""
        return None

    async def before_send(self, request: ProxyRequest, backend: str) -> Answer | None:
        """Called once ``backend`` (its name) is chosen, just before the request goes to
        it (only when :attr:`acts_before_send`); an :class:`Answer` stops it there."""
        return None

    def response_head(self, request: ProxyRequest, status: int, headers: Headers) -> None:
        """Change the answer's headers in place before they go to the client."""

    def response_body(
        self, request: ProxyRequest, status: int, headers: Headers, body: bytes
    ) -> bytes:
        """The answer's new body (only when :attr:`transforms_response_body`); ``headers``
        may still be changed (they go out after the body is known). Raise
        :class:`ReplaceAnswer` to answer with something else."""
        return body

    async def close(self) -> None:
        """Release what the policy holds (connections)."""


Builder = Callable[[Any, PolicyContext], Policy]
_BUILDERS: dict[str, Builder] = {}


def register_builder(name: str, builder: Builder) -> None:
    _BUILDERS[name] = builder


def build_policy(name: str, settings: Any, context: PolicyContext) -> Policy:
    return _BUILDERS[name](settings, context)


__all__ = [
    "ORDER_AUTH",
    "ORDER_FAULTS",
    "ORDER_IP",
    "ORDER_RATE",
    "ORDER_TRANSFORM",
    "Policy",
    "PolicyContext",
    "ReplaceAnswer",
    "build_policy",
    "register_builder",
]
