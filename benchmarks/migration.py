"""Migration plans driven by runner processes, with a real gateway under steady load.

One ``hybridmesh gateway`` process routes steady load (an aiohttp load generator in its own
process, ``RATE`` requests a second, open loop) to two aiohttp services on loopback, *old*
and *new* (:mod:`benchmarks._migration_traffic`; *new* can be switched to answer 500). The
gateway writes its per-second windows to the store as it does in production, and
``hybridmesh migrate runner --lease LEASE`` processes drive strangler-fig plans whose steps
(``STEPS``) are gated on those windows (``GATE``: interval 1 s, window 3 s). The store is a
SQLite file, which the gateway, the runners and this process share.

Throughout each plan this process samples, every ``SAMPLE_SECONDS`` and in one read (one
statement joining the two rows), the plan's row in ``mig_plans`` (status, step, phase,
lease epoch) and its route in ``gw_routes``, and counts the samples where the target's
weight at the gateway differs from the weight the plan's last executed step set
(:func:`planned_weight`).

Three runs, each on a route of its own (``/healthy``, ``/crash``, ``/rollback-N``):

1. **Shifts cost nothing:** a healthy plan goes 0 → 100 %; the load generator's failed
   requests (non-2xx or no answer) must be 0.
2. **Runner crash:** the same plan; the runner is killed with SIGKILL half-way through the
   window of the steps in ``KILLS``, and a new runner process is started at once, which
   takes the plan over when the dead one's lease expires. In the window of ``PAUSE_AT`` it
   is stopped (SIGSTOP) instead, and let go on (SIGCONT) once its successor took over: the
   lease epoch must fence it. The plan must complete, every step must have exactly one
   ``migration.step.started`` in ``mig_audit``, and no sample may show the gateway's weight
   apart from the plan's.
3. **Time to rollback:** plans with ``rollback: zero`` ramp to 25 %, whose step has a long
   window (``ROLLBACK_WINDOW``) so that only its interval measurements can catch a failure
   early; a moment into that step *new* is switched to answer 500, and the store is polled
   every ``SAMPLE_SECONDS`` until the route gives *new* 0 %. Goal: at most one gate
   interval + 1 s. Each repetition has a new route, so the gateway's outlier ejection of
   *new* in the one before does not carry over, and a runner started at a random moment,
   so the offset within the second at which it measures (against the one at which the
   gateway writes a finished second, also recorded) varies as between deployments: it
   decides whether an interval measurement can see the failure at all.

Needs nothing beyond the project's own dependencies.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import aiohttp

from benchmarks._report import ROOT, failed_round, machine, write_json, write_section
from benchmarks.gateway import _free_port, _process, _wait_port
from hybridmesh.core.serialization import loads
from hybridmesh.gateway.config import Route, parse_routes
from hybridmesh.gateway.state import GatewayState
from hybridmesh.migration.plans import MigrationPlan, PlanSpec, PrepareRoute, SetWeight, build_plan
from hybridmesh.migration.state import AuditEntry, MigrationState, PlanConflictError
from hybridmesh.store import Store, open_store

#: Requests a second the load generator sends through the gateway, and its connections.
RATE = 400
CONNECTIONS = 16
#: The runners' ``--lease`` (seconds).
LEASE = 2.0
#: The target's steps, in percent.
STEPS = (1, 5, 10, 25, 50, 75, 100)
#: Every step's gate. At 1 % of ``RATE`` the target sees about 4 requests a second.
GATE: dict[str, Any] = {
    "interval": 1,
    "window": 3,
    "min_requests": 3,
    "max_error_rate": 0.01,
    "max_p95_ms": 500,
}
#: Seconds between two samples of the plan's row and its route.
SAMPLE_SECONDS = 0.05
#: Step indexes (0 is ``prepare``) whose window the runner is killed in, half-way through.
KILLS = (2, 4, 6)  # 5 %, 25 %, 75 %
QUICK_KILLS = (2, 5)  # 5 %, 50 %
#: The step in whose window the runner is stopped (SIGSTOP) instead, then let go on.
PAUSE_AT = 7  # 100 %
#: Repetitions of the rollback, and the window of their 25 % step (seconds).
ROLLBACKS = 4
QUICK_ROLLBACKS = 2
ROLLBACK_WINDOW = 15
#: The step index of 25 % in the rollback plans (prepare, 1, 5, 10, 25).
ROLLBACK_STEP = 4
#: Seconds a plan may take before the benchmark gives up on it.
PLAN_TIMEOUT = 150.0
#: Statuses in which no runner moves a plan on: ended, or waiting for a person.
STOPPED = ("completed", "rolled_back", "aborted", "paused", "waiting_approval")
SEED = 7


def _routes(old: int, new: int, names: list[str]) -> str:
    return "routes:\n" + "".join(
        f"""  - name: {name}
    match: {{path: {{prefix: /{name}}}}}
    backends:
      - {{name: old, url: "http://127.0.0.1:{old}", weight: 100}}
      - {{name: new, url: "http://127.0.0.1:{new}", weight: 0}}
