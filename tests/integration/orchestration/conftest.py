"""Real services on loopback for the engine's tests, and an engine wired to them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from tests.integration.loopback import serve

from hybridmesh.client import HybridClient
from hybridmesh.events import EventBus
from hybridmesh.events.backends.sql import SqlEventBackend
from hybridmesh.observability import configure_tracing, shutdown_tracing
from hybridmesh.orchestration import Orchestrator, StepRunner
from hybridmesh.orchestration.catalog import DefinitionCatalog
from hybridmesh.registry import ServiceDefinition, ServiceRegistry
from hybridmesh.review import ReviewQueue
from hybridmesh.store import Store, open_store


async def until(condition: Callable[[], Awaitable[bool] | bool], seconds: float = 10.0) -> None:
    """Wait until ``condition`` holds (it may be a coroutine function); fail after
    ``seconds``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        value = condition()
        if not isinstance(value, bool):
            value = await value
        if value:
            return
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {seconds} s")
        await asyncio.sleep(0.02)


@dataclass
class Call:
    path: str
    key: str | None
    execution: str | None
    step: str | None
    traceparent: str | None
    body: Any


@dataclass
class Operations:
    """``POST /operations/{name}`` and any other path: records each call and answers from
    a script per path (status codes, then 200), after an optional delay per path, and
    once the path's gate, if any, is open."""

    calls: list[Call] = field(default_factory=list)
    script: dict[str, list[int]] = field(default_factory=dict)
    delays: dict[str, float] = field(default_factory=dict)
    answers: dict[str, Callable[[Any], Any]] = field(default_factory=dict)
    gates: dict[str, asyncio.Event] = field(default_factory=dict)

    def fail(self, path: str, *statuses: int) -> None:
        self.script.setdefault(path, []).extend(statuses)

    def paths(self) -> list[str]:
        return [c.path for c in self.calls]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.json() if request.can_read_body else None
        path = request.path
        self.calls.append(
            Call(
                path,
                request.headers.get("Idempotency-Key"),
                request.headers.get("X-Execution-ID"),
                request.headers.get("X-Step-ID"),
                request.headers.get("traceparent"),
                body,
            )
        )
        delay = self.delays.get(path)
        if delay:
            await asyncio.sleep(delay)
        gate = self.gates.get(path)
        if gate is not None:
            await gate.wait()
        statuses = self.script.get(path)
        if statuses:
            status = statuses.pop(0)
            return web.json_response(
                {"title": f"scripted {status}"},
                status=status,
                content_type="application/problem+json",
            )
        answer = self.answers.get(path)
        return web.json_response(answer(body) if answer else {"ok": True, "path": path})


@pytest.fixture
async def ops() -> AsyncIterator[tuple[Operations, str]]:
    operations = Operations()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", operations.handle)
    async with serve(app) as url:
        yield operations, url


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Spans recorded while the test runs; tracing is shut down afterwards."""
    exporter = InMemorySpanExporter()
    configure_tracing(exporter=exporter)
    try:
        yield exporter
    finally:
        shutdown_tracing()


def registry_at(base_url: str) -> ServiceRegistry:
    def service(name: str, architecture: str) -> ServiceDefinition:
        return ServiceDefinition.model_validate(
            {"name": name, "architecture": architecture, "base_url": base_url, "version": "v1"}
        )

    return ServiceRegistry(
        [
            service("users", "microservice"),
            service("payments", "microservice"),
            service("inventory", "modular-monolith"),
            service("erp", "traditional-monolith"),
            service("transform", "serverless"),
        ]
    )


@dataclass
class Rig:
    store: Store
    ops: Operations
    registry: ServiceRegistry
    client: HybridClient
    catalog: DefinitionCatalog
    review: ReviewQueue
    bus: EventBus
    engines: list[Orchestrator] = field(default_factory=list)

    def engine(self, **options: Any) -> Orchestrator:
        runner = StepRunner(self.client, self.registry, **options.pop("runner", {}))
        options.setdefault("poll_interval", 0.05)
        engine = Orchestrator(
            self.store, self.catalog, runner, bus=self.bus, review=self.review, **options
        )
        self.engines.append(engine)
        return engine


@pytest.fixture
async def rig(database_url: str, ops: tuple[Operations, str]) -> AsyncIterator[Rig]:
    operations, base_url = ops
    store = await open_store(database_url)
    await store.upgrade()
    registry = registry_at(base_url)
    client = HybridClient(registry)
    bus = EventBus(SqlEventBackend(store, poll_interval=0.02), owns_backend=False)
    await bus.start()
    rig = Rig(
        store, operations, registry, client, DefinitionCatalog(store), ReviewQueue(store), bus
    )
    try:
        yield rig
    finally:
        for engine in rig.engines:
            await engine.stop(grace=1.0)
        await bus.close()
        await client.close()
        await store.close()
