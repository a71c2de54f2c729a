"""Saga engine throughput and per-step overhead, against the bare calls and DBOS Transact.

A saga here is five calls, one after another, to one local service (its own process,
aiohttp on loopback) that answers ``POST /operations/{op}`` at once with a small JSON body.
Four rows run the same sagas against the same service:

- raw: the five POSTs through one shared aiohttp session, nothing saved (the ceiling);
- engine, SQLite and engine, PostgreSQL: a five-step saga definition run by the
  :class:`~hybridmesh.orchestration.Orchestrator` in this process, wired as
  ``hybridmesh worker`` wires it (:class:`~hybridmesh.runtime.Runtime`: the store, the
  hybrid client, the engine's events in the SQL log of the same database, appended with
  the engine's own writes); each saga is started with ``start_saga`` and awaited with
  ``wait``;
- DBOS: a DBOS Transact workflow of five ``@DBOS.step()`` steps, each the same POST through
  one shared aiohttp session, with its system database on a fresh database of the same
  PostgreSQL server.

The process's garbage collector is tuned as ``hybridmesh worker`` tunes its own
(:func:`~hybridmesh.core.process.tune_gc`), for every row alike.

Every row gets a fresh database, runs ``WARMUP`` sagas unmeasured, then ``SERIAL`` sagas one
at a time (latency without queueing), then ``count`` sagas with ``CONCURRENCY`` in flight
(throughput, p50/p95 latency). The rows but DBOS then run ``count`` more with ``CAPACITY``
in flight, as many as one worker drives by default. A row's peak throughput is the higher
of its two rates: the raw calls keep their process busy from a few dozen in flight, but a
saga holds its place in flight across six commits, so the engine needs more sagas in flight
to keep its process as busy; at 64 it still waits on commits part of the time. Afterwards
the durable rows are checked in their databases: every saga ended completed, with five
recorded steps.

A machine shared with other work drifts in speed, here by up to a third from one row to
the next and by more over minutes, so a ratio of figures measured apart measures the drift
as much as the rows. In full mode the four quick rows (raw, hybrid client, SQLite,
PostgreSQL) therefore run in ``ROUNDS`` rounds of alternating order, each round a few
seconds per row, and a ratio to raw is the median over the rounds of the row's peak
throughput over raw's in the same round (the ratio at ``CONCURRENCY`` is reported too).
Each row shows its median round. DBOS, some fifty times slower, runs its own rounds
afterwards and shows the better one.

Each measured phase also records the CPU time spent per saga by this process, by the
service and, for the rows on PostgreSQL, by the database server (``benchmarks/_cpu.py``):
with two or four cores shared by the three, that is what bounds a row's rate.

Per-step overhead is (row p50 latency - raw p50 latency) / 5. Goals: engine peak throughput
>= 0.5x raw's in the same rounds, and the engine on PostgreSQL >= 1.0x DBOS on the same
server (at ``CONCURRENCY`` in flight).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from rich.progress import Progress, TaskID

from benchmarks._cpu import CpuSample
from benchmarks._postgres import fresh_database
from benchmarks._report import (
    LatencySummary,
    alternating,
    failed_round,
    figure,
    machine,
    median_rounds,
    paired_ratios,
    ratio,
    write_json,
    write_section,
)
from hybridmesh.client import CommunicationRequest, HybridClient
from hybridmesh.core.process import tune_gc
from hybridmesh.core.settings import Settings
from hybridmesh.observability import configure_tracing
from hybridmesh.orchestration import RetryPolicy, SagaDefinition, SagaStep, Status
from hybridmesh.registry import ServiceDefinition, ServiceRegistry
from hybridmesh.runtime import Runtime

STEPS = 5
CONCURRENCY = 64
#: The second load of the quick rows: as many sagas in flight as one worker drives by
#: default (``Orchestrator(max_executions=200)``). A row's throughput is its peak of the two.
CAPACITY = 200
PEAK = "peak_throughput"  # a round's figure that ratios to raw and to the client compare
WARMUP = 50
SERIAL = 200  # sagas run one at a time, per row (quick mode: half)
ROUNDS = 5  # of the quick rows, in full mode; quick mode runs one
DBOS_ROUNDS = 2  # full mode; quick mode runs one
SAGA_TIMEOUT = 60.0  # seconds one saga may take before its row fails
SERVICE = "bench-service"
SAGA_TYPE = "bench-order"
#: The rows whose database is the PostgreSQL server: their server CPU is measured.
_ON_POSTGRESQL = frozenset({"postgresql", "dbos"})
#: The rows also measured with ``CAPACITY`` in flight (DBOS, some fifty times slower, not).
_AT_CAPACITY = frozenset({"raw", "client", "sqlite", "postgresql"})
RAW_GOAL = 0.5
DBOS_GOAL = 1.0

ROWS = {
    "raw": "raw aiohttp (5 POSTs, no durability)",
    "client": "hybrid client (the same 5 calls, no durability)",
    "sqlite": "engine, SQLite",
    "postgresql": "engine, PostgreSQL",
    "dbos": "DBOS Transact, PostgreSQL",
}

# The service, run in its own process: it prints its port, then answers until killed.
_SERVICE = """
import asyncio, sys
from aiohttp import web

