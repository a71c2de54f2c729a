"""The demo's migration part: content-management carved up by plans, under live load.

Two strangler-fig plans run at once, driven by one plan runner (``hybridmesh migrate
runner``) while a load of readers and editors goes through a gateway replica:

- ``carve-workflow`` moves publishing (``POST /content/{id}/publish``) to content-workflow:
  25, 50 and 100 %, each gated on the gateway's windows (errors under 1 %, p95 under
  500 ms, a two-second window measured every second), then retires content-management from
  the route once a person approves;
- ``carve-creation`` moves ``/content`` to content-creation through 10, 25, 50 and 100 %.
  When it reaches 25 %, a fault is injected into the new service's share (every request to
  it answers 503, through the gateway's ``faults`` policy): the gate catches it and the plan
  rolls the new service back to 0 % by itself.

Then a function of content-management (its summary) moves to a new implementation by
branch by abstraction: an ``Abstraction`` asks flag ``content-summary`` on every call, and
plan ``summary-v2`` steps the flag 25 → 100 %, gated on the new implementation's windows.
Last, a boundary experiment tries content-delivery as the service behind content previews
for two seconds of mirrored traffic; its verdict (rejected: it renders some titles
differently) comes with the mismatch rate.

The part ends with each plan's audit, the time from the fault to the rollback, and the
requests that failed other than through the injected fault (there must be none: moving
traffic costs nothing).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from rich.console import Console

from hybridmesh.core.errors import NotFoundError
from hybridmesh.flags.client import FlagClient
from hybridmesh.flags.files import parse_flags
from hybridmesh.flags.store import FlagStore
from hybridmesh.gateway.config import parse_routes
from hybridmesh.gateway.state import GatewayState
from hybridmesh.gateway.stats import WindowRecorder
from hybridmesh.migration.abstraction import Abstraction, flag_chooser
from hybridmesh.migration.boundary import BoundaryExperiment, run_boundary_experiment
from hybridmesh.migration.plans import PlanSpec, build_plan
from hybridmesh.migration.runner import PlanRunner
from hybridmesh.migration.state import MigrationState, Status
from hybridmesh.store import Store

from .gateway_walkthrough import running_gateway

#: The routes as the plans find them: everything still on content-management.
ROUTES = """
routes:
  - name: content-creation
    match: {path: {exact: /content}}
    backends:
      - {name: monolith, service: content-management, weight: 100}
      - {name: creation, service: content-creation, weight: 0}
    policies:
      faults: {abort: {percent: 0, status: 503}, backends: [creation]}
  - name: content-workflow
    match: {path: {regex: '/content/(?P<id>[0-9]+)/publish'}, methods: [POST]}
    backends:
      - {name: monolith, service: content-management, weight: 100}
      - {name: workflow, service: content-workflow, weight: 0}
  - name: content-preview
    match: {path: {regex: '/preview/(?P<id>[0-9]+)'}, methods: [GET]}
    rewrite: /content/{id}
    backends:
      - {name: monolith, service: content-management, weight: 100}
