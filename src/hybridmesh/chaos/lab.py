"""The chaos lab: the reference system's experiments (``experiments/`` at the repository's
root), each run in an environment of its own (``hybridmesh chaos lab``).

For one experiment the lab starts, on free local ports and over a temporary SQLite store:

- the reference services of ``examples/tanqory`` (as ``hybridmesh demo`` starts them), with
  the registry saved in the store and the order saga in the definitions catalog;
- a gateway replica (``hybridmesh gateway``) with the lab's routes: ``legacy-erp``
  (``/erp``), ``inventory`` (``/inventory``) and ``content-creation`` (``/content``, on
  content-management with content-creation at weight 0, for a strangler-fig shift);
- the processes the experiment acts on: two ``hybridmesh worker`` processes that run the
  sagas, and a ``hybridmesh migrate runner`` when a migration plan is in play;
- for ``replicator-killed``, replication ``erp-customers`` (legacy-erp's customers, seeded
  by its batch import, into user-service's database, in small chunks) run by one
  ``hybridmesh replicate run`` and backfilling when the experiment starts, and a second one
  standing by;
- for ``broker-unreachable``, the event log (the SQL log) in a database of its own on
  PostgreSQL, made for the run and dropped after it, which every process reaches through
  a fault proxy (``hybridmesh chaos proxy``'s, in the lab's process);
- a steady load: a bounded number of order sagas, and reads through the gateway.

Then it runs the experiment file with the same runner as ``hybridmesh chaos run`` (or the
Chaos Toolkit's ``chaos run``), its ``configuration`` given by the lab (the store, the
gateway, the fault proxy's control API, the windows and durations of ``--quick`` or of a
full run), and writes the journal (``NAME.json``) and a short report (``NAME.md``) that
says whether the hypothesis held, with the figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from hybridmesh.chaos.experiment import load_experiment
from hybridmesh.chaos.runner import Runner
from hybridmesh.core.serialization import dumps
from hybridmesh.core.settings import Settings

#: The experiments the lab knows, in the order ``all`` runs them; each is
#: ``experiments/NAME.yaml``.
EXPERIMENTS = (
    "legacy-erp-down",
    "worker-killed",
    "bad-version-at-25",
    "broker-unreachable",
    "replicator-killed",
)
#: The PostgreSQL server (an admin URL) on which ``broker-unreachable`` makes the event log's
#: database, behind a fault proxy.
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"

ROUTES = """
routes:
  - name: legacy-erp
    match: {{path: {{prefix: /erp}}}}
    backends:
      - {{name: erp, url: "{legacy}", weight: 100}}
  - name: inventory
    match: {{path: {{prefix: /inventory}}}}
    backends:
      - {{name: inventory, url: "{inventory}", weight: 100}}
  - name: content-creation
    match: {{path: {{exact: /content}}}}
    backends:
      - {{name: monolith, service: content-management, weight: 100}}
      - {{name: creation, service: content-creation, weight: 0}}
"""

#: The strangler-fig plan of ``bad-version-at-25``: content-creation at 25 % then 100 %,
#: each step gated on the route's windows (errors under 1 %, p95 under 500 ms).
PLAN = {
    "name": "carve-creation",
    "source": "content-management",
    "strategy": "strangler_fig",
    "description": "listing content moves to content-creation",
    "targets": [{"service": "content-creation", "steps": [25, 100]}],
    "criteria": {"interval": 1, "window": 2, "min_requests": 5},
    "rollback": "zero",
}


@dataclass(frozen=True)
class Profile:
    """How long and how much: ``--quick`` for CI, the full one for a person."""

    #: Order sagas started, at most (the inventory holds 100 of the item ordered).
    orders: int
    #: Seconds between two orders.
    order_every: float
    #: Seconds a fault lasts at most (a rollback clears it earlier).
    fault_seconds: float
    #: Seconds the experiment waits with the fault on before measuring.
    observe_seconds: float
    #: The window the hypothesis measures over.
    window: str
    #: Seconds of load before the experiment starts (the "before" steady state's data).
    warm_up: float
    #: Customers legacy-erp holds before the backfill of ``replicator-killed``.
    customers: int


QUICK = Profile(
    orders=40,
    order_every=0.4,
    fault_seconds=30,
    observe_seconds=8,
    window="15s",
    warm_up=4,
    customers=3000,
)
FULL = Profile(
    orders=90,
    order_every=0.3,
    fault_seconds=120,
    observe_seconds=20,
    window="40s",
    warm_up=10,
    customers=6000,
)

#: The replication of ``replicator-killed``: small chunks, so that the backfill is still
#: under way when the experiment kills its replicator.
REPLICATION = """
replications:
  - name: erp-customers
    source: {{url: "{legacy}", system: legacy-erp}}
    target: {{url: "{users}", system: user-service}}
    chunk_size: 5
    tables:
      - source: customers
        target: customers
        columns: {{customer_id: id, name: full_name}}