"""
        for name in names
    )


def _plan_spec(route: str) -> dict[str, Any]:
    """A strangler-fig plan moving ``route`` from *old* to *new* through ``STEPS``."""
    return {
        "name": route,
        "source": "legacy",
        "strategy": "strangler_fig",
        "criteria": GATE,
        "targets": [
            {
                "service": "orders",
                "route": route,
                "backend": "new",
                "source_backend": "old",
                "steps": list(STEPS),
                "retire": False,
            }
        ],
    }


def _rollback_spec(route: str, window: float) -> dict[str, Any]:
    """Prepare, 1, 5 and 10 % on the usual gate, then 25 % with a ``window`` long one."""

    def weight(percent: float, gate: dict[str, Any]) -> dict[str, Any]:
        return {
            "name": f"new {percent:g}%",
            "type": "routing",
            "action": {"do": "set_weight", "route": route, "backend": "new", "percent": percent},
            "gate": gate,
        }

    prepare = {
        "do": "prepare_route",
        "route": route,
        "source_backend": "old",
        "target_backend": "new",
    }
    return {
        "name": route,
        "source": "legacy",
        "strategy": "strangler_fig",
        "rollback": "zero",
        "steps": [
            {"name": "prepare", "type": "routing", "action": prepare},
            *(weight(p, GATE) for p in (1, 5, 10)),
            weight(25, {**GATE, "window": window}),
        ],
    }


# -- the processes ---------------------------------------------------------------------------


class Runners:
    """The ``migrate runner`` processes: the one driving plans, killed, paused and replaced
    on demand, and the paused ones let go on afterwards beside it."""

    def __init__(self, env: dict[str, str], work: Path) -> None:
        self.env, self.work = env, work
        self.process: subprocess.Popen[bytes] | None = None
        self.others: list[subprocess.Popen[bytes]] = []
        self.started = 0
        self._logs: list[IO[bytes]] = []

    def start(self) -> None:
        self.started += 1
        log = (self.work / f"runner-{self.started}.log").open("wb")
        self._logs.append(log)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "hybridmesh", "migrate", "runner", "--lease", str(LEASE)],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def kill(self) -> None:
        """SIGKILL the driving runner and start another."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        self.start()

    def restart(self) -> None:
        """Stop the driving runner (SIGTERM: after its current tick) and start another."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(15)
        self.start()

    def pause(self) -> subprocess.Popen[bytes]:
        """SIGSTOP the driving runner and start another; the stopped one is returned."""
        assert self.process is not None
        stopped = self.process
        stopped.send_signal(signal.SIGSTOP)
        self.others.append(stopped)
        self.start()
        return stopped

    def stop(self) -> None:
        for process in [*self.others, self.process]:
            if process is None or process.poll() is not None:
                continue
            process.send_signal(signal.SIGCONT)
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for log in self._logs:
            log.close()


class Load:
    """The load generator's process, sending to one path of the gateway."""

    def __init__(self, url: str, out: Path) -> None:
        self.out = out
        self.process = subprocess.Popen(
            [
                sys.executable,
                *("-m", "benchmarks._migration_traffic", "load"),
                *(url, str(RATE), str(CONNECTIONS), str(out)),
            ],
            cwd=ROOT,
        )

    async def stop(self) -> dict[str, Any]:
        """Stop sending; what the load generator saw."""
        self.process.send_signal(signal.SIGTERM)
        await asyncio.to_thread(self.process.wait, 30)
        figures: dict[str, Any] = json.loads(self.out.read_text())
        return figures

    def kill(self) -> None:
        """End it if it still runs (a run that failed half-way)."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


# -- watching a plan -------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    """One read of a plan's row and its route."""

    at: float
    status: str
    step: int
    phase: str
    epoch: int
    window_started: float | None
    #: The target's weight at the gateway, and the weight the plan's last executed step set.
    weight: float
    planned: float