async def operation(request):
    await request.read()
    return web.json_response({"ok": True, "operation": request.match_info["op"]})

async def main():
    app = web.Application()
    app.router.add_post("/operations/{op}", operation)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
    await site.start()
    print(runner.addresses[0][1], flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


@contextlib.asynccontextmanager
async def _service() -> AsyncIterator[tuple[str, int]]:
    """Start the service in a child process; yield its base URL and process id."""
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _SERVICE, stdout=asyncio.subprocess.PIPE
    )
    assert child.stdout is not None
    try:
        port = int(await asyncio.wait_for(child.stdout.readline(), 30))
        yield f"http://127.0.0.1:{port}", child.pid
    finally:
        if child.returncode is None:
            child.kill()
        await child.wait()


def _session() -> aiohttp.ClientSession:
    """What the raw and DBOS rows call through: one pooled session, as the client has."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=256),
        timeout=aiohttp.ClientTimeout(total=None),
        skip_auto_headers=("User-Agent",),
    )


async def _post(session: aiohttp.ClientSession, url: str, order_id: str, key: str) -> Any:
    async with session.post(
        url, json={"order_id": order_id}, headers={"Idempotency-Key": key}
    ) as response:
        response.raise_for_status()
        return await response.json()


# -- the rows ------------------------------------------------------------------------------

Saga = Callable[[int], Awaitable[None]]


@dataclass
class _Subject:
    """One row's saga, and how to check afterwards what its database recorded."""

    saga: Saga
    verify: Callable[[int], Awaitable[dict[str, Any]]] | None = None


@contextlib.asynccontextmanager
async def _raw(base_url: str) -> AsyncIterator[_Subject]:
    async with _session() as session:

        async def saga(n: int) -> None:
            order_id = f"o-{n}"
            for step in range(1, STEPS + 1):
                await _post(session, f"{base_url}/operations/step-{step}", order_id, f"{n}:{step}")

        yield _Subject(saga)


def _registry(base_url: str) -> ServiceRegistry:
    return ServiceRegistry(
        [
            ServiceDefinition.model_validate(
                {
                    "name": SERVICE,
                    "architecture": "microservice",
                    "base_url": base_url,
                    "version": "v1",
                    "capabilities": {"synchronous": True},
                }
            )
        ]
    )


@contextlib.asynccontextmanager
async def _client(base_url: str) -> AsyncIterator[_Subject]:
    """The calls the engine's steps make, through the hybrid client, with nothing saved:
    the difference to the engine rows is what durability costs."""
    async with HybridClient(_registry(base_url)) as client:

        async def saga(n: int) -> None:
            order_id = f"o-{n}"
            for step in range(1, STEPS + 1):
                request = CommunicationRequest(
                    type="command",
                    method="POST",
                    endpoint=f"/operations/step-{step}",
                    payload={"order_id": order_id},
                    idempotency_key=f"{n}:{step}",
                    timeout=10.0,
                    retries=0,
                    pattern="rest",
                )
                await client.communicate("hybridmesh-orchestrator", SERVICE, request)

        yield _Subject(saga)