"""
#: Seconds a worker's lease lasts: a killed worker's sagas move on after it.
LEASE_SECONDS = 2.0


def experiments_folder() -> Path:
    """``experiments/`` of the repository (beside ``src/``)."""
    return Path(__file__).resolve().parents[3] / "experiments"


@dataclass
class Load:
    """The steady load, counted: order sagas started, and reads through the gateway."""

    orders: list[str] = field(default_factory=list)
    reads: Counter[str] = field(default_factory=Counter)

    def to_json(self) -> dict[str, Any]:
        return {"orders_started": len(self.orders), "gateway_reads": dict(self.reads)}


@dataclass
class Process:
    name: str
    process: asyncio.subprocess.Process
    log: Path
    pidfile: Path


@dataclass
class Lab:
    """One environment: its store, its URLs, its processes and its load."""

    name: str
    workdir: Path
    database_url: str
    events_url: str | None = None
    proxy_control: str = ""
    urls: dict[str, str] = field(default_factory=dict)
    gateway: str = ""
    processes: dict[str, Process] = field(default_factory=dict)
    load: Load = field(default_factory=Load)

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HYBRIDMESH_")}
        env["HYBRIDMESH_DATABASE_URL"] = self.database_url
        if self.events_url is not None:
            env["HYBRIDMESH_EVENTS_URL"] = self.events_url
        env["HYBRIDMESH_EXCHANGE_DIR"] = str(self.workdir / "exchange")
        env["HYBRIDMESH_LOG_LEVEL"] = "WARNING"
        env["PYTHONUNBUFFERED"] = "1"
        return env

    async def start(self, name: str, *args: str, ready: str) -> Process:
        """Start ``hybridmesh ARGS`` as ``name``, its pid in ``NAME.pid``; wait for ``ready``
        in its output."""
        log = self.workdir / f"{name}.log"
        with log.open("wb") as sink:
            child = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "hybridmesh",
                *args,
                stdout=sink,
                stderr=asyncio.subprocess.STDOUT,
                env=self.env(),
                cwd=self.workdir,
            )
        pidfile = self.workdir / f"{name}.pid"
        pidfile.write_text(f"{child.pid}\n")
        process = Process(name, child, log, pidfile)
        self.processes[name] = process
        deadline = time.monotonic() + 60
        while ready.encode() not in log.read_bytes():
            if child.returncode is not None or time.monotonic() > deadline:
                tail = log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{name} did not start:\n{tail}")
            await asyncio.sleep(0.1)
        return process

    async def stop_all(self) -> None:
        for process in reversed(self.processes.values()):
            if process.process.returncode is None:
                process.process.terminate()
                try:
                    await asyncio.wait_for(process.process.wait(), 10)
                except TimeoutError:
                    process.process.kill()
                    await process.process.wait()

    def variables(self, profile: Profile) -> dict[str, Any]:
        """The configuration the experiment files name."""
        return {
            "database_url": self.database_url,
            "gateway_url": self.gateway,
            "broker_proxy_url": self.proxy_control,
            "outage_seconds": 10,
            "recover_seconds": profile.observe_seconds + LEASE_SECONDS * 3,
            "fault_seconds": profile.fault_seconds,
            "observe_seconds": profile.observe_seconds,
            "window": profile.window,
            "stuck_for": f"{int(LEASE_SECONDS * 4)}s",
        }


@asynccontextmanager
async def _broker_behind_proxy(lab: Lab, postgres_url: str) -> AsyncIterator[None]:
    """A database of its own for the event log, reached through a fault proxy: sets
    ``lab.events_url`` and ``lab.proxy_control``; drops the database afterwards."""
    import uuid
    from urllib.parse import urlsplit

    import asyncpg
    from aiohttp import web

    from hybridmesh.chaos.proxy import FaultProxy, control_app

    name = f"hm_chaos_lab_{uuid.uuid4().hex[:12]}"
    server = urlsplit(postgres_url)
    admin = await asyncpg.connect(postgres_url, timeout=5)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    proxy = FaultProxy((server.hostname or "127.0.0.1", server.port or 5432))
    runner = web.AppRunner(control_app(proxy), access_log=None)
    try:
        host, port = await proxy.start("127.0.0.1", 0)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        lab.proxy_control = f"http://127.0.0.1:{runner.addresses[0][1]}"
        user = f"{server.username}@" if server.username else ""
        lab.events_url = f"postgresql://{user}{host}:{port}/{name}"
        yield
    finally:
        await runner.cleanup()
        await proxy.close()
        admin = await asyncpg.connect(postgres_url, timeout=5)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@asynccontextmanager
async def environment(
    name: str,
    profile: Profile,
    workdir: Path | None = None,
    postgres_url: str = DEFAULT_POSTGRES_URL,
) -> AsyncIterator[Lab]:
    """The reference system with what experiment ``name`` needs, and its load running."""
    from hybridmesh.demo.walkthrough import reference_services_path, reference_system
    from hybridmesh.events import EventBus, open_backend
    from hybridmesh.gateway.config import parse_routes
    from hybridmesh.gateway.state import GatewayState
    from hybridmesh.observability import configure_logging
    from hybridmesh.registry import RegistryCatalog, ServiceRegistry, load_definitions
    from hybridmesh.runtime import Runtime

    async with contextlib.AsyncExitStack() as stack:
        if workdir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="chaos-lab-")))
        workdir.mkdir(parents=True, exist_ok=True)
        lab = Lab(name, workdir, f"sqlite:///{workdir / 'mesh.db'}")
        if name == "broker-unreachable":
            await stack.enter_async_context(_broker_behind_proxy(lab, postgres_url))
        settings = Settings(
            database_url=lab.database_url, events_url=lab.events_url, log_level="WARNING"
        )
        # The services' own log lines (a killed worker's calls cut off, say) go to a file,
        # not between the lab's lines.
        log_file = stack.enter_context((workdir / "services.log").open("w", encoding="utf-8"))
        configure_logging(settings, stream=log_file)
        stack.callback(configure_logging, Settings())
        bus = EventBus(await open_backend(settings), consumer="chaos-lab")
        try:
            async with reference_system(workdir, bus) as urls:
                lab.urls = dict(urls)
                loaded = load_definitions(reference_services_path())
                registry = ServiceRegistry(item.definition for item in loaded.services)
                for service, url in urls.items():
                    registry.with_base_url(service, url)
                async with await Runtime.open(settings, registry=registry) as runtime:
                    await RegistryCatalog(runtime.store).save(list(registry))
                    await runtime.load_definitions(reference_services_path().parent / "definitions")
                    routes = ROUTES.format(
                        legacy=urls["legacy-erp"],
                        inventory=urls["inventory-management"],
                    )
                    await GatewayState(runtime.store).apply(parse_routes(routes, "lab-routes.yaml"))
                    try:
                        await _start_processes(lab, name)
                        async with _load(lab, runtime, profile):
                            yield lab
                    finally:
                        await lab.stop_all()
        finally:
            await bus.close()


async def _start_processes(lab: Lab, name: str) -> None:
    gateway = await lab.start(
        "gateway", "gateway", "--port", "0", "--no-access-log", ready="gateway listening on"
    )
    text = gateway.log.read_text()
    lab.gateway = text.split("gateway listening on ", 1)[1].split()[0]
    for worker in ("worker-1", "worker-2"):
        # The default worker id (HOST:PID:...) names the process: kill_busiest_worker
        # finds the one mid-saga by it.
        await lab.start(
            worker,
            "worker",
            "--lease",
            str(LEASE_SECONDS),
            "--grace",
            "1",
            ready=" running",
        )
    if name == "bad-version-at-25":
        await lab.start("plan-runner", "migrate", "runner", "--lease", "5", ready="started")


@asynccontextmanager
async def _load(lab: Lab, runtime: Any, profile: Profile) -> AsyncIterator[None]:
    """Order sagas and gateway reads until the experiment ends; the orders stop at
    ``profile.orders``."""
    stop = asyncio.Event()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        async with http.post(
            f"{lab.urls['user-service']}/users",
            json={"email": "grace@example.com", "name": "Grace Hopper"},
        ) as answer:
            customer = (await answer.json())["id"]

        async def orders() -> None:
            while not stop.is_set() and len(lab.load.orders) < profile.orders:
                order_id = f"lab-{len(lab.load.orders) + 1:04d}"
                await runtime.engine.start_saga(
                    "order-processing",
                    {
                        "order_id": order_id,
                        "customer_id": customer,
                        "items": [{"sku": "SKU-1", "quantity": 1}],
                        "total": 25.0,
                        "payment_method": "card",
                        "shipping_address": {
                            "street": "1 Analytical Way",
                            "city": "London",
                            "postal_code": "N1",
                            "country": "GB",
                        },
                    },
                    execution_id=order_id,
                )
                lab.load.orders.append(order_id)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), profile.order_every)

        async def reads(path: str) -> None:
            """One reader per route, so a slow route does not slow the others' readers."""
            while not stop.is_set():
                try:
                    async with http.get(f"{lab.gateway}{path}") as answer:
                        await answer.read()
                        lab.load.reads[f"{path} {answer.status}"] += 1
                except (aiohttp.ClientError, TimeoutError):
                    lab.load.reads[f"{path} error"] += 1
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.05)

        if lab.name == "worker-killed":
            # Each saga spends a second in create-shipment: the kill finds sagas mid-step.
            async with http.post(
                f"{lab.urls['shipping-service']}/_admin/faults",
                json={"mode": "latency", "delay": 1.0, "paths": ["/operations/create-shipment"]},
            ) as answer:
                answer.raise_for_status()
        tasks = [asyncio.create_task(orders())]
        tasks += [
            asyncio.create_task(reads(p)) for p in ("/inventory", "/erp/customers", "/content")
        ]
        try:
            await asyncio.sleep(profile.warm_up)
            yield
        finally:
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)