def planned_weight(plan: MigrationPlan, status: str, step: int, phase: str, backend: str) -> float:
    """The weight of ``backend`` that the plan's last executed step set (its rollback's when
    the plan was rolled back or aborted); 0 before any (the route starts there)."""
    executed = step if phase == "monitoring" else step - 1
    if status in ("rolled_back", "aborted") and executed >= 0:
        undo = plan.rollback_action(executed)
        if isinstance(undo, SetWeight):
            return float(undo.percent)
    for index in range(min(executed, len(plan.steps) - 1), -1, -1):
        action = plan.steps[index].action
        if isinstance(action, SetWeight) and action.backend == backend:
            return float(action.percent)
        if isinstance(action, PrepareRoute) and action.target_backend == backend:
            return 0.0
    return 0.0


_SAMPLE = (
    "SELECT p.status, p.step, p.phase, p.lease_epoch, p.window_started, p.reason, r.spec "
    "FROM mig_plans p, gw_routes r WHERE p.name = ? AND r.name = ?"
)


@dataclass
class Watch:
    """Samples a plan and its route until stopped; counts where they disagree.

    A plan that pauses because a window had too few requests (at 1 % the target gets a few
    a second) is resumed at once, as its reason asks a person to, and counted."""

    store: Store
    plan: MigrationPlan
    route: str
    backend: str = "new"
    samples: int = 0
    mismatches: int = 0
    first_mismatches: list[dict[str, Any]] = field(default_factory=list)
    #: (seconds since the watch began, weight) at every change of the target's weight.
    weights: list[tuple[float, float]] = field(default_factory=list)
    latest: Sample | None = None
    began: float = field(default_factory=time.time)
    resumed: int = 0

    async def run(self) -> None:
        while True:
            row = await self.store.fetch_one(_SAMPLE, self.plan.name, self.route)
            now = time.time()
            if row is not None:
                route = Route.model_validate(loads(row["spec"]))
                weight = route.backend(self.backend).weight
                planned = planned_weight(
                    self.plan, row["status"], int(row["step"]), row["phase"], self.backend
                )
                sample = Sample(
                    now,
                    row["status"],
                    int(row["step"]),
                    row["phase"],
                    int(row["lease_epoch"]),
                    row["window_started"],
                    weight,
                    planned,
                )
                self.samples += 1
                if not math.isclose(weight, planned, abs_tol=0.005):
                    self.mismatches += 1
                    if len(self.first_mismatches) < 10:
                        self.first_mismatches.append(asdict(sample))
                if not self.weights or self.weights[-1][1] != weight:
                    self.weights.append((round(now - self.began, 2), weight))
                if sample.status == "paused" and "inconclusive" in (row["reason"] or ""):
                    await self._resume()
                else:
                    self.latest = sample
            await asyncio.sleep(SAMPLE_SECONDS)

    async def _resume(self) -> None:
        with contextlib.suppress(PlanConflictError):
            await MigrationState(self.store).control(
                self.plan.name, "resume", actor="benchmark", reason="too few requests"
            )
            self.resumed += 1

    async def until(self, condition: Callable[[Sample], bool], within: float) -> Sample:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if self.latest is not None and condition(self.latest):
                return self.latest
            await asyncio.sleep(SAMPLE_SECONDS / 5)
        raise TimeoutError(f"plan {self.plan.name}: still {self.latest} after {within:g} s")

    def figures(self) -> dict[str, Any]:
        return {
            "samples": self.samples,
            "mismatches": self.mismatches,
            "first_mismatches": self.first_mismatches,
            "weights_seen": self.weights,
            "inconclusive_resumed": self.resumed,
        }


@contextlib.asynccontextmanager
async def _watching(store: Store, plan: MigrationPlan, route: str) -> AsyncIterator[Watch]:
    watch = Watch(store, plan, route)
    task = asyncio.create_task(watch.run())
    try:
        yield watch
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


# -- the bench ------------------------------------------------------------------------------