def _definition() -> SagaDefinition:
    return SagaDefinition(
        saga_type=SAGA_TYPE,
        steps=tuple(
            SagaStep(
                step_id=f"step-{step}",
                service_name=SERVICE,
                operation=f"step-{step}",
                payload={"order_id": "{{ input.order_id }}"},
                timeout=10_000,
                retry_policy=RetryPolicy(max_attempts=3, backoff_ms=100),
            )
            for step in range(1, STEPS + 1)
        ),
    )


@contextlib.asynccontextmanager
async def _engine(base_url: str, database_url: str, folder: Path) -> AsyncIterator[_Subject]:
    registry = _registry(base_url)
    settings = Settings(database_url=database_url, events_url=None)
    runtime = await Runtime.open(settings, registry=registry, exchange_dir=folder / "exchange")
    try:
        await runtime.catalog.register_definition(_definition(), registry=registry)
        if runtime.bus is not None:
            await runtime.bus.start()
        engine = runtime.engine
        await engine.start_worker()

        async def saga(n: int) -> None:
            execution_id = await engine.start_saga(SAGA_TYPE, {"order_id": f"o-{n}"})
            done = await engine.wait(execution_id, timeout=SAGA_TIMEOUT)
            if done.status is not Status.COMPLETED:
                raise RuntimeError(f"saga {execution_id} ended {done.status.value}: {done.error}")

        async def verify(expected: int) -> dict[str, Any]:
            rows = await runtime.store.fetch_all(
                "SELECT status, COUNT(*) AS n FROM orch_executions GROUP BY status"
            )
            steps = await runtime.store.fetch_value(
                "SELECT COUNT(*) FROM orch_history WHERE type = 'step.completed'"
            )
            return _verdict(expected, {r["status"]: int(r["n"]) for r in rows}, int(steps))

        yield _Subject(saga, verify)
    finally:
        await runtime.close()


@contextlib.asynccontextmanager
async def _dbos(base_url: str, database_url: str) -> AsyncIterator[_Subject]:
    from dbos import DBOS, DBOSConfig

    session = _session()

    @DBOS.step()
    async def call(operation: str, order_id: str) -> Any:
        key = f"{DBOS.workflow_id}:{operation}"
        return await _post(session, f"{base_url}/operations/{operation}", order_id, key)

    @DBOS.workflow()
    async def order(order_id: str) -> None:
        for step in range(1, STEPS + 1):
            await call(f"step-{step}", order_id)

    config: DBOSConfig = {
        "name": "hybridmesh-bench",
        "system_database_url": database_url,
        "log_level": "WARNING",
    }
    loop = asyncio.get_running_loop()
    try:
        DBOS(config=config)
        DBOS.launch()

        async def saga(n: int) -> None:
            handle = await DBOS.start_workflow_async(order, f"o-{n}")
            await handle.get_result()

        async def verify(expected: int) -> dict[str, Any]:
            import asyncpg

            conn = await asyncpg.connect(database_url)
            try:
                rows = await conn.fetch(
                    "SELECT status, COUNT(*) AS n FROM dbos.workflow_status GROUP BY status"
                )
                steps = await conn.fetchval("SELECT COUNT(*) FROM dbos.operation_outputs")
            finally:
                await conn.close()
            counts = {str(r["status"]).lower(): int(r["n"]) for r in rows}
            if "success" in counts:
                counts["completed"] = counts.pop("success")
            return _verdict(expected, counts, int(steps))

        yield _Subject(saga, verify)
    finally:
        await session.close()
        DBOS.destroy(destroy_registry=True)
        # DBOS made its (now shut down) executor this loop's default; give the loop its own.
        loop.set_default_executor(ThreadPoolExecutor())


def _verdict(expected: int, statuses: dict[str, int], steps: int) -> dict[str, Any]:
    completed = statuses.get("completed", 0)
    return {
        "statuses": statuses,
        "recorded_steps": steps,
        "ok": completed == expected and steps == expected * STEPS,
    }