async def run_in_lab(
    name: str,
    profile: Profile,
    report_dir: Path,
    folder: Path | None = None,
    postgres_url: str = DEFAULT_POSTGRES_URL,
    toolkit: bool = False,
) -> dict[str, Any]:
    """Run ``experiments/NAME.yaml`` in its environment, with ``hybridmesh chaos run``'s
    runner or, with ``toolkit``, the Chaos Toolkit's ``chaos run``; write ``NAME.json`` and
    ``NAME.md`` to ``report_dir``; return the report."""
    path = (folder or experiments_folder()) / f"{name}.yaml"
    loaded = load_experiment(path)
    began = time.monotonic()
    async with environment(name, profile, postgres_url=postgres_url) as lab:
        if name == "bad-version-at-25":
            await _prepare_plan(lab)
        if name == "replicator-killed":
            await _start_backfill(lab, profile.customers)
        if toolkit:
            journal = await _run_with_toolkit(lab, path, lab.variables(profile))
        else:
            runner = Runner(loaded.experiment, variables=lab.variables(profile))
            journal = (await asyncio.to_thread(runner.run)).to_json()
        load = lab.load.to_json()
    report = {
        "experiment": name,
        "file": f"experiments/{name}.yaml",
        "runner": "chaos run (Chaos Toolkit)" if toolkit else "hybridmesh chaos run",
        "quick": profile is QUICK,
        "lab_seconds": round(time.monotonic() - began, 1),
        "load": load,
        **journal,
    }
    await asyncio.to_thread(write_report, report_dir, report)
    return report