"""

GATE = {"interval": 1, "window": 2, "min_requests": 5}

#: The function carved out by branch by abstraction, and its flag (variants old and new).
SUMMARY_FLAG = """
key: content-summary
description: which implementation summarizes content items
variants: {old: old, new: new}
default_variant: old
"""
SUMMARY_PLAN = {
    "name": "summary-v2",
    "source": "content-management",
    "strategy": "branch_by_abstraction",
    "description": "the summary function moves to its new implementation",
    "targets": [{"service": "content-summary", "steps": [25, 100]}],
    "criteria": GATE,
}

PLANS: tuple[dict[str, Any], ...] = (
    {
        "name": "carve-workflow",
        "source": "content-management",
        "strategy": "strangler_fig",
        "description": "publishing moves to content-workflow",
        "targets": [{"service": "content-workflow", "steps": [25, 50, 100]}],
        "criteria": GATE,
    },
    {
        "name": "carve-creation",
        "source": "content-management",
        "strategy": "strangler_fig",
        "description": "creating and listing move to content-creation",
        "targets": [{"service": "content-creation", "steps": [10, 25, 50, 100]}],
        "criteria": GATE,
        "rollback": "zero",
    },
)
#: The longest the part waits for the plans.
DEADLINE_SECONDS = 60.0


@dataclass
class MigrationReport:
    """What the migration part showed, for the verdict."""

    workflow_status: str = ""
    workflow_backends: list[str] = field(default_factory=list)
    creation_status: str = ""
    creation_weight: float | None = None
    rollback_reason: str = ""
    rollback_seconds: float | None = None
    summary_status: str = ""
    summary_calls: dict[str, int] = field(default_factory=dict)
    experiment_verdict: str = ""
    experiment_reasons: list[str] = field(default_factory=list)
    requests: int = 0
    injected_failures: int = 0
    other_failures: int = 0
    served: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return (
            self.workflow_status == Status.COMPLETED.value
            and self.workflow_backends == ["workflow"]
            and self.creation_status == Status.ROLLED_BACK.value
            and self.creation_weight == 0.0
            and self.other_failures == 0
            and self.requests > 0
            and self.summary_status == Status.COMPLETED.value
            and self.summary_calls.get("new", 0) > 0
            and self.experiment_verdict == "rejected"
        )


@dataclass
class _Load:
    """Readers and editors through the gateway, counted."""

    statuses: Counter[str] = field(default_factory=Counter)
    served: Counter[str] = field(default_factory=Counter)
    #: Requests the injected fault answered.
    injected: int = 0
    other_failures: list[str] = field(default_factory=list)

    async def run(self, base: str, stop: asyncio.Event) -> None:
        rng = random.Random(7)
        async with aiohttp.ClientSession() as http:
            while not stop.is_set():
                calls = [self._one(http, base, rng) for _ in range(8)]
                await asyncio.gather(*calls)
                await asyncio.sleep(0.02)

    async def _one(self, http: aiohttp.ClientSession, base: str, rng: random.Random) -> None:
        if rng.random() < 0.5:
            method, url = "GET", f"{base}/content"
        else:
            method, url = "POST", f"{base}/content/{rng.randint(1, 3)}/publish"
        try:
            async with http.request(method, url, headers={"x-user": f"u{rng.randint(1, 50)}"}) as r:
                body = await r.read()
                status, served = r.status, r.headers.get("X-Served-By", "gateway")
        except aiohttp.ClientError as error:
            self.other_failures.append(f"{method} {url}: {error}")
            return
        self.statuses[str(status)] += 1
        self.served[served] += 1
        if status < 400:
            return
        if served == "gateway" and b"fault injected" in body:
            self.injected += 1  # the fault's own answer, named in its problem detail
        else:
            self.other_failures.append(f"{method} {url}: {status} from {served}")


async def show_migration(store: Store, console: Console) -> MigrationReport:
    """Part 8: two plans carve content-management up under live load through a gateway."""
    console.rule("[bold]8. Migration: content-management carved up by gated plans")
    report = MigrationReport()
    gateway = GatewayState(store)
    await gateway.apply(parse_routes(ROUTES, "demo-migration-routes.yaml"), source="demo")
    routes = {s.route.name: s.route for s in await gateway.routes()}
    plans = MigrationState(store)
    for data in PLANS:
        plan = build_plan(PlanSpec.model_validate(data), routes)
        with contextlib.suppress(NotFoundError):  # an earlier run of the demo: start over
            await plans.delete(plan.name)
        await plans.save(plan, actor="demo")
        await plans.control(plan.name, "start", actor="demo", reason=plan.spec.description)
        console.print(
            f"  hybridmesh migrate plan content-management --target "
            f"{plan.spec.targets[0].service} ... ({plan.name}: {len(plan.steps)} steps, "
            f"rollback to {plan.spec.rollback.value.replace('_', ' ')}), then migrate start",
            highlight=False,
        )
    load = _Load()
    stop_load, stop_runner = asyncio.Event(), asyncio.Event()
    async with running_gateway(store) as (watcher, base):
        await watcher.reload()
        console.print(f"  Readers and editors send about 200 requests a second to {base}.")
        runner = PlanRunner(store, owner="demo-runner", lease_seconds=5, poll_seconds=0.2)
        load_task = asyncio.create_task(load.run(base, stop_load))
        runner_task = asyncio.create_task(runner.run(stop_runner))
        try:
            await _watch(store, gateway, plans, load, console, report)
            await _branch_by_abstraction(store, plans, console, report)
            await _boundary_experiment(store, base, console, report)
        finally:
            stop_runner.set()
            stop_load.set()
            with contextlib.suppress(Exception):
                await asyncio.gather(runner_task, load_task)
    for name in ("carve-workflow", "carve-creation", "summary-v2"):
        _print_audit(console, name, await plans.audit(name))
    route = (await gateway.route("content-workflow")).route
    report.workflow_backends = [b.name for b in route.backends]
    report.creation_weight = (
        (await gateway.route("content-creation")).route.backend("creation").weight
    )
    report.requests = sum(load.statuses.values())
    report.injected_failures = load.injected
    report.other_failures = len(load.other_failures)
    report.served = dict(load.served)
    console.print(
        f"  {report.requests} requests during the plans, served by "
        f"{dict(sorted(load.served.items()))}; {load.injected} answered 503 by the "
        f"injected fault, {report.other_failures} failed otherwise.",
        highlight=False,
    )
    for failure in load.other_failures[:5]:
        console.print(f"  [red]{failure}[/red]", highlight=False)
    return report


async def _watch(
    store: Store,
    gateway: GatewayState,
    plans: MigrationState,
    load: _Load,
    console: Console,
    report: MigrationReport,
) -> None:
    """Follow both plans: approve the workflow's retirement, inject the fault at 25 %."""
    began = time.monotonic()
    injected_at: float | None = None
    approved = False
    while time.monotonic() - began < DEADLINE_SECONDS:
        workflow = await plans.get("carve-workflow")
        creation = await plans.get("carve-creation")
        if workflow.status is Status.WAITING_APPROVAL and not approved:
            approved = True
            await plans.control(
                "carve-workflow", "approve", actor="demo", reason="the monolith's path is idle"
            )
            console.print(
                "  carve-workflow reached 100 % and waits to retire content-management from "
                "the route: hybridmesh migrate approve carve-workflow"
            )
        at_25 = (
            creation.status is Status.RUNNING
            and creation.step < len(creation.plan.steps)
            and creation.plan.steps[creation.step].name == "content-creation 25%"
            and creation.phase.value == "monitoring"
        )
        if at_25 and injected_at is None:
            await _set_fault(gateway, "content-creation", 100)
            injected_at = time.monotonic()
            console.print(
                "  carve-creation is at 25 %: a fault now fails every request to "
                "content-creation (503)."
            )
        if creation.status is Status.ROLLED_BACK and report.rollback_seconds is None:
            weight = (await gateway.route("content-creation")).route.backend("creation").weight
            if injected_at is not None and weight == 0:
                report.rollback_seconds = round(time.monotonic() - injected_at, 2)
            report.rollback_reason = creation.reason or ""
            await _set_fault(gateway, "content-creation", 0)
            console.print(
                f"  carve-creation rolled back by itself, {report.rollback_seconds} s after "
                f"the fault: {creation.reason}",
                highlight=False,
            )
        report.workflow_status = workflow.status.value
        report.creation_status = creation.status.value
        if workflow.status.ended and creation.status.ended:
            return
        await asyncio.sleep(0.1)
    console.print("[red]  the plans did not end in time[/red]")


