"""The control-plane API as the store grows: 1,000 executions, then 100,000.

On SQLite (temporary files) and on PostgreSQL (fresh databases, dropped afterwards), the
control plane is served on loopback twice side by side: over a store holding 1,000
executions, each with its history (eight records: started, three steps started and ended,
ended), and over one holding 100,000. The executions are spread over
30 days, over three definitions and in the mix of statuses a busy estate has (most
completed, some compensated or failed, a few running).

Each endpoint is asked ``REQUESTS`` times of each store, one request at a time over one
keep-alive connection per store, alternating between the two, with a token of the ``read``
role, after ``WARM_UP`` untimed requests:

- the first page of the listing (``GET /api/v1/executions?limit=50``);
- a filtered first page: by status (``status=compensated``, about 7 % of the executions,
  so that a first page is full at 1,000), and by definition (``name=user-onboarding``);
- the second page of the status filter, in pages of 10 (``cursor`` from its first page);
- one execution with its history (``GET /api/v1/executions/{id}``).

Goal: every filtered first page at 100,000 executions answers within 2x its time at 1,000
(p50 and p95).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from rich.progress import Progress

from benchmarks._postgres import fresh_database
from benchmarks._report import machine, write_json, write_section
from hybridmesh.api import create_app
from hybridmesh.control import ControlPlane, TokenStore
from hybridmesh.core.serialization import dumps
from hybridmesh.core.settings import Settings
from hybridmesh.events.backends.memory import MemoryEventBackend
from hybridmesh.events.bus import EventBus
from hybridmesh.orchestration._state import ExecutionState, StepState, StepStatus
from hybridmesh.runtime import Runtime

SMALL, LARGE = 1_000, 100_000
REQUESTS = 200
WARM_UP = 20
GOAL = 2.0  # at most this many times the time at SMALL
PAGE = 50
SHORT_PAGE = 10  # the second page's size
DAYS = 30
DEFINITIONS = ("order-processing", "user-onboarding", "invoice-sync")
# (status, share): what a busy estate's store holds.
STATUSES = (("completed", 0.88), ("compensated", 0.07), ("failed", 0.03), ("running", 0.02))
STEPS = ("reserve", "charge", "confirm")
# Endpoints: name -> what is asked (the cursor and the id are filled in once seeded).
ENDPOINTS = {
    "first_page": "/api/v1/executions?limit={page}",
    "by_status": "/api/v1/executions?status=compensated&limit={page}",
    "by_name": "/api/v1/executions?name=user-onboarding&limit={page}",
    "by_status_page_2": "/api/v1/executions?status=compensated&limit={short}&cursor={cursor}",
    "show": "/api/v1/executions/{id}",
}
FILTERED = ("by_status", "by_name")


# -- the rows ------------------------------------------------------------------------------


def _rows(start: int, count: int, rng: random.Random) -> Iterator[tuple[tuple[Any, ...], ...]]:
    """``count`` executions, each as its row of ``orch_executions`` followed by the rows of
    its history, numbered from ``start``."""
    now = time.time()
    statuses = [s for s, _ in STATUSES]
    weights = [w for _, w in STATUSES]
    for n in range(start, start + count):
        created = now - rng.random() * DAYS * 86_400
        status = rng.choices(statuses, weights)[0]
        name = DEFINITIONS[n % len(DEFINITIONS)]
        execution_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        ended = None if status == "running" else created + 0.2
        steps = {
            step: StepState(status=StepStatus.COMPLETED, attempt=1, order=i, first_started=created)
            for i, step in enumerate(STEPS)
        }
        state = ExecutionState(steps, {"order": n}, started=len(STEPS)).to_json()
        execution = (
            execution_id, "saga", name, 1, status, dumps({"order": n}), state, None, None,
            None, None, None, 2 + 2 * len(STEPS), 0, created, created + 0.2, ended,
        )  # fmt: skip
        history = [(execution_id, 1, "execution.started", None, None, None, created)]
        for i, step in enumerate(STEPS):
            at = created + 0.05 * (i + 1)
            history.append((execution_id, 2 + 2 * i, "step.started", step, 1, None, at))
            done = (execution_id, 3 + 2 * i, "step.completed", step, 1, '{"result": 1}', at)
            history.append(done)
        history.append(
            (execution_id, 2 + 2 * len(STEPS), f"execution.{status}", None, None, None, created)
        )
        yield (execution, *history)


_EXECUTION_COLUMNS = (
    "id, kind, name, version, status, input, state, error, trace_context, wake_at, "
    "lease_owner, lease_until, history_seq, signals, created_at, updated_at, ended_at"
)
_HISTORY_COLUMNS = "execution_id, seq, type, step_id, attempt, data, at"


def _split(batch: list[tuple[tuple[Any, ...], ...]]) -> tuple[list[Any], list[Any]]:
    executions = [rows[0] for rows in batch]
    history = [row for rows in batch for row in rows[1:]]
    return executions, history


def _seed_sqlite(path: Path, start: int, count: int, rng: random.Random) -> None:
    connection = sqlite3.connect(path)
    try:
        executions, history = _split(list(_rows(start, count, rng)))
        with connection:
            connection.executemany(
                f"INSERT INTO orch_executions ({_EXECUTION_COLUMNS}) VALUES "
                f"({', '.join('?' * 17)})",
                executions,
            )
            connection.executemany(
                f"INSERT INTO orch_history ({_HISTORY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                history,
            )
        connection.execute("ANALYZE")
    finally:
        connection.close()


async def _seed_postgres(url: str, start: int, count: int, rng: random.Random) -> None:
    import asyncpg

    connection = await asyncpg.connect(url)
    try:
        executions, history = _split(list(_rows(start, count, rng)))
        async with connection.transaction():
            await connection.copy_records_to_table(
                "orch_executions",
                records=executions,
                columns=[c.strip() for c in _EXECUTION_COLUMNS.split(",")],
            )
            await connection.copy_records_to_table(
                "orch_history",
                records=history,
                columns=[c.strip() for c in _HISTORY_COLUMNS.split(",")],
            )
        await connection.execute("ANALYZE")
    finally:
        await connection.close()


# -- serving and asking --------------------------------------------------------------------


@asynccontextmanager
async def _served(database_url: str) -> AsyncIterator[tuple[str, str]]:
    """The control plane over ``database_url`` on a loopback port: its URL and a read
    token."""
    settings = Settings(database_url=database_url)
    with tempfile.TemporaryDirectory(prefix="hybridmesh-bench-") as exchange:
        runtime = await Runtime.open(settings, events=False, exchange_dir=Path(exchange))
        try:
            _, token = await TokenStore(runtime.store).create("bench", "read")
            bus = EventBus(MemoryEventBackend())
            app = create_app(
                bus, settings=settings, control=ControlPlane.on(runtime.store, runtime.engine)
            )
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            try:
                port = runner.addresses[0][1]
                yield f"http://127.0.0.1:{port}", token
            finally:
                await runner.cleanup()
        finally:
            await runtime.close()


async def _ask(http: aiohttp.ClientSession, url: str) -> Any:
    async with http.get(url) as response:
        if response.status != 200:
            raise RuntimeError(f"GET {url}: {response.status} {await response.text()}")
        return await response.json()


async def _endpoints(http: aiohttp.ClientSession, base: str) -> dict[str, str]:
    """Every endpoint's URL, with a cursor and an id from the store as it is now."""
    first = await _ask(http, f"{base}/api/v1/executions?status=compensated&limit={SHORT_PAGE}")
    cursor = first.get("next_cursor")
    if not cursor:
        raise RuntimeError("the status filter has a single page: too few executions")
    newest = (await _ask(http, base + ENDPOINTS["first_page"].format(page=1)))["items"][0]
    return {
        name: base + template.format(page=PAGE, short=SHORT_PAGE, cursor=cursor, id=newest["id"])
        for name, template in ENDPOINTS.items()
    }