def regressions(reports: list[dict[str, Any]], expected: dict[str, bool] | None) -> list[str]:
    """The experiments whose hypothesis did not hold: all of them without ``expected``;
    with it (name -> whether the hypothesis held before), only those that held before, or
    are not in it. One expected not to hold is not a regression; it shows in its report."""
    return [
        report["experiment"]
        for report in reports
        if not report["hypothesis_held"]
        and (expected is None or expected.get(report["experiment"], True))
    ]


def _toolkit_var(name: str, value: Any) -> str:
    """``--var`` of the toolkit: ``name:type=value`` (its default type is str)."""
    kind = "int" if isinstance(value, int) else "float" if isinstance(value, float) else None
    return f"{name}:{kind}={value}" if kind else f"{name}={value}"


async def _run_with_toolkit(lab: Lab, path: Path, variables: dict[str, Any]) -> dict[str, Any]:
    """``chaos run --rollback-strategy always`` on ``path`` in the lab; its journal in
    the shape of :meth:`~hybridmesh.chaos.runner.Journal.to_json`."""
    import shutil

    chaos = shutil.which("chaos", path=str(Path(sys.executable).parent)) or shutil.which("chaos")
    if chaos is None:
        raise RuntimeError("the Chaos Toolkit is not installed (pip install chaostoolkit)")
    journal_path = lab.workdir / "journal.json"
    arguments = [chaos, "--no-log-file", "run", "--rollback-strategy", "always"]
    arguments += ["--journal-path", str(journal_path)]
    for name, value in variables.items():
        arguments += ["--var", _toolkit_var(name, value)]
    with (lab.workdir / "chaostoolkit.log").open("wb") as sink:
        child = await asyncio.create_subprocess_exec(
            *arguments, str(path), stdout=sink, stderr=asyncio.subprocess.STDOUT, env=lab.env()
        )
        await child.wait()
    return from_toolkit(json.loads(await asyncio.to_thread(journal_path.read_text)))


