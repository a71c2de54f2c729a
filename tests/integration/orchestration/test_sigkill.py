"""Real ``hybridmesh worker`` processes on PostgreSQL: one killed with SIGKILL mid-step, and
one stopped with SIGTERM mid-step. The service runs in the test's process and records every
call with its idempotency key and arrival time."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from tests.integration.orchestration.conftest import until

from hybridmesh.core.ids import idempotency_key
from hybridmesh.core.settings import Settings
from hybridmesh.orchestration import Status
from hybridmesh.registry import RegistryCatalog, ServiceDefinition
from hybridmesh.runtime import Runtime
from hybridmesh.store import open_store

pytestmark = pytest.mark.postgres

SAGA = "two-workers"
LEASE = 1.0  # seconds: the workers' --lease


@dataclass
class Call:
    step: str
    key: str | None
    at: float  # epoch seconds when the call arrived


@dataclass
class Shop:
    """``POST /operations/{step}``: records the call, then answers after the delay held for
    the step's first call, if any."""

    calls: list[Call] = field(default_factory=list)
    hold: dict[str, float] = field(default_factory=dict)
    closing: asyncio.Event = field(default_factory=asyncio.Event)  # ends every delay

    def steps(self) -> list[str]:
        return [c.step for c in self.calls]

    def of(self, step: str) -> list[Call]:
        return [c for c in self.calls if c.step == step]

    async def handle(self, request: web.Request) -> web.Response:
        step = request.match_info["step"]
        self.calls.append(Call(step, request.headers.get("Idempotency-Key"), time.time()))
        delay = self.hold.pop(step, 0.0)
        if delay:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.closing.wait(), delay)
        return web.json_response({"ok": True, "step": step})


@dataclass
class Worker:
    name: str
    process: asyncio.subprocess.Process
    output: Path

    def log(self) -> str:
        return self.output.read_text(errors="replace")[-3000:]


