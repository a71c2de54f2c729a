"""What a gateway replica routes with: the routes, services and keys at one revision.

Kept apart from :mod:`hybridmesh.gateway.state` (which reads and writes them in the store)
so that the proxy, the policies and the mirror can name it without depending on the store.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from hybridmesh.gateway.routing import RouteTable


def key_digest(secret: str) -> str:
    """How a key is stored: its SHA-256. Keys are 256 random bits, so a fast hash is
    enough (nothing to guess), and the stored digest cannot be used as a key."""
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class ApiKey:
    """An API key as stored (never the key itself)."""

    id: str
    consumer: str
    route: str | None
    prefix: str
    created_at: float
    revoked_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "consumer": self.consumer,
            "route": self.route,
            "prefix": self.prefix,
            "created_at": self.created_at,
            "revoked_at": self.revoked_at,
            "status": "revoked" if self.revoked_at is not None else "active",
        }


@dataclass(frozen=True)
class Snapshot:
    """Everything a replica routes with, at one revision."""

    revision: int
    table: RouteTable
    #: Registry services' base URLs, for backends that name a service.
    services: dict[str, str]
    #: Active keys by digest.
    keys: dict[str, ApiKey]

    @classmethod
    def empty(cls) -> Snapshot:
        return cls(-1, RouteTable([]), {}, {})


__all__ = ["ApiKey", "Snapshot", "key_digest"]