class Bench:
    """The store, the gateway's address and the processes one run shares."""

    def __init__(self, store: Store, work: Path, gateway: int, new: int, runners: Runners) -> None:
        self.store = store
        self.work = work
        self.gateway = gateway
        self.new = new
        self.runners = runners
        self.loads: list[Load] = []

    async def save(self, spec: dict[str, Any]) -> MigrationPlan:
        """Store the plan ``spec`` (not started)."""
        routes = {s.route.name: s.route for s in await GatewayState(self.store).routes()}
        plan = build_plan(PlanSpec.model_validate(spec), routes)
        await MigrationState(self.store).save(plan, actor="benchmark")
        return plan

    async def start(self, name: str) -> float:
        await MigrationState(self.store).control(name, "start", actor="benchmark", reason=None)
        return time.time()

    def load(self, route: str) -> Load:
        load = Load(f"http://127.0.0.1:{self.gateway}/{route}", self.work / f"load-{route}.json")
        self.loads.append(load)
        return load

    async def switch_new(self, what: str) -> float:
        """Switch *new* to ``fail`` or ``heal``; the Unix time it switched."""
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"http://127.0.0.1:{self.new}/_{what}") as response,
        ):
            return float((await response.json())["at"])

    async def audit(self, name: str) -> list[AuditEntry]:
        return await MigrationState(self.store).audit(name, limit=10_000)

    async def audit_figures(self, name: str, steps: int) -> dict[str, Any]:
        """From the audit: how many times each step index was started, how many runners
        acted, and the verdicts of the gates' interval measurements."""
        entries = await self.audit(name)
        started = Counter(e.step for e in entries if e.action == "migration.step.started")
        actors = [e.actor for e in entries if e.action.startswith("migration.step.")]
        verdicts: Counter[str] = Counter()
        for entry in entries:
            if entry.action == "migration.step.completed":
                tally = entry.details.get("gate") or {}
            elif entry.action == "migration.gate.failed":
                tally = entry.details
            else:
                continue
            for key in ("passed", "failed", "inconclusive"):
                verdicts[key] += int(tally.get(key) or 0)
        return {
            "started": {str(index): started.get(index, 0) for index in range(steps)},
            "started_twice": sorted(i for i, n in started.items() if n > 1),
            "never_started": [i for i in range(steps) if started.get(i, 0) == 0],
            "runners_acting": len(dict.fromkeys(actors)),
            "interval_measurements": dict(verdicts),
            "actions": dict(Counter(e.action for e in entries)),
        }


def _without_failures(traffic: dict[str, Any]) -> dict[str, Any]:
    """The load generator's figures, its list of failures kept only when there were any."""
    return traffic if traffic["failed"] else {k: v for k, v in traffic.items() if k != "failures"}


async def _healthy(bench: Bench) -> dict[str, Any]:
    """A healthy plan 0 → 100 % under load: no request may fail."""
    plan = await bench.save(_plan_spec("healthy"))
    load = bench.load("healthy")
    await asyncio.sleep(1.5)  # the load generator starts, the gateway has traffic
    async with _watching(bench.store, plan, "healthy") as watch:
        began = await bench.start(plan.name)
        final = await watch.until(lambda s: s.status in STOPPED, PLAN_TIMEOUT)
        ended = time.time()
    await asyncio.sleep(1.0)
    traffic = _without_failures(await load.stop())
    return {
        "status": final.status,
        "plan_seconds": round(ended - began, 2),
        "load": traffic,
        "watch": watch.figures(),
        "audit": await bench.audit_figures(plan.name, len(plan.steps)),
    }


async def _crash(bench: Bench, kills: tuple[int, ...], pause_at: int) -> dict[str, Any]:
    """The same plan, its runner killed with SIGKILL half-way through the window of the
    steps ``kills``, then stopped (SIGSTOP) in that of step ``pause_at`` until another took
    the plan over, and let go on (SIGCONT) beside it."""
    plan = await bench.save(_plan_spec("crash"))
    window = float(GATE["window"])
    load = bench.load("crash")
    await asyncio.sleep(1.5)
    killed: list[dict[str, Any]] = []
    paused: dict[str, Any] = {}
    resumed: tuple[int, float] | None = None
    async with _watching(bench.store, plan, "crash") as watch:
        began = await bench.start(plan.name)
        for index in (*kills, pause_at):

            def halfway(s: Sample, index: int = index) -> bool:
                return (
                    s.step == index
                    and s.phase == "monitoring"
                    and s.window_started is not None
                    and time.time() - s.window_started >= window / 2
                ) or s.status in STOPPED

            seen = await watch.until(halfway, PLAN_TIMEOUT)
            if seen.status in STOPPED:
                break
            at = time.time()
            stopped = bench.runners.pause() if index == pause_at else None
            if stopped is None:
                bench.runners.kill()

            def taken_over(s: Sample, epoch: int = seen.epoch) -> bool:
                return s.epoch > epoch

            taken = await watch.until(taken_over, PLAN_TIMEOUT)
            figures = {
                "step": index,
                "percent": STEPS[index - 1],
                "into_window_s": round(at - (seen.window_started or at), 2),
                "taken_over_after_s": round(taken.at - at, 2),
            }
            if stopped is None:
                killed.append(figures)
                continue
            stopped.send_signal(signal.SIGCONT)
            paused, resumed = figures, (stopped.pid, time.time())
        final = await watch.until(lambda s: s.status in STOPPED, PLAN_TIMEOUT)
        ended = time.time()
    await asyncio.sleep(1.0)
    traffic = _without_failures(await load.stop())
    if resumed is not None:
        # What the stopped runner wrote once it went on: nothing, its lease being fenced.
        pid, since = resumed
        paused["writes_after_resuming"] = sum(
            1 for e in await bench.audit(plan.name) if e.actor.endswith(f":{pid}") and e.at >= since
        )
    return {
        "status": final.status,
        "plan_seconds": round(ended - began, 2),
        "kills": killed,
        "paused": paused,
        "load": traffic,
        "watch": watch.figures(),
        "audit": await bench.audit_figures(plan.name, len(plan.steps)),
    }