@contextlib.asynccontextmanager
async def _open_row(name: str, base_url: str) -> AsyncIterator[_Subject]:
    """Row ``name``'s saga, with what it runs on (a fresh database for the durable rows)."""
    if name == "raw":
        async with _raw(base_url) as subject:
            yield subject
    elif name == "client":
        async with _client(base_url) as subject:
            yield subject
    elif name == "sqlite":
        with tempfile.TemporaryDirectory(prefix="hm-bench-") as folder:
            url = f"sqlite:///{Path(folder) / 'mesh.db'}"
            async with _engine(base_url, url, Path(folder)) as subject:
                yield subject
    elif name == "postgresql":
        with tempfile.TemporaryDirectory(prefix="hm-bench-") as folder:
            async with (
                fresh_database() as url,
                _engine(base_url, url, Path(folder)) as subject,
            ):
                yield subject
    else:
        async with fresh_database() as url, _dbos(base_url, url) as subject:
            yield subject


# -- measuring -----------------------------------------------------------------------------


async def _measure(
    saga: Saga, first: int, count: int, concurrency: int, progress: Progress, task: TaskID
) -> LatencySummary:
    """Run sagas ``first`` .. ``first + count - 1`` with ``concurrency`` in flight."""
    latencies: list[float] = []
    following, end = first, first + count

    async def worker() -> None:
        nonlocal following
        while following < end:
            n = following
            following += 1
            began = time.perf_counter()
            await asyncio.wait_for(saga(n), SAGA_TIMEOUT)
            latencies.append(time.perf_counter() - began)
            progress.advance(task)

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return LatencySummary.of(latencies, time.perf_counter() - began)


def _sagas_of(name: str, count: int, serial: int) -> int:
    """How many sagas one round of row ``name`` runs, unmeasured ones included."""
    return WARMUP + serial + count * (2 if name in _AT_CAPACITY else 1)


async def _run_row(
    name: str,
    base_url: str,
    count: int,
    serial: int,
    progress: Progress,
    task: TaskID,
    service_pid: int,
) -> dict[str, Any]:
    server = name in _ON_POSTGRESQL
    async with _open_row(name, base_url) as subject:
        await _measure(subject.saga, 0, WARMUP, min(WARMUP, CONCURRENCY), progress, task)
        one = await _measure(subject.saga, WARMUP, serial, 1, progress, task)
        before = CpuSample.take(service_pid, server=server)
        many = await _measure(subject.saga, WARMUP + serial, count, CONCURRENCY, progress, task)
        cpu = before.per_operation(CpuSample.take(service_pid, server=server), count)
        done = WARMUP + serial + count
        full = None
        if name in _AT_CAPACITY:
            full = await _measure(subject.saga, done, count, CAPACITY, progress, task)
            done += count
        verified = await subject.verify(done) if subject.verify else None
    result: dict[str, Any] = {
        "sagas": many.requests,
        "seconds": many.seconds,
        "throughput": many.throughput,
        "p50_ms": many.p50_ms,
        "p95_ms": many.p95_ms,
        "p99_ms": many.p99_ms,
        "serial": one.as_dict(),
        "cpu_ms_per_saga": cpu,
        "peak_throughput": many.throughput,
    }
    if full is not None:
        result["capacity"] = {"concurrency": CAPACITY, **full.as_dict()}
        result["peak_throughput"] = max(many.throughput, full.throughput)
    if verified is not None:
        result["verified"] = verified
        if not verified["ok"]:
            raise RuntimeError(f"the database does not hold what ran: {verified}")
    return result


