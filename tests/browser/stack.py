"""The platform as ``hybridmesh serve`` runs it, on loopback, for the browser tests of the
services and executions views.

The browser tests drive Playwright's synchronous API from the test thread, so the server
runs on an event loop of its own in a background thread: the real HTTP application
(:func:`~hybridmesh.api.app.create_app`, with the dashboard and the control plane), an
engine with a worker on a temporary SQLite store holding the shop's registry, and the
services the executions' steps call. :meth:`Stack.call` runs a coroutine there;
:attr:`Stack.tokens` holds a live token of each role.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web
from tests.integration.orchestration.conftest import Operations, until

from hybridmesh.api.app import create_app
from hybridmesh.client import HybridClient
from hybridmesh.control import ControlPlane, TokenStore
from hybridmesh.events import EventBus
from hybridmesh.events.backends.sql import SqlEventBackend
from hybridmesh.orchestration import (
    Completion,
    ErrorHandling,
    Kind,
    Operation,
    Orchestrator,
    Plan,
    PlanStep,
    RetrySpec,
    StepRunner,
)
from hybridmesh.orchestration.catalog import DefinitionCatalog
from hybridmesh.registry import RegistryCatalog, ServiceDefinition, ServiceRegistry
from hybridmesh.review import ReviewQueue
from hybridmesh.store import Store, open_store

T = TypeVar("T")

FAST = RetrySpec(max_attempts=3, backoff_ms=30, multiplier=2.0)

#: (name, architecture, patterns, dependencies as (service, type)).
SERVICES: list[tuple[str, str, list[str], list[tuple[str, str]]]] = [
    ("storefront", "microservice", ["rest"], [("users", "sync"), ("orders", "sync")]),
    ("users", "microservice", ["rest", "graphql"], []),
    (
        "orders",
        "modular-monolith",
        ["rest", "events"],
        [("payments", "sync"), ("inventory", "async"), ("erp", "batch")],
    ),
    ("payments", "microservice", ["rest", "events"], [("fraud-check", "sync")]),
    ("fraud-check", "serverless", ["rest"], []),
    ("inventory", "modular-monolith", ["rest", "events"], []),
    ("erp", "traditional-monolith", ["rest", "batch"], []),
]


def registry_at(base_url: str) -> ServiceRegistry:
    """The shop's registry, every service answering at ``base_url``."""
    return ServiceRegistry(
        ServiceDefinition.model_validate(
            {
                "name": name,
                "architecture": architecture,
                "base_url": base_url,
                "version": "v1",
                "team": "shop",
                "integration_patterns": [{"type": p} for p in patterns],
                "dependencies": [{"service": s, "type": t} for s, t in dependencies],
            }
        )
        for name, architecture, patterns, dependencies in SERVICES
    )


def _step(step_id: str, service: str, after: str | None, **options: Any) -> PlanStep:
    return PlanStep(
        step_id=step_id,
        name=step_id,
        service=service,
        architecture=None,
        operation=Operation(endpoint=f"/operations/{step_id}", payload={}),
        compensation=Operation(endpoint=f"/operations/undo-{step_id}", payload={}),
        dependencies=(after,) if after else (),
        retry=FAST,
        **options,
    )


#: Reserve, charge, confirm: each step undone by compensation when a later one fails.
ORDER = Plan(
    Kind.SAGA,
    "order",
    1,
    (
        _step("reserve", "inventory", None),
        _step("charge", "payments", "reserve"),
        _step("confirm", "users", "charge"),
    ),
    ErrorHandling.COMPENSATION,
)

#: Reserve, then wait for the carrier's event: it runs until an event or a cancel ends it.
SHIPMENT = Plan(
    Kind.SAGA,
    "shipment",
    1,
    (
        _step("reserve", "inventory", None),
        _step(
            "ship",
            "orders",
            "reserve",
            completion=Completion.EVENT,
            completion_timeout_ms=600_000,
        ),
    ),
    ErrorHandling.COMPENSATION,
)


class Stack:
    """The running platform: ``url`` is its base URL, ``engine`` its orchestrator,
    ``client`` the client its steps call through."""

    def __init__(self, store_path: Path) -> None:
        self.store_path = store_path
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="stack", daemon=True)
        self.ops = Operations()
        self.url = ""
        self.tokens: dict[str, str] = {}
        self._closers: list[Callable[[], Awaitable[Any]]] = []  # in the order opened

    def call(self, coroutine: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        """Run ``coroutine`` on the stack's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def start(self) -> None:
        self.thread.start()
        self.call(self._start())

    def stop(self) -> None:
        self.call(self._stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    async def _serve(self, app: web.Application) -> str:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self._closers.append(runner.cleanup)
        return f"http://127.0.0.1:{runner.addresses[0][1]}"

    async def _start(self) -> None:
        operations = web.Application()
        operations.router.add_route("*", "/{tail:.*}", self.ops.handle)
        ops_url = await self._serve(operations)
        self.store: Store = await open_store(f"sqlite:///{self.store_path}")
        self._closers.append(self.store.close)
        await self.store.upgrade()
        self.registry = registry_at(ops_url)
        await RegistryCatalog(self.store).save(
            self.registry.get(name) for name in self.registry.names()
        )
        tokens = TokenStore(self.store)
        for role in ("read", "operate", "admin"):
            self.tokens[role] = (await tokens.create(role, role))[1]
        client = HybridClient(self.registry)
        self._closers.append(client.close)
        #: The client the steps call through, whose breakers the control plane reports.
        self.client = client
        bus = EventBus(SqlEventBackend(self.store, poll_interval=0.02), owns_backend=False)
        await bus.start()
        self._closers.append(bus.close)
        self.engine = Orchestrator(
            self.store,
            DefinitionCatalog(self.store),
            StepRunner(client, self.registry),
            bus=bus,
            review=ReviewQueue(self.store),
            poll_interval=0.05,
        )
        await self.engine.register(ORDER)
        await self.engine.register(SHIPMENT)
        await self.engine.start_worker()
        review = ReviewQueue(self.store)
        app = create_app(
            bus, control=ControlPlane.on(self.store, self.engine, review=review, client=client)
        )
        self.url = await self._serve(app)

    async def _stop(self) -> None:
        await self.engine.stop(grace=1.0)
        for close in reversed(self._closers):
            await close()

    async def run_order(self, order_id: str) -> str:
        """Run an order saga to its end; its id."""
        execution_id = await self.engine.start_saga("order", {"order_id": order_id})
        await self.engine.wait(execution_id, timeout=20)
        return execution_id

    async def start_shipment(self, order_id: str) -> str:
        """Start a shipment saga and return its id once it waits for the carrier."""
        execution_id = await self.engine.start_saga("shipment", {"order_id": order_id})

        async def waiting() -> bool:
            return (await self.engine.get(execution_id)).step("ship").status == "waiting"

        await until(waiting, 20)
        return execution_id