async def _write_lags(store: Store, route: str, lags: list[float]) -> None:
    """Each time a newer second of ``route`` appears in ``gw_windows``: how long after that
    second ended (read every 20 ms, so up to 20 ms late)."""
    newest = None
    while True:
        second = await store.fetch_value(
            "SELECT MAX(second) FROM gw_windows WHERE route = ?", route
        )
        if second is not None and newest is not None and second > newest:
            lags.append(time.time() - (second + 1))
        newest = second if second is not None else newest
        await asyncio.sleep(0.02)


async def _rollback_once(
    bench: Bench, route: str, window: float, rng: random.Random
) -> dict[str, Any]:
    # A runner started at a random moment: when in each second it measures, against when
    # the gateway writes the second before, varies from one repetition to the next as it
    # does from one deployment to another.
    await asyncio.sleep(rng.random())
    await asyncio.to_thread(bench.runners.restart)
    plan = await bench.save(_rollback_spec(route, window))
    await bench.switch_new("heal")
    load = bench.load(route)
    lags: list[float] = []
    probe = asyncio.create_task(_write_lags(bench.store, route, lags))
    try:
        await asyncio.sleep(1.5)
        async with _watching(bench.store, plan, route) as watch:
            await bench.start(plan.name)
            reached = await watch.until(
                lambda s: (
                    (s.step == ROLLBACK_STEP and s.phase == "monitoring") or s.status in STOPPED
                ),
                PLAN_TIMEOUT,
            )
            if reached.status in STOPPED:
                raise RuntimeError(f"plan {route} stopped {reached.status} before 25 %")
            await asyncio.sleep(0.5 + rng.random())
            switched = await bench.switch_new("fail")
            zero = await watch.until(lambda s: s.weight == 0 or s.status in STOPPED, window + 10)
            final = await watch.until(lambda s: s.status in STOPPED, window + 10)
        await asyncio.sleep(1.0)
    finally:
        probe.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await probe
    traffic = await load.stop()
    await bench.switch_new("heal")
    entries = await bench.audit(plan.name)

    def at(action: str) -> float | None:
        found = [e.at for e in entries if e.action == action]
        return found[-1] if found else None

    failed_gate = [e.details for e in entries if e.action == "migration.gate.failed"]
    rolled_back, gate_failed = at("migration.rolled_back"), at("migration.gate.failed")
    after = [f for f in traffic.get("failures", []) if f[0] >= switched]
    tally = failed_gate[-1] if failed_gate else {}
    second_ends = math.floor(switched) + 1
    return {
        "route": route,
        "status": final.status,
        "into_step_s": round(switched - (reached.window_started or switched), 3),
        "switch_offset_in_second": round(switched % 1, 3),
        "rollback_seconds": round(zero.at - switched, 3) if zero.weight == 0 else None,
        "rolled_back_at_s": round(rolled_back - switched, 3) if rolled_back else None,
        "to_second_end_s": round(second_ends - switched, 3),
        # The runner measures every interval from the step's start: this far past a second.
        "runner_measures_past_second_s": round((reached.window_started or 0.0) % 1, 3),
        # A second first appears in the store this long after it ends (median; negative:
        # while it is under way, as counted so far).
        "gateway_writes_after_s": round(statistics.median(lags), 3) if lags else None,
        "gate_failed_after_second_end_s": round(gate_failed - second_ends, 3)
        if gate_failed
        else None,
        "measurements_before_failure": {
            key: tally.get(key) for key in ("measurements", "passed", "failed", "inconclusive")
        },
        "failing_measurements": tally.get("failures", []),
        # Which measurement failed: one of the step's intervals, or its whole window.
        "caught_by": _caught_by(tally.get("failures", []), window),
        "client_failures_after_switch": len(after),
        "last_client_failure_s": round(after[-1][0] - switched, 3) if after else None,
        "load": {k: v for k, v in traffic.items() if k != "failures"},
        "watch": {k: v for k, v in watch.figures().items() if k != "weights_seen"},
    }


def _caught_by(failures: list[dict[str, Any]], window: float) -> str | None:
    if not failures:
        return None
    return "window" if failures[-1].get("seconds") == round(window) else "interval"