async def run(
    *,
    quick: bool = False,
    rows: Sequence[str] | None = None,
    rounds: int | None = None,
    record: bool = True,
) -> dict[str, Any]:
    """Run the benchmark and return its results; with ``record``, write its JSON and its
    section of docs/benchmarks.md. ``rows`` picks the rows (raw always runs: the ratios
    are to it), ``rounds`` overrides the number of rounds of the quick rows."""
    count = 500 if quick else 2_000
    serial = SERIAL // 2 if quick else SERIAL
    rounds = rounds or (1 if quick else ROUNDS)
    dbos_rounds = 1 if quick else DBOS_ROUNDS
    configure_tracing()  # the defaults: trace context propagates, spans are not recorded
    tune_gc()  # as `hybridmesh worker` does; process-wide, so every row runs with it
    names = [n for n in ROWS if rows is None or n == "raw" or n in rows]
    quick_rows = [n for n in names if n != "dbos"]
    schedule = alternating(quick_rows, rounds)
    if "dbos" in names:
        schedule += ["dbos"] * dbos_rounds
    results: dict[str, Any] = {
        "benchmark": "sagas",
        "machine": machine(),
        "steps": STEPS,
        "sagas": count,
        "concurrency": CONCURRENCY,
        "capacity": CAPACITY,
        "serial": serial,
        "warmup": WARMUP,
        "rounds": rounds,
        "dbos_rounds": dbos_rounds,
        "runs": {},
    }
    attempts: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    results["load_before"] = [round(x, 2) for x in os.getloadavg()]
    async with _service() as (base_url, service_pid):
        with Progress(transient=True) as progress:
            for name in schedule:
                label = ROWS[name]
                of = dbos_rounds if name == "dbos" else rounds
                if of > 1:
                    label += f" (round {len(attempts[name]) + 1}/{of})"
                task = progress.add_task(label, total=_sagas_of(name, count, serial))
                try:
                    attempts[name].append(
                        await _run_row(name, base_url, count, serial, progress, task, service_pid)
                    )
                except Exception as error:
                    attempts[name].append(failed_round(error))
                    print(f"sagas benchmark: {label} failed: {error!r}", file=sys.stderr)
                progress.remove_task(task)
    results["load_after"] = [round(x, 2) for x in os.getloadavg()]
    results["runs"] = median_rounds(attempts)
    results["goals"] = _goals(results["runs"], attempts)
    if record:
        write_json("sagas", results)
        write_section("sagas", _markdown(results, quick))
    return results


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m benchmarks.sagas``: some rows, some rounds, the JSON to a file of one's
    choosing (``python -m benchmarks sagas`` runs them all and records them)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sagas", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer sagas (smoke run)")
    parser.add_argument(
        "--rows", default=",".join(ROWS), help=f"rows to run, of {', '.join(ROWS)}; raw always"
    )
    parser.add_argument("--rounds", type=int, help="rounds of the quick rows")
    parser.add_argument("--output", type=Path, help="write the JSON here, and not the docs")
    args = parser.parse_args(argv)
    rows = [row.strip() for row in args.rows.split(",") if row.strip()]
    unknown = sorted(set(rows) - set(ROWS))
    if unknown:
        parser.error(f"unknown rows {', '.join(unknown)}; choose from {', '.join(ROWS)}")
    if args.rounds is not None and args.rounds < 1:
        parser.error("--rounds must be at least 1")
    results = asyncio.run(
        run(quick=args.quick, rows=rows, rounds=args.rounds, record=args.output is None)
    )
    if args.output is not None:
        args.output.write_text(json.dumps(results, indent=2) + "\n")


# -- goals and the report ------------------------------------------------------------------


def _overhead(runs: dict[str, Any], name: str, serial: bool) -> float | None:
    """Milliseconds the row adds per step over the raw calls, at p50."""

    def p50(row: str) -> float | None:
        run = runs.get(row, {})
        figures = run.get("serial", {}) if serial else run
        value = figures.get("p50_ms")
        return float(value) if value else None

    ours, raw = p50(name), p50("raw")
    return None if ours is None or raw is None else round((ours - raw) / STEPS, 3)


def _paired(
    attempts: dict[str, list[dict[str, Any]]], name: str, peer: str, key: str = PEAK
) -> float | None:
    """The median over rounds of ``name``'s figure ``key`` (peak throughput) over
    ``peer``'s in the same round."""
    pairs = paired_ratios(attempts, name, peer, key)
    return round(statistics.median(pairs), 3) if pairs else None