def _toolkit_run(phase: str, entry: dict[str, Any]) -> dict[str, Any]:
    run = {
        "phase": phase,
        "name": entry.get("activity", {}).get("name", "?"),
        "type": entry.get("activity", {}).get("type", "?"),
        "status": entry.get("status"),
        "output": entry.get("output"),
        "duration": round(float(entry.get("duration") or 0), 3),
    }
    if entry.get("exception"):
        run["error"] = "".join(entry["exception"])[-300:].strip()
    if "tolerance_met" in entry:
        run["tolerance_met"] = entry["tolerance_met"]
    return run


def from_toolkit(journal: dict[str, Any]) -> dict[str, Any]:
    """A Chaos Toolkit journal as ``hybridmesh chaos run`` writes its report."""
    states = journal.get("steady_states") or {}

    def state(phase: str) -> dict[str, Any]:
        found = states.get(phase) or {}
        return {
            "steady_state_met": found.get("steady_state_met"),
            "probes": [_toolkit_run(phase, p) for p in found.get("probes", [])],
        }

    before, after = state("before"), state("after")
    status = str(journal.get("status"))
    held = status == "completed" and not journal.get("deviated")
    held = held and before["steady_state_met"] is not False
    return {
        "title": journal.get("experiment", {}).get("title", ""),
        "status": status,
        "hypothesis_held": bool(held and after["steady_state_met"] is not False),
        "duration": round(float(journal.get("duration") or 0), 3),
        "steady_states": {"before": before, "after": after},
        "run": [_toolkit_run("method", r) for r in journal.get("run", [])],
        "rollbacks": [_toolkit_run("rollbacks", r) for r in journal.get("rollbacks", [])],
    }


def write_report(report_dir: Path, report: dict[str, Any]) -> None:
    """``NAME.json`` (the journal with the lab's figures) and ``NAME.md``."""
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / f"{report['experiment']}.json").write_text(dumps(report) + "\n")
    (report_dir / f"{report['experiment']}.md").write_text(markdown(report))


async def _prepare_plan(lab: Lab) -> None:
    """Save the strangler-fig plan of ``bad-version-at-25``; the experiment starts it."""
    from hybridmesh.gateway.state import GatewayState
    from hybridmesh.migration.plans import PlanSpec, build_plan
    from hybridmesh.migration.state import MigrationState
    from hybridmesh.store import open_store

    async with await open_store(lab.database_url) as store:
        routes = {s.route.name: s.route for s in await GatewayState(store).routes()}
        plan = build_plan(PlanSpec.model_validate(PLAN), routes)
        await MigrationState(store).save(plan, actor="chaos-lab")