async def _rollbacks(bench: Bench, count: int, window: float) -> dict[str, Any]:
    rng = random.Random(SEED)
    runs: list[dict[str, Any]] = []
    for index in range(1, count + 1):
        try:
            runs.append(await _rollback_once(bench, f"rollback-{index}", window, rng))
        except Exception as error:
            runs.append(failed_round(error))
        finally:
            for load in bench.loads:
                load.kill()
    times = [r["rollback_seconds"] for r in runs if r.get("rollback_seconds") is not None]
    return {
        "window_s": window,
        "runs": runs,
        "median_s": round(statistics.median(times), 3) if times else None,
        "max_s": max(times) if len(times) == len(runs) and times else None,
    }


async def _scenario(
    name: str, bench: Bench, call: Coroutine[Any, Any, dict[str, Any]]
) -> dict[str, Any]:
    print(f"migration benchmark: {name}", file=sys.stderr, flush=True)
    try:
        result: dict[str, Any] = await call
    except Exception as error:
        result = failed_round(error)
        result["logs"] = _log_tails(bench.work)
    finally:
        for load in bench.loads:
            load.kill()
    return result


def _log_tails(work: Path) -> dict[str, str]:
    """The end of each process's log, kept with a run that failed."""
    return {
        path.name: path.read_text(errors="replace")[-3000:] for path in sorted(work.glob("*.log"))
    }


async def run(*, quick: bool = False) -> dict[str, Any]:
    kills = QUICK_KILLS if quick else KILLS
    rollbacks = QUICK_ROLLBACKS if quick else ROLLBACKS
    results: dict[str, Any] = {
        "benchmark": "migration",
        "machine": machine(),
        "quick": quick,
        "store": "sqlite",
        "rate": RATE,
        "connections": CONNECTIONS,
        "lease_s": LEASE,
        "steps": list(STEPS),
        "gate": GATE,
        "sample_s": SAMPLE_SECONDS,
        "load_before": [round(x, 2) for x in os.getloadavg()],
    }
    with tempfile.TemporaryDirectory(prefix="hm-mig-bench-") as folder:
        work = Path(folder)
        ports = {name: _free_port() for name in ("old", "new", "gateway")}
        database = f"sqlite:///{work / 'mesh.db'}"
        names = ["healthy", "crash", *(f"rollback-{i}" for i in range(1, rollbacks + 1))]
        env = {**os.environ, "HYBRIDMESH_DATABASE_URL": database, "HYBRIDMESH_LOG_LEVEL": "INFO"}
        env.pop("HYBRIDMESH_REDIS_URL", None)
        async with await open_store(database) as store:
            await store.upgrade()
            routes = parse_routes(_routes(ports["old"], ports["new"], names), "routes.yaml")
            await GatewayState(store).apply(routes)
            runners = Runners(env, work)
            traffic = [sys.executable, "-m", "benchmarks._migration_traffic", "upstream"]
            gateway_log = (work / "gateway.log").open("wb")
            try:
                with (
                    _process([*traffic, "old", str(ports["old"])], cwd=ROOT),
                    _process([*traffic, "new", str(ports["new"])], cwd=ROOT),
                    _process(
                        [
                            *(sys.executable, "-m", "hybridmesh", "gateway"),
                            *("--no-access-log", "--port", str(ports["gateway"])),
                        ],
                        env=env,
                        stdout=gateway_log,
                        stderr=subprocess.STDOUT,
                    ),
                ):
                    for name in ports:
                        await asyncio.to_thread(_wait_port, ports[name])
                    runners.start()
                    bench = Bench(store, work, ports["gateway"], ports["new"], runners)
                    results["healthy"] = await _scenario("healthy", bench, _healthy(bench))
                    results["crash"] = await _scenario(
                        "crash", bench, _crash(bench, kills, PAUSE_AT)
                    )
                    results["rollback"] = await _scenario(
                        "rollback", bench, _rollbacks(bench, rollbacks, ROLLBACK_WINDOW)
                    )
                    results["runners_started"] = runners.started
            finally:
                runners.stop()
                gateway_log.close()
    results["load_after"] = [round(x, 2) for x in os.getloadavg()]
    results["goals"] = _goals(results)
    write_json("migration", results)
    write_section("migration", _markdown(results, quick))
    return results


