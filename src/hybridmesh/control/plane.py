"""What the control-plane routes work on, stored on the application under :data:`PLANE`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiohttp import web

from hybridmesh.control.audit import AuditLog
from hybridmesh.control.auth import TokenStore
from hybridmesh.orchestration import Orchestrator
from hybridmesh.review import ReviewQueue
from hybridmesh.store import Store

if TYPE_CHECKING:
    from hybridmesh.batch import BatchIntegration
    from hybridmesh.client import HybridClient
    from hybridmesh.runtime import Runtime


@dataclass
class ControlPlane:
    """The store (tokens, audit trail, registry, executions) and the engine that starts and
    cancels executions. The engine need not run a worker here: what it starts waits in
    the store for any worker on it, as with ``saga start --detach``.

    ``review`` is the review queue whose retry handlers retry items; a plane made without
    one reads and closes items but retries none (409). ``batch`` is the batch integration
    whose records and runs it shows (None: one on the store, with the default exchange
    folder). ``client`` is the serving process's client, whose circuit breakers it reports
    (None: no breakers are known). The dead letters belong to the app's bus."""

    store: Store
    engine: Orchestrator
    tokens: TokenStore
    audit: AuditLog
    review: ReviewQueue
    batch: BatchIntegration | None = None
    client: HybridClient | None = None

    @classmethod
    def on(
        cls,
        store: Store,
        engine: Orchestrator,
        *,
        review: ReviewQueue | None = None,
        batch: BatchIntegration | None = None,
        client: HybridClient | None = None,
    ) -> ControlPlane:
        return cls(
            store,
            engine,
            TokenStore(store),
            AuditLog(store),
            review if review is not None else ReviewQueue(store),
            batch,
            client,
        )

    @classmethod
    def of(cls, runtime: Runtime) -> ControlPlane:
        """The plane over a process's runtime: its store, engine, review queue (with the
        retry handlers of every origin), batch integration and client."""
        return cls.on(
            runtime.store,
            runtime.engine,
            review=runtime.review,
            batch=runtime.batch,
            client=runtime.client,
        )


PLANE = web.AppKey("control_plane", ControlPlane)

__all__ = ["PLANE", "ControlPlane"]