def _summary_old(item: dict[str, Any]) -> str:
    """The monolith's summary: the first sentence of the body."""
    body: str = item["body"]
    return body.split(". ")[0].rstrip(".") + "."


def _summary_new(item: dict[str, Any]) -> str:
    """The new summary: the same sentence, found by the new text pipeline."""
    body: str = item["body"]
    return body.split(".")[0].strip() + "."


async def _branch_by_abstraction(
    store: Store, plans: MigrationState, console: Console, report: MigrationReport
) -> None:
    """A function of content-management behind an Abstraction, its flag stepped by a
    ``branch_by_abstraction`` plan while calls go on; the runner already running drives it."""
    await FlagStore(store).apply(parse_flags(SUMMARY_FLAG, "demo-flags.yaml"))
    plan = build_plan(PlanSpec.model_validate(SUMMARY_PLAN), {})
    with contextlib.suppress(NotFoundError):
        await plans.delete(plan.name)
    await plans.save(plan, actor="demo")
    await plans.control(plan.name, "start", actor="demo", reason=plan.spec.description)
    console.print(
        "  Branch by abstraction: content-management's summary function sits behind an "
        "Abstraction that asks flag content-summary (old or new) on every call; plan "
        "summary-v2 steps the flag 25 → 100 %, gated on the new implementation's windows."
    )
    flags = await FlagClient(store, poll_seconds=0.2).start()
    recorder = WindowRecorder(store, replica="demo-app", flush_seconds=0.2)
    recorder.start()

    async def old(item: dict[str, Any]) -> str:
        return _summary_old(item)

    async def new(item: dict[str, Any]) -> str:
        return _summary_new(item)

    summary = Abstraction(
        "content-summary",
        old,
        new,
        choose=flag_chooser(flags, "content-summary"),
        recorder=recorder,
    )
    item = {"body": "The best offers of the season. Read on for more."}
    began = time.monotonic()
    try:
        n = 0
        while time.monotonic() - began < DEADLINE_SECONDS:
            for _ in range(20):
                n += 1
                await summary.call({"targetingKey": f"reader-{n % 500}"}, item)
            record = await plans.get(plan.name)
            if record.status.ended or record.status is Status.PAUSED:
                break
            await asyncio.sleep(0.05)
    finally:
        await recorder.close()
        await flags.close()
    record = await plans.get(plan.name)
    report.summary_status = record.status.value
    report.summary_calls = {name: stats.calls for name, stats in summary.stats.items()}
    console.print(
        f"  summary-v2 {record.status.value}: {report.summary_calls} calls by implementation "
        "(the flag's split keeps each user on their side while the new side grows).",
        highlight=False,
    )