def _goals(results: dict[str, Any]) -> dict[str, Any]:
    healthy, crash, rollback = (results.get(k, {}) for k in ("healthy", "crash", "rollback"))
    twice = crash.get("audit", {}).get("started_twice")
    mismatches = crash.get("watch", {}).get("mismatches")
    longest = rollback.get("max_s")
    within = float(GATE["interval"]) + 1
    load = healthy.get("load", {})
    failed = load.get("failed")
    return {
        "crash_completed": {
            "value": crash.get("status"),
            "goal": "completed",
            "met": crash.get("status") == "completed",
        },
        "crash_steps_started_twice": {
            "value": None if twice is None else len(twice),
            "goal": 0,
            "met": twice == [] and not crash.get("audit", {}).get("never_started"),
        },
        "crash_weight_mismatches": {"value": mismatches, "goal": 0, "met": mismatches == 0},
        "rollback_seconds": {
            "value": longest,
            "median": rollback.get("median_s"),
            "goal": within,
            "met": longest is not None and longest <= within,
        },
        "shift_failures": {
            "value": failed,
            "goal": 0,
            "met": failed == 0 and healthy.get("status") == "completed",
        },
    }


def _verdict(goal: dict[str, Any]) -> str:
    return "met" if goal["met"] else "missed"


def _markdown(results: dict[str, Any], quick: bool) -> str:
    m, goals = results["machine"], results["goals"]
    gate = results["gate"]
    lines = [
        "## Migration plans" + (" (quick run)" if quick else ""),
        "",
        f"One `hybridmesh gateway` process carries {results['rate']} requests/s (an aiohttp "
        f"load generator in its own process, open loop, {results['connections']} keep-alive "
        "connections) to two aiohttp services on loopback, *old* and *new*; `hybridmesh "
        f"migrate runner --lease {results['lease_s']:g}` processes drive strangler-fig plans "
        f"through {', '.join(f'{p:g}' for p in results['steps'])} %, each step gated on the "
        f"windows the gateway writes (interval {gate['interval']} s, window {gate['window']} "
        f"s, at least {gate['min_requests']} requests, error rate under "
        f"{gate['max_error_rate']:.0%}, p95 under {gate['max_p95_ms']} ms), on a SQLite store "
        f"the processes share. Every {results['sample_s'] * 1000:.0f} ms one read (one "
        "statement) takes the plan's row and its route's weights. Command: `make bench` "
        f"(`python -m benchmarks migration`). Machine: {m['cpus']} CPUs, Python "
        f"{m['python']}, {m['date']}; load average {results['load_before'][0]} before, "
        f"{results['load_after'][0]} after.",
        "",
    ]
    lines += _crash_lines(results.get("crash", {}), goals)
    lines += _rollback_lines(results.get("rollback", {}), goals, gate)
    lines += _healthy_lines(results.get("healthy", {}), goals)
    resumed = _resumed(results)
    if resumed:
        lines += [
            "",
            f"{resumed} step window{'s' if resumed > 1 else ''} had too few requests for the "
            "gate (at 1 % *new* gets a few a second): the plan paused as inconclusive and the "
            "benchmark resumed it, as the pause's reason asks a person to.",
        ]
    return "\n".join(lines)


def _resumed(results: dict[str, Any]) -> int:
    watches = [results.get(k, {}).get("watch", {}) for k in ("healthy", "crash")]
    watches += [r.get("watch", {}) for r in results.get("rollback", {}).get("runs", [])]
    return sum(int(w.get("inconclusive_resumed") or 0) for w in watches)


def _crash_lines(crash: dict[str, Any], goals: dict[str, Any]) -> list[str]:
    if "error" in crash:
        return [f"- **Runner crash:** failed: {crash['error']}", ""]
    audit, watch, paused = crash["audit"], crash["watch"], crash.get("paused") or {}
    kills = "; ".join(
        f"at {k['percent']:g} % ({k['into_window_s']} s into its window; taken over after "
        f"{k['taken_over_after_s']} s)"
        for k in crash["kills"]
    )
    stopped = (
        f" Then at {paused['percent']:g} % it was stopped (SIGSTOP) instead, taken over after "
        f"{paused['taken_over_after_s']} s and let go on (SIGCONT) beside its successor: it "
        f"wrote {paused['writes_after_resuming']} audit entries after that, its lease fenced."
        if paused
        else ""
    )
    return [
        f"- **Runner crash:** the runner was killed with SIGKILL {len(crash['kills'])} times "
        f"half-way through a step's window, {kills}, a new runner process started at once "
        f"each time.{stopped} The plan ended **{crash['status']}** in "
        f"{crash['plan_seconds']} s (goal completed: {_verdict(goals['crash_completed'])}). "
        "Steps with more than one `migration.step.started`: "
        f"**{len(audit['started_twice'])}** of {len(audit['started'])} (goal 0: "
        f"{_verdict(goals['crash_steps_started_twice'])}). Samples where the gateway's weight "
        "for *new* differed from the one the plan's last executed step set: "
        f"**{watch['mismatches']}** of {watch['samples']:,} (goal 0: "
        f"{_verdict(goals['crash_weight_mismatches'])}). Failed requests meanwhile: "
        f"{crash['load']['failed']} of {crash['load']['requests']:,}.",
        "",
    ]