def _goals(runs: dict[str, Any], attempts: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    dbos = figure(runs, "dbos", "throughput")
    quick = ("client", "sqlite", "postgresql")
    goals: dict[str, Any] = {
        "client_vs_raw": _paired(attempts, "client", "raw"),
        "rounds_vs_raw": {name: paired_ratios(attempts, name, "raw", PEAK) for name in quick},
        "rounds_vs_raw_at_concurrency": {
            name: paired_ratios(attempts, name, "raw") for name in quick
        },
    }
    for name in ("sqlite", "postgresql"):
        ours = figure(runs, name, "throughput")
        goals[f"{name}_vs_client"] = _paired(attempts, name, "client")
        vs_raw = _paired(attempts, name, "raw")
        goals[f"{name}_vs_raw"] = {
            "ratio": vs_raw,
            "at_concurrency": _paired(attempts, name, "raw", "throughput"),
            "goal": RAW_GOAL,
            "met": None if vs_raw is None else vs_raw >= RAW_GOAL,
        }
        # DBOS runs on PostgreSQL only, so the goal holds there; SQLite's ratio is shown only.
        vs_dbos = ratio(ours, dbos)
        goals[f"{name}_vs_dbos"] = {
            "ratio": vs_dbos,
            "goal": DBOS_GOAL if name == "postgresql" else None,
            "met": None if vs_dbos is None or name != "postgresql" else vs_dbos >= DBOS_GOAL,
        }
    for name in ("client", "sqlite", "postgresql", "dbos"):
        goals[f"{name}_overhead_ms_per_step"] = {
            "serial": _overhead(runs, name, serial=True),
            "concurrent": _overhead(runs, name, serial=False),
        }
    return goals


def _markdown(results: dict[str, Any], quick: bool) -> str:
    flag = " --quick" if quick else ""
    runs, goals = results["runs"], results["goals"]
    info = results["machine"]
    rounds = (
        f" Raw, hybrid client, SQLite and PostgreSQL run in {results['rounds']} rounds of "
        "alternating order, and each shows its median round; DBOS runs "
        f"{results['dbos_rounds']} rounds afterwards and shows the better. A *ratio* to raw "
        "(or to the client) is the median over the rounds of the row's peak throughput over "
        "raw's in the same round (the rounds' ratios are in the JSON), so a machine that "
        "drifts in speed moves both sides of each ratio alike; the ratio to DBOS divides "
        f"the shown figures at {results['concurrency']} in flight."
        if results["rounds"] > 1
        else ""
    )
    intro = (
        f"{results['sagas']:,} sagas of {results['steps']} steps, {results['concurrency']} in "
        "flight, against one local aiohttp service answering `POST /operations/{op}` at once "
        "(its own process). *raw* makes the same five POSTs per saga through one aiohttp "
        "session and saves nothing; *hybrid client* makes the five calls the engine's steps "
        "make (REST, an idempotency key, one attempt each) through the hybrid client and saves "
        "nothing, so the engine rows against it show what durability costs; the engine rows "
        "run a five-step saga definition in this process as `hybridmesh worker` wires it "
        "(store, hybrid client, and the SQL log of the same database for events, appended "
        "in the engine's own writes), "
        "`start_saga` then `wait` per saga; "
        "*DBOS* runs a DBOS Transact workflow of five `@DBOS.step()` steps making the same "
        "POSTs, its system database on the same PostgreSQL server. The process's garbage "
        "collector is tuned as `hybridmesh worker` tunes its own (`tune_gc`: start-up "
        "frozen, young generation every 10,000 allocations), for every row alike. Every "
        "row has a fresh "
        f"database and runs {results['warmup']} sagas unmeasured, then {results['serial']} one "
        "at a time (*serial p50*), then the measured ones; afterwards its database is checked "
        "to hold every saga as completed with five recorded steps. The rows but DBOS then "
        f"run {results['sagas']:,} more with {results['capacity']} in flight, as many as one "
        "worker drives by default (`max_executions`), and a row's *peak* is the higher of "
        "its two rates: the raw calls keep their process busy from a few dozen in flight, "
        "while a saga holds its place across six commits, so the engine needs more in "
        "flight to do the same; the goal compares peaks. *overhead/step* is "
        f"(row p50 - raw p50) / {results['steps']}, serial and at "
        f"{results['concurrency']} in flight.{rounds} "
        f"Command: `make bench` (`python -m benchmarks sagas{flag}`). "
        f"Machine: {info['cpus']} CPUs, Python {info['python']}, {info['date']}; load "
        f"average {results['load_before'][0]:.2f} before, {results['load_after'][0]:.2f} after."
    )
    lines = [
        "## Saga engine (`benchmarks/sagas.py`)",
        "",
        intro,
        "",
        f"| row | sagas | seconds | sagas/s | p50 ms | p95 ms | serial p50 ms "
        f"| sagas/s at {results['capacity']} (p50 ms) "
        "| overhead/step ms (serial; concurrent) | ratio of peaks | goal |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def verdict(met: bool | None) -> str:
        return "n/a" if met is None else ("met" if met else "missed")

    def fmt(value: float | None, digits: int = 2) -> str:
        return "n/a" if value is None else f"{value:.{digits}f}"

    def engine_cells(name: str) -> tuple[str, str]:
        vs_raw, vs_dbos = goals[f"{name}_vs_raw"], goals[f"{name}_vs_dbos"]
        cell = (
            f"{fmt(vs_raw['ratio'])} vs raw ({fmt(vs_raw['at_concurrency'])} at "
            f"{results['concurrency']}); {fmt(goals[f'{name}_vs_client'])} vs client; "
            f"{fmt(vs_dbos['ratio'])} vs DBOS at {results['concurrency']}"
        )
        goal = f"≥ {RAW_GOAL:.2f} vs raw ({verdict(vs_raw['met'])})"
        if vs_dbos["goal"] is not None:
            goal += f"; ≥ {DBOS_GOAL:.2f} vs DBOS ({verdict(vs_dbos['met'])})"
        return cell, goal

    dbos_vs_raw = ratio(figure(runs, "dbos", "throughput"), figure(runs, "raw", "throughput"))
    cells = {
        "raw": ("1.00", "peer"),
        "client": (f"{fmt(goals['client_vs_raw'])} vs raw", "—"),
        "sqlite": engine_cells("sqlite"),
        "postgresql": engine_cells("postgresql"),
        "dbos": (f"{fmt(dbos_vs_raw)} vs raw at {results['concurrency']}", "peer"),
    }
    for name, label in ROWS.items():
        run = runs.get(name, {"error": "not run"})
        shown, goal = cells[name]
        if "error" in run:
            error = str(run["error"]).replace("|", "\\|").replace("\n", " ")[:160]
            lines.append(f"| {label} | failed: {error} | | | | | | | | — | {goal} |")
            continue
        if name == "raw":
            overhead = "—"
        else:
            figures = goals[f"{name}_overhead_ms_per_step"]
            overhead = f"{fmt(figures['serial'], 3)}; {fmt(figures['concurrent'], 3)}"
        full = run.get("capacity")
        at_capacity = f"{full['throughput']:,.0f} ({full['p50_ms']:.1f})" if full else "—"
        lines.append(
            f"| {label} | {run['sagas']:,} | {run['seconds']:.2f} | {run['throughput']:,.0f} "
            f"| {run['p50_ms']:.1f} | {run['p95_ms']:.1f} | {run['serial']['p50_ms']:.2f} "
            f"| {at_capacity} | {overhead} | {shown} | {goal} |"
        )

    def by_round(series: dict[str, list[float]]) -> str:
        return "; ".join(
            f"{_short(name)} {', '.join(f'{r:.2f}' for r in ratios)}"
            for name, ratios in series.items()
            if ratios
        )

    peaks = goals.get("rounds_vs_raw", {})
    if results["rounds"] > 1 and any(peaks.values()):
        at = goals.get("rounds_vs_raw_at_concurrency", {})
        lines += [
            "",
            f"Peak throughput over raw's, round by round: {by_round(peaks)}. At "
            f"{results['concurrency']} in flight: {by_round(at)}.",
        ]
    spent = _cpu_line(runs)
    if spent:
        lines += ["", spent]
    return "\n".join(lines)


def _cpu_line(runs: dict[str, Any]) -> str:
    """CPU per saga of each shown round: this process, the service, the PostgreSQL server."""
    shown = []
    for name in ROWS:
        cpu = runs.get(name, {}).get("cpu_ms_per_saga")
        if not cpu or cpu.get("benchmark") is None:
            continue
        parts = [f"{cpu['benchmark']:.2f} here"]
        if cpu.get("service") is not None:
            parts.append(f"{cpu['service']:.2f} in the service")
        if cpu.get("server") is not None:
            parts.append(f"{cpu['server']:.2f} in the PostgreSQL server")
        shown.append(f"{_short(name)} {', '.join(parts)}")
    if not shown:
        return ""
    return (
        "CPU per saga while measured, in ms (of the shown round; this process counts every "
        f"thread): {'; '.join(shown)}."
    )


def _short(name: str) -> str:
    """Row ``name``'s label without its parenthesis."""
    return ROWS[name].split(" (")[0]


if __name__ == "__main__":
    main()
