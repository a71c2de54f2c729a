"""How a gateway replica runs: its timeouts, limits and what it believes of its clients."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class GatewaySettings:
    """One replica's settings (the command line and ``HYBRIDMESH_*`` set them)."""

    header_timeout: float = 10.0
    body_timeout: float = 30.0
    #: Largest body of any request, before its route is known (a route may lower it).
    max_body_bytes: int = 1024 * 1024 * 1024
    redis_url: str | None = None
    #: CIDRs of the proxies in front of the gateway, whose ``X-Forwarded-For`` is believed
    #: (see :mod:`hybridmesh.gateway.addresses`).
    trusted_proxies: tuple[str, ...] = ()
    access_log: bool = True
    #: "json": access lines are written by :class:`~hybridmesh.gateway.access_log.AccessLog`
    #: in batches; "text": through :mod:`logging`, as the other lines.
    log_format: str = "json"


__all__ = ["GatewaySettings"]
