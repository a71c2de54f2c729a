"""One hybridmesh process, assembled from settings: the store, the registry, the hybrid
client, the bus, the review queue, the batch integration, the functions and the engine.

The CLI's ``worker``, ``saga start`` and ``workflow start`` and the demo build the same
pieces the same way through :class:`Runtime`, so a definition that runs in one runs in all.
"""

from __future__ import annotations

import importlib
import inspect
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from hybridmesh.batch import (
    DEFAULT_EXCHANGE_DIR,
    BatchIntegration,
    BatchTarget,
    BatchTransport,
    review_retry_handler,
)
from hybridmesh.client import HybridClient
from hybridmesh.contracts.recorder import recorder_from_settings
from hybridmesh.core.clock import SYSTEM_CLOCK, Clock
from hybridmesh.core.errors import ConfigurationError, ValidationError
from hybridmesh.core.settings import Settings
from hybridmesh.events import EventBus, EventTransport, open_bus
from hybridmesh.functions import FunctionRegistry, FunctionTriggers
from hybridmesh.observability.rollup import CallRollup
from hybridmesh.orchestration import Orchestrator, StepRunner
from hybridmesh.orchestration.catalog import DefinitionCatalog
from hybridmesh.orchestration.loader import load_definitions
from hybridmesh.orchestration.plan import Plan
from hybridmesh.registry import RegistryCatalog, ServiceRegistry
from hybridmesh.review import ReviewItem, ReviewQueue, dead_letter_retry
from hybridmesh.store import Store, open_ready_store


@dataclass
class Runtime:
    """The parts of a running process. Open with :meth:`open`, close with :meth:`close`
    (or ``async with``)."""

    settings: Settings
    store: Store
    registry: ServiceRegistry
    client: HybridClient
    bus: EventBus | None
    catalog: DefinitionCatalog
    review: ReviewQueue
    batch: BatchIntegration
    functions: FunctionRegistry
    triggers: FunctionTriggers
    engine: Orchestrator

    @classmethod
    async def open(
        cls,
        settings: Settings | None = None,
        *,
        events: bool = True,
        functions: FunctionRegistry | None = None,
        registry: ServiceRegistry | None = None,
        exchange_dir: Path | str | None = None,
        batch_targets: Sequence[BatchTarget] = (),
        clock: Clock = SYSTEM_CLOCK,
        worker_id: str | None = None,
        max_executions: int = 200,
        lease_seconds: float = 30.0,
        create: bool = True,
    ) -> Runtime:
        """Open the store (and upgrade its schema), read the registry (the stored one, else
        ``settings.registry_path``), and wire the rest. ``events=False`` leaves the bus out:
        the engine's events then wait in the outbox for a worker that has one.
        ``batch_targets`` set how legacy batches go out (formats, cron schedules, limits).
        ``create=False`` is for commands that only read: the database is not written to (a
        missing one, or one without the schema, reads as empty; one whose schema is older
        raises ``StoreError``: see :func:`~hybridmesh.store.open_ready_store`)."""
        settings = settings or Settings()
        store = await open_ready_store(settings.database_url, create=create)
        try:
            if registry is None:
                registry = await RegistryCatalog(store).registry()
                if not len(registry) and settings.registry_path:
                    registry = ServiceRegistry.from_path(settings.registry_path)
            bus = await open_bus(settings, store=store) if events else None
        except BaseException:
            await store.close()
            raise
        review = ReviewQueue(store, clock=clock)
        folder = exchange_dir or os.environ.get("HYBRIDMESH_EXCHANGE_DIR") or DEFAULT_EXCHANGE_DIR
        batch = BatchIntegration(
            store, exchange_dir=Path(folder), review=review, clock=clock, targets=batch_targets
        )
        functions = functions or FunctionRegistry(clock=clock)
        # A process that only reads writes no counts (its store may be read-only).
        rollup = (
            CallRollup(store, retention_days=settings.call_rollup_retention_days)
            if create
            else None
        )
        client = HybridClient(
            registry, clock=clock, rollup=rollup, recorder=recorder_from_settings(settings)
        )
        if rollup is not None:
            rollup.start()
        client.add_transport(BatchTransport(batch))
        if bus is not None:
            client.add_transport(EventTransport(bus))
        catalog = DefinitionCatalog(store, clock)
        runner = StepRunner(client, registry, functions=functions, batch=batch)
        engine = Orchestrator(
            store,
            catalog,
            runner,
            bus=bus,
            review=review,
            clock=clock,
            worker_id=worker_id,
            max_executions=max_executions,
            lease_seconds=lease_seconds,
        )
        triggers = FunctionTriggers(functions, bus=bus, clock=clock)
        runtime = cls(
            settings,
            store,
            registry,
            client,
            bus,
            catalog,
            review,
            batch,
            functions,
            triggers,
            engine,
        )
        runtime._register_retries()
        return runtime

    def _register_retries(self) -> None:
        engine = self.engine

        async def retry_execution(item: ReviewItem) -> None:
            if not item.origin_ref:
                raise ValidationError(f"review item {item.id} names no execution")
            await engine.retry_compensations(item.origin_ref)

        self.review.register_retry("saga", retry_execution)
        self.review.register_retry("workflow", retry_execution)
        self.review.register_retry("batch", review_retry_handler(self.batch))
        if self.bus is not None:
            self.review.register_retry("dlq", dead_letter_retry(self.bus))

    async def load_definitions(self, path: Path | str) -> list[Plan]:
        """Validate the definitions at ``path`` (a file or a folder) against the registry,
        with every check ``hybridmesh definitions validate`` makes (each plan's trip through
        its stored form included), and register each as a version in the catalog. Raises
        ``ValidationError`` naming file, line and field, and registers nothing, when any of
        them is invalid."""
        loaded = load_definitions(path, registry=self.registry)
        loaded.raise_for_errors()
        plans = []
        for item in loaded.definitions:
            plans.append(
                await self.catalog.register_definition(
                    item.definition, registry=self.registry, source=f"{item.file}:{item.line}"
                )
            )
        return plans

    def use_functions(self, spec: str) -> None:
        """Import ``MODULE:CALLABLE`` and call it with the function registry (and the
        triggers, if it takes two arguments), so it registers functions (and their event or
        cron triggers). Raises
        ``ConfigurationError`` when it cannot be imported."""
        module_name, _, attribute = spec.partition(":")
        try:
            setup = getattr(importlib.import_module(module_name), attribute or "register")
        except (ImportError, AttributeError) as error:
            raise ConfigurationError(f"--functions {spec!r}: {error}") from None
        positional = [
            p
            for p in inspect.signature(setup).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
        ]
        takes_triggers = len(positional) >= 2
        setup(self.functions, self.triggers) if takes_triggers else setup(self.functions)

    async def close(self) -> None:
        """Stop the worker, the triggers and the batch scheduler, close the client, the bus
        and the store. Idempotent."""
        await self.engine.stop()
        await self.triggers.stop()
        await self.batch.close()
        await self.functions.close()
        await self.client.close()
        if self.client.rollup is not None:
            await self.client.rollup.close()
        if self.bus is not None:
            await self.bus.close()
        await self.store.close()

    async def __aenter__(self) -> Runtime:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


__all__ = ["Runtime"]
