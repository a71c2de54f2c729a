"""What the control-plane routes work on, stored on the application under :data:`PLANE`."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from hybridmesh.control.audit import AuditLog
from hybridmesh.control.auth import TokenStore
from hybridmesh.orchestration import Orchestrator
from hybridmesh.store import Store


@dataclass
class ControlPlane:
    """The store (tokens, audit trail, registry, executions) and the engine that starts and
    cancels executions. The engine need not run a worker here: what it starts waits in
    the store for any worker on it, as with ``saga start --detach``."""

    store: Store
    engine: Orchestrator
    tokens: TokenStore
    audit: AuditLog

    @classmethod
    def on(cls, store: Store, engine: Orchestrator) -> ControlPlane:
        return cls(store, engine, TokenStore(store), AuditLog(store))


PLANE = web.AppKey("control_plane", ControlPlane)

__all__ = ["PLANE", "ControlPlane"]