def _rollback_lines(
    rollback: dict[str, Any], goals: dict[str, Any], gate: dict[str, Any]
) -> list[str]:
    if "error" in rollback:
        return [f"- **Time to rollback:** failed: {rollback['error']}", ""]
    goal = goals["rollback_seconds"]
    lines = [
        f"- **Time to rollback:** plans with `rollback: zero` ramp *new* to 25 % (that step's "
        f"window {rollback['window_s']:g} s, so only its interval measurements can end it "
        "early); a moment into that step *new* is switched to answer 500. From the switch to "
        f"the first read showing 0 % on *new*: median **{rollback['median_s']} s**, longest "
        f"**{goal['value']} s** (goal ≤ {goal['goal']:g} s, one interval + 1 s: "
        f"**{_verdict(goal)}**). A runner process started at a random moment drives each run.",
        "",
        "| run | switch, s into the step (into its second) | runner measures, s past each "
        "second | a second first in the store, s after its end | failed by | interval "
        "measurements before (pass/inconclusive) | rolled back (audit), s | 0 % read, s "
        "| requests failed at clients (last, s) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for run in rollback["runs"]:
        if "error" in run:
            lines.append(f"| failed: {run['error']} | | | | | | | | |")
            continue
        before = run["measurements_before_failure"]
        lines.append(
            f"| {run['route']} | {run['into_step_s']} ({run['switch_offset_in_second']}) | "
            f"{run['runner_measures_past_second_s']} | {run['gateway_writes_after_s']} | "
            f"{run['caught_by']} | {before.get('passed')}/{before.get('inconclusive')} | "
            f"{run['rolled_back_at_s']} | {run['rollback_seconds']} | "
            f"{run['client_failures_after_switch']} ({run['last_client_failure_s']}) |"
        )
    lines += ["", _rollback_explained(rollback, gate), ""]
    return lines


def _rollback_explained(rollback: dict[str, Any], gate: dict[str, Any]) -> str:
    """What the time to rollback is made of, with this run's figures."""
    runs = [r for r in rollback["runs"] if "error" not in r]
    caught = Counter(r.get("caught_by") for r in runs)
    lags = [r["gateway_writes_after_s"] for r in runs if r.get("gateway_writes_after_s")]
    lag = f"{statistics.median(lags):.2f} s " if lags else ""
    return (
        "  What the time is made of. The gateway writes its windows once a second, the second "
        f"under way included as counted so far (here it first appeared {lag}after that "
        "second's end; negative: while it was under way), and the gate's interval "
        "measurement reads every second it has not judged yet, up to the one under way. So a "
        "failure is read at most one write period after it happens, by the next interval "
        f"measurement: up to 1 s + {gate['interval']} s, whatever the offset between the "
        "runner's measurements and the gateway's writes. The gateway's outlier ejection "
        "takes *new* out within milliseconds of the switch; the share meant for it, served by "
        "*old* meanwhile, still counts against *new* in the windows, so the gate sees it. "
        f"In {caught['interval']} of {len(runs)} runs an interval measurement caught the "
        f"failure; in {caught['window']} only the judgement at the end of the window "
        f"({rollback['window_s']:g} s)."
    )


def _healthy_lines(healthy: dict[str, Any], goals: dict[str, Any]) -> list[str]:
    if "error" in healthy:
        return [f"- **Shifts cost nothing:** failed: {healthy['error']}"]
    load, verdicts = healthy["load"], healthy["audit"]["interval_measurements"]
    return [
        f"- **Shifts cost nothing:** while a healthy plan took *new* from 0 to 100 % in "
        f"{healthy['plan_seconds']} s ({healthy['status']}), the load generator sent "
        f"{load['requests']:,} requests ({load['sides'].get('old', 0):,} answered by "
        f"*old*, {load['sides'].get('new', 0):,} by *new*; p50 {load['p50_ms']} ms, p99 "
        f"{load['p99_ms']} ms); failed requests (non-2xx or no answer): **{load['failed']}** "
        f"(goal 0: {_verdict(goals['shift_failures'])}). The gateway's weight differed from "
        f"the plan's in {healthy['watch']['mismatches']} of {healthy['watch']['samples']:,} "
        f"samples; interval measurements: {verdicts.get('passed', 0)} passed, "
        f"{verdicts.get('inconclusive', 0)} inconclusive.",
    ]


__all__ = ["run"]