async def _boundary_experiment(
    store: Store, base: str, console: Console, report: MigrationReport
) -> None:
    """Try content-delivery as the boundary for content previews before committing to it:
    the gateway copies /preview to it for two seconds and compares the answers."""
    spec = BoundaryExperiment.model_validate(
        {
            "id": f"preview-by-delivery-{int(time.time())}",
            "route": "content-preview",
            "candidate": {"service": "content-delivery"},
            "duration": 2,
            "hypothesis": {"min_requests": 10, "min_compared": 10},
            "compare": {"ignore": ["status", "published_at"]},
        }
    )
    stop = asyncio.Event()

    async def readers() -> None:
        async with aiohttp.ClientSession() as http:
            while not stop.is_set():
                for item in (1, 2, 3):
                    async with http.get(f"{base}/preview/{item}") as response:
                        await response.read()
                await asyncio.sleep(0.02)

    reading = asyncio.create_task(readers())
    try:
        result = await run_boundary_experiment(store, spec, settle_seconds=0.5)
    finally:
        stop.set()
        await reading
    report.experiment_verdict = result.verdict.value if result.verdict else result.status.value
    report.experiment_reasons = list(result.reasons)
    console.print(
        f"  hybridmesh experiments run --route content-preview --candidate-service "
        f"content-delivery --duration 2s: [bold]{report.experiment_verdict}[/bold]"
        + (f" ({'; '.join(result.reasons)})" if result.reasons else ""),
        highlight=False,
    )


async def _set_fault(gateway: GatewayState, route_name: str, percent: float) -> None:
    """Set the abort share of ``route_name``'s fault policy (the plan's weights stay)."""

    def change(spec: dict[str, Any]) -> None:
        spec["policies"]["faults"]["abort"]["percent"] = percent

    await gateway.edit(route_name, change)


def _print_audit(console: Console, name: str, entries: list[Any]) -> None:
    console.print(f"  hybridmesh migrate audit {name}:")
    for entry in entries:
        if entry.action in ("migration.plan.stored", "migration.start"):
            continue
        step = "" if entry.step is None else f" step {entry.step + 1}"
        gate = (entry.details or {}).get("gate") or {}
        last = gate.get("last") or {}
        measured = (
            f" ({last.get('requests')} requests, {last.get('error_rate', 0):.1%} errors)"
            if last and "requests" in last
            else ""
        )
        why = f": {entry.reason}" if entry.reason else ""
        console.print(
            f"    {entry.action}{step}{measured} by {entry.actor}{why}",
            highlight=False,
            soft_wrap=True,
        )


__all__ = ["MigrationReport", "show_migration"]