def _summary(times: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(times, n=20)
    return {
        "p50_ms": round(statistics.median(times) * 1000, 3),
        "p95_ms": round(cuts[18] * 1000, 3),
    }


async def _measure(small: tuple[str, str], large: tuple[str, str]) -> dict[str, Any]:
    """p50 and p95 in ms of each endpoint on both stores (each a URL and a token). The
    requests to the two alternate, so that whatever else the machine does weighs on both
    alike."""
    async with contextlib.AsyncExitStack() as stack:
        sides = []
        for base, token in (small, large):
            http = await stack.enter_async_context(
                aiohttp.ClientSession(
                    headers={"Authorization": f"Bearer {token}"},
                    connector=aiohttp.TCPConnector(limit=1),
                )
            )
            sides.append((http, await _endpoints(http, base)))
        figures: dict[str, Any] = {"small": {}, "large": {}}
        for name in ENDPOINTS:
            times: tuple[list[float], list[float]] = ([], [])
            for n in range(WARM_UP + REQUESTS):
                for (http, urls), taken in zip(sides, times, strict=True):
                    began = time.perf_counter()
                    await _ask(http, urls[name])
                    if n >= WARM_UP:
                        taken.append(time.perf_counter() - began)
            figures["small"][name], figures["large"][name] = map(_summary, times)
        return figures


@asynccontextmanager
async def _database(dialect: str) -> AsyncIterator[tuple[str, Any]]:
    """A database URL of ``dialect`` and the target its seeding writes to."""
    if dialect == "sqlite":
        with tempfile.TemporaryDirectory(prefix="hybridmesh-bench-") as folder:
            path = Path(folder) / "mesh.db"
            yield f"sqlite:///{path}", path
    else:
        async with fresh_database() as url:
            yield url, url


async def _seed(dialect: str, target: Any, start: int, count: int, rng: random.Random) -> None:
    if dialect == "sqlite":
        await asyncio.to_thread(_seed_sqlite, target, start, count, rng)
    else:
        await _seed_postgres(target, start, count, rng)


async def _dialect(dialect: str, small: int, large: int, progress: Progress) -> dict[str, Any]:
    """Both stores of ``dialect`` served side by side, seeded, and measured together."""
    task = progress.add_task(f"control plane, {dialect}", total=3)
    async with contextlib.AsyncExitStack() as stack:
        served = []
        for count in (small, large):
            url, target = await stack.enter_async_context(_database(dialect))
            served.append(await stack.enter_async_context(_served(url)))  # makes the schema
            await _seed(dialect, target, 0, count, random.Random(count))
            progress.advance(task)
        found = await _measure(served[0], served[1])
        progress.advance(task)
    progress.remove_task(task)
    found["ratios"] = {
        name: {
            key: round(found["large"][name][key] / found["small"][name][key], 2)
            for key in ("p50_ms", "p95_ms")
        }
        for name in ENDPOINTS
    }
    return found


# -- the run -------------------------------------------------------------------------------


async def run(*, quick: bool = False) -> dict[str, Any]:
    """Run on SQLite and PostgreSQL; write the JSON and the section of docs/benchmarks.md
    (not in quick mode, which stops at 10,000 executions)."""
    large = 10_000 if quick else LARGE
    results: dict[str, Any] = {
        "benchmark": "control_plane",
        "machine": machine(),
        "small": SMALL,
        "large": large,
        "requests": REQUESTS,
        "page": PAGE,
        "dialects": {},
    }
    with Progress(transient=True) as progress:
        for dialect in ("sqlite", "postgresql"):
            try:
                results["dialects"][dialect] = await _dialect(dialect, SMALL, large, progress)
            except Exception as error:
                results["dialects"][dialect] = {"error": f"{type(error).__name__}: {error}"}
                print(f"control plane benchmark: {dialect} failed: {error!r}", file=sys.stderr)
    results["goals"] = _goals(results["dialects"])
    markdown = _markdown(results, quick)
    print(markdown)
    if not quick:
        write_json("control_plane", results)
        write_section("control_plane", markdown)
    return results


def _goals(dialects: dict[str, Any]) -> dict[str, Any]:
    goals: dict[str, Any] = {}
    for dialect, found in dialects.items():
        if "error" in found:
            continue
        for name in FILTERED:
            for key in ("p50_ms", "p95_ms"):
                value = found["ratios"][name][key]
                goals[f"{dialect}_{name}_{key[:3]}"] = {
                    "ratio": value,
                    "goal": GOAL,
                    "met": value <= GOAL,
                }
    return goals


def _markdown(results: dict[str, Any], quick: bool) -> str:
    flag = " --quick" if quick else ""
    info = results["machine"]
    lines = [
        "## Control plane (`benchmarks/control_plane.py`)",
        "",
        f"The control-plane API over a store of {results['small']:,} executions and one of "
        f"{results['large']:,} (each with 8 history records, spread over {DAYS} days, three "
        "definitions, 88 % completed, 7 % compensated, 3 % failed, 2 % running), on SQLite "
        "and PostgreSQL, both served side by side. Each endpoint asked "
        f"{results['requests']} times of each, one request at a time over one keep-alive "
        "connection per store, alternating between them, "
        f"with a `read` token; pages of {results['page']}. Goal: a filtered first page at "
        f"{results['large']:,} executions within {GOAL:.0f} times its time at "
        f"{results['small']:,}. "
        f"Command: `make bench` (`python -m benchmarks control_plane{flag}`). Machine: "
        f"{info['cpus']} CPUs, Python {info['python']}, {info['date']}.",
        "",
        "| database | endpoint | p50 / p95 ms at "
        f"{results['small']:,} | p50 / p95 ms at {results['large']:,} | ratio p50 / p95 "
        "| goal |",
        "|---|---|---|---|---|---|",
    ]
    for dialect, label in (("sqlite", "SQLite"), ("postgresql", "PostgreSQL")):
        found = results["dialects"].get(dialect, {"error": "not run"})
        if "error" in found:
            lines.append(f"| {label} | failed: {found['error'][:160]} | | | | |")
            continue
        for name in ENDPOINTS:
            small, large, ratio = found["small"][name], found["large"][name], found["ratios"][name]
            if name in FILTERED:
                met = all(results["goals"][f"{dialect}_{name}_{k}"]["met"] for k in ("p50", "p95"))
                goal = f"≤ {GOAL:.1f} ({'met' if met else 'missed'})"
            else:
                goal = "—"
            lines.append(
                f"| {label} | `{name}` | {small['p50_ms']:.2f} / {small['p95_ms']:.2f} "
                f"| {large['p50_ms']:.2f} / {large['p95_ms']:.2f} "
                f"| {ratio['p50_ms']:.2f} / {ratio['p95_ms']:.2f} | {goal} |"
            )
    return "\n".join(lines)


__all__ = ["run"]