async def _start_backfill(lab: Lab, customers: int) -> None:
    """Seed legacy-erp's customers, store replication ``erp-customers`` asked to run, start
    the replicator that takes it and, once its first chunks are copied, a second one."""
    from hybridmesh.data.config import parse_data
    from hybridmesh.data.control import DataControl
    from hybridmesh.demo.data_walkthrough import _seed_customers
    from hybridmesh.store import open_store

    await _seed_customers(lab.urls["legacy-erp"], customers)
    definitions = parse_data(
        REPLICATION.format(
            legacy=f"sqlite:///{lab.workdir / 'legacy-erp.db'}",
            users=f"sqlite:///{lab.workdir / 'user-service.db'}",
        ),
        "lab-replication.yaml",
    )
    async with await open_store(lab.database_url) as store:
        control = DataControl(store)
        await control.apply(definitions)
        await control.set_desired("erp-customers", "running")
        await lab.start("replicator-1", "replicate", "run", ready="")
        deadline = time.monotonic() + 30
        while True:
            status = (await control.get("erp-customers")).status or {}
            copied = sum(int(t.get("rows_copied", 0)) for t in status.get("tables", []))
            if copied > 0 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
    await lab.start("replicator-2", "replicate", "run", ready="")


def _figure(value: Any) -> str:
    """A probe's or action's output in a line: an SLO's good/total and SLI, a route's
    requests, errors and p95, else the JSON."""
    if isinstance(value, dict) and "slos" in value:
        parts = [f"holds: {value['holds']}"]
        for slo, m in value["slos"].items():
            parts.append(f"{slo}: {m.get('good')}/{m.get('total')} good (sli {m.get('sli')})")
        return "; ".join(parts)
    if isinstance(value, dict) and "error_rate" in value and "requests" in value:
        return (
            f"{value['requests']} requests, {value['errors']} errors "
            f"({value['error_rate']:.1%}), p95 {value['p95_ms']} ms"
        )
    if isinstance(value, dict) and "plan" in value and "steps" in value:
        reason = f": {value['reason']}" if value.get("reason") else ""
        return f"{value['status']} at step {value['step']} of {value['steps']}{reason}"
    text = dumps(value)
    return text if len(text) <= 160 else text[:157] + "..."


def _runs(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Every activity of a report, in the order they ran."""
    states = report["steady_states"]
    return [
        *states["before"]["probes"],
        *report["run"],
        *states["after"]["probes"],
        *report["rollbacks"],
    ]


def markdown(report: dict[str, Any]) -> str:
    """The short report: the verdict, the load, and every probe and action with its
    figure."""
    verdict = "held" if report["hypothesis_held"] else "did not hold"
    lines = [
        f"### {report['title']}",
        "",
        f"`{report['file']}` run by {report['runner']}: **the hypothesis {verdict}** "
        f"(status `{report['status']}`, {report['duration']:.1f} s of experiment, "
        f"{report['lab_seconds']:.1f} s with the environment"
        f"{', quick' if report['quick'] else ''}).",
        "",
        f"Load: {report['load']['orders_started']} order sagas started; gateway reads "
        + ", ".join(f"{k}: {v}" for k, v in sorted(report["load"]["gateway_reads"].items()))
        + ".",
        "",
        "| phase | activity | status | tolerance | figure |",
        "|---|---|---|---|---|",
    ]
    for run in _runs(report):
        met = {None: "", True: "met", False: "**not met**"}[run.get("tolerance_met")]
        figure = run.get("error") or _figure(run.get("output"))
        figure = figure.replace("|", "/").replace("\n", " ")
        lines.append(f"| {run['phase']} | {run['name']} | {run['status']} | {met} | `{figure}` |")
    return "\n".join(lines) + "\n"


__all__ = [
    "DEFAULT_POSTGRES_URL",
    "EXPERIMENTS",
    "FULL",
    "QUICK",
    "Lab",
    "Profile",
    "environment",
    "from_toolkit",
    "markdown",
    "regressions",
    "run_in_lab",
]