@dataclass
class Mesh:
    """The database, the definitions folder, the service, and the worker processes."""

    database_url: str
    folder: Path
    shop: Shop
    runtime: Runtime
    workers: list[Worker] = field(default_factory=list)

    async def worker(self, name: str) -> Worker:
        """Start ``hybridmesh worker`` as ``name`` and wait until it runs."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("HYBRIDMESH_")}
        env["HYBRIDMESH_DATABASE_URL"] = self.database_url
        env["HYBRIDMESH_EXCHANGE_DIR"] = str(self.folder / "exchange")
        output = self.folder / f"{name}.log"
        with output.open("wb") as sink:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "hybridmesh",
                "worker",
                "--definitions",
                str(self.folder / "definitions"),
                "--lease",
                str(LEASE),
                "--worker-id",
                name,
                stdout=sink,
                stderr=asyncio.subprocess.STDOUT,
                env=env,
                cwd=self.folder,
            )
        worker = Worker(name, process, output)
        self.workers.append(worker)

        def started() -> bool:
            return b" running" in output.read_bytes() or process.returncode is not None

        try:
            await until(started)
        except AssertionError:
            raise AssertionError(f"{name} did not start:\n{worker.log()}") from None
        assert process.returncode is None, f"{name} exited at start:\n{worker.log()}"
        return worker

    async def lease(self, execution_id: str) -> tuple[str | None, float | None]:
        row = await self.runtime.store.fetch_one(
            "SELECT lease_owner, lease_until FROM orch_executions WHERE id = ?", execution_id
        )
        assert row is not None
        return row["lease_owner"], row["lease_until"]


def _definition() -> dict[str, Any]:
    def step(step_id: str, undo: str | None = None) -> dict[str, Any]:
        written: dict[str, Any] = {
            "step_id": step_id,
            "service_name": "shop",
            "operation": step_id,
            "payload": {"order_id": "{{ input.order_id }}"},
            "timeout": 10_000,
            "retry_policy": {"max_attempts": 3, "backoff_ms": 50},
        }
        if undo:
            written["compensation_operation"] = undo
        return written

    return {
        "saga_type": SAGA,
        "steps": [step("reserve", "release"), step("charge", "refund"), step("confirm")],
    }


@pytest.fixture
async def mesh(postgres_url: str, tmp_path: Path) -> AsyncIterator[Mesh]:
    shop = Shop()
    app = web.Application()
    app.router.add_post("/operations/{step}", shop.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    base_url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    store = await open_store(postgres_url)
    try:
        await store.upgrade()
        service = {
            "name": "shop",
            "architecture": "microservice",
            "base_url": base_url,
            "version": "v1",
        }
        await RegistryCatalog(store).save([ServiceDefinition.model_validate(service)])
    finally:
        await store.close()
    (tmp_path / "definitions").mkdir()
    (tmp_path / "definitions" / f"{SAGA}.yaml").write_text(yaml.safe_dump(_definition()))
    runtime = await Runtime.open(
        Settings(database_url=postgres_url, events_url=None), exchange_dir=tmp_path / "exchange"
    )
    mesh = Mesh(postgres_url, tmp_path, shop, runtime)
    try:
        await runtime.load_definitions(tmp_path / "definitions")
        yield mesh
    finally:
        for worker in mesh.workers:
            if worker.process.returncode is None:
                worker.process.kill()
                await worker.process.wait()
        await runtime.close()
        shop.closing.set()
        await runner.cleanup()


async def test_a_killed_workers_step_runs_again_elsewhere_with_the_same_key(mesh: Mesh) -> None:
    mesh.shop.hold["charge"] = 30.0  # the worker that makes this call never hears back
    workers = {w.name: w for w in [await mesh.worker("worker-a"), await mesh.worker("worker-b")]}
    execution_id = await mesh.runtime.engine.start("saga", SAGA, {"order_id": "o-1"})
    await until(lambda: "charge" in mesh.shop.steps())
    owner, _ = await mesh.lease(execution_id)
    assert owner in workers, f"the execution is held by {owner!r}"
    victim = workers.pop(owner)
    victim.process.send_signal(signal.SIGKILL)
    await victim.process.wait()
    _, lease_until = await mesh.lease(execution_id)  # nobody renews it any more
    assert lease_until is not None

    done = await mesh.runtime.engine.wait(execution_id, timeout=15)

    survivor = next(iter(workers.values()))
    assert done.status is Status.COMPLETED, survivor.log()
    assert mesh.shop.steps() == ["reserve", "charge", "charge", "confirm"]
    first, again = mesh.shop.of("charge")
    assert first.key == again.key == idempotency_key(execution_id, "charge")
    assert again.at >= lease_until - 0.05  # taken over only once the lease had expired
    assert mesh.shop.of("reserve")[0].key == idempotency_key(execution_id, "reserve")
    history = [(h.type, h.step_id) for h in await mesh.runtime.engine.history(execution_id)]
    assert ("step.recovered", "charge") in history
    assert history.count(("step.completed", "reserve")) == 1
    survivor.process.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(survivor.process.wait(), 15) == 0, survivor.log()


async def test_a_worker_stopped_with_sigterm_finishes_its_step_and_releases(mesh: Mesh) -> None:
    mesh.shop.hold["charge"] = 2.0
    first = await mesh.worker("worker-a")
    execution_id = await mesh.runtime.engine.start("saga", SAGA, {"order_id": "o-2"})
    await until(lambda: "charge" in mesh.shop.steps())
    first.process.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(first.process.wait(), 15) == 0, first.log()

    stopped = await mesh.runtime.engine.get(execution_id)
    assert stopped.status is Status.RUNNING
    assert stopped.step("charge").status == "completed"
    assert stopped.step("confirm").status == "pending"
    assert stopped.lease_owner is None
    assert mesh.shop.steps() == ["reserve", "charge"]

    second = await mesh.worker("worker-b")
    done = await mesh.runtime.engine.wait(execution_id, timeout=15)
    assert done.status is Status.COMPLETED, second.log()
    assert mesh.shop.steps() == ["reserve", "charge", "confirm"]
    second.process.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(second.process.wait(), 15) == 0, second.log()
