"""Where a migration plan stands and how it got there, as ``migrate status|show --json`` and
the control plane's ``/api/v1/migrations`` answer it.

:func:`status_view` is the plan's current step, the route's weights, the gate against its
thresholds and the time left in the window. :func:`plan_overview` adds what happened over
time, read back from the plan's audit (every shift of traffic and every verdict of a gate is
recorded there, with when) and from the gateway's per-second windows (each gated step's
backend, measured in slices of its gate's interval, for as long as the windows are kept):

- ``traffic``: each shift of the run, oldest first: the route, the backend moved, its
  share after the shift (the route's other backends share the rest) and the action;
- ``evaluations``: each whole-window verdict of a gate (passed, failed, inconclusive);
- ``gates``: each gated step, its thresholds, when it was monitored and its backend's
  requests, error rate and p95 over that time;
- ``audit``: the plan's audit, oldest first.

Only the current version's run counts: entries before the version was stored are left out
of ``traffic``, ``evaluations`` and ``gates`` (``audit`` keeps them).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

from hybridmesh.gateway.config import Route
from hybridmesh.gateway.state import GatewayState
from hybridmesh.gateway.stats import RETENTION_SECONDS, backend_series
from hybridmesh.migration.gates import Tally
from hybridmesh.migration.state import AuditEntry, MigrationState, Phase, PlanRecord
from hybridmesh.store import Store

#: The most slices a gate's series is cut into; a longer monitoring time gets wider ones.
MAX_SLICES = 120
#: The audit actions that end a gated step's monitoring.
_STEP_ENDS = frozenset(
    {
        "migration.step.completed",
        "migration.gate.failed",
        "migration.gate.inconclusive",
        "migration.gate.error",
        "migration.rolled_back",
        "migration.aborted",
    }
)
#: The audit actions carrying a whole-window verdict of a gate.
_VERDICTS = {
    "migration.step.completed": "pass",
    "migration.gate.failed": "fail",
    "migration.gate.inconclusive": "inconclusive",
}


def status_view(record: PlanRecord, routes: Mapping[str, Route], now: float) -> dict[str, Any]:
    """The step, the route's weights, the gate against its thresholds, the time left."""
    view = record.to_dict()
    steps = record.plan.steps
    if record.step < len(steps):
        step = steps[record.step]
        route = getattr(step.action, "route", None)
        if isinstance(route, str) and route in routes:
            view["weights"] = {b.name: b.weight for b in routes[route].backends}
            view["route"] = route
        if step.gate is not None:
            tally = Tally.from_dict(record.gate)
            view["thresholds"] = step.gate.model_dump(mode="json")
            view["last_measurement"] = tally.last
            view["measurements"] = {
                "taken": tally.measurements,
                "passed": tally.passed,
                "failed": tally.failed,
                "inconclusive": tally.inconclusive,
                "requests": tally.requests,
            }
            if record.phase is Phase.MONITORING and record.window_started is not None:
                view["window_left_seconds"] = round(
                    max(record.window_started + step.gate.window - now, 0.0), 1
                )
    return view


async def plan_status(store: Store, name: str, *, now: float | None = None) -> dict[str, Any]:
    """:func:`status_view` of plan ``name`` as the store has it (``NotFoundError``)."""
    record = await MigrationState(store).get(name)
    routes = {s.route.name: s.route for s in await GatewayState(store).routes()}
    return status_view(record, routes, time.time() if now is None else now)


async def plan_overview(
    store: Store, name: str, *, now: float | None = None, audit_limit: int = 1_000
) -> dict[str, Any]:
    """Plan ``name``: its record, plan and versions (as ``migrate show --json`` had them),
    its status view, and its history over time (see the module's doc)."""
    state = MigrationState(store)
    record = await state.get(name)
    routes = {s.route.name: s.route for s in await GatewayState(store).routes()}
    at = time.time() if now is None else now
    versions = await state.versions(name)
    audit = await state.audit(name, audit_limit)
    run = _current_run(audit)
    return {
        **status_view(record, routes, at),
        "plan": record.plan.to_json(),
        "versions": [{"version": v, "created_at": created} for v, created in versions],
        "traffic": _traffic(run),
        "evaluations": _evaluations(record, run),
        "gates": await _gates(store, record, run, at),
        "audit": [entry.to_dict() for entry in audit],
    }


def _current_run(audit: Sequence[AuditEntry]) -> list[AuditEntry]:
    """The entries since the current version was stored."""
    stored = [i for i, e in enumerate(audit) if e.action == "migration.plan.stored"]
    return list(audit[stored[-1] :] if stored else audit)


def _shift(action: Mapping[str, Any] | None) -> tuple[str, str, float] | None:
    """The route, backend and share an executed action left, if it moved traffic."""
    if not action:
        return None
    if action.get("do") == "set_weight":
        return action["route"], action["backend"], float(action["percent"])
    if action.get("do") == "prepare_route":
        return action["route"], action["target_backend"], 0.0
    return None


def _traffic(run: Sequence[AuditEntry]) -> list[dict[str, Any]]:
    shifts = []
    for entry in run:
        if entry.action == "migration.step.started":
            moved = _shift(entry.details.get("action"))
        elif entry.action in ("migration.rolled_back", "migration.aborted"):
            moved = _shift(entry.details.get("rollback"))
        else:
            continue
        if moved is not None:
            route, backend, percent = moved
            shifts.append(
                {
                    "at": entry.at,
                    "step": entry.step,
                    "route": route,
                    "backend": backend,
                    "percent": percent,
                    "action": entry.action,
                }
            )
    return shifts


def _evaluations(record: PlanRecord, run: Sequence[AuditEntry]) -> list[dict[str, Any]]:
    found = []
    for entry in run:
        verdict = _VERDICTS.get(entry.action)
        if verdict is None:
            continue
        gate = entry.details.get("gate", entry.details) if verdict == "pass" else entry.details
        last = (gate or {}).get("last") or {}
        if not last or "error" in last:
            continue  # a step without a gate, or one that could not be measured
        steps = record.plan.steps
        found.append(
            {
                "at": entry.at,
                "step": entry.step,
                "step_name": steps[entry.step].name
                if entry.step is not None and entry.step < len(steps)
                else None,
                "verdict": last.get("verdict", verdict),
                "requests": last.get("requests"),
                "error_rate": last.get("error_rate"),
                "p95_ms": last.get("p95_ms"),
                "reasons": last.get("reasons", []),
            }
        )
    return found


async def _gates(
    store: Store, record: PlanRecord, run: Sequence[AuditEntry], now: float
) -> list[dict[str, Any]]:
    """Each gated step, its thresholds and, once it started, its backend over time."""
    started: dict[int, float] = {}
    ended: dict[int, float] = {}
    for entry in run:
        if entry.step is None:
            continue
        if entry.action == "migration.step.started":
            started[entry.step] = entry.at
            ended.pop(entry.step, None)
        elif entry.action in _STEP_ENDS and entry.step in started:
            ended.setdefault(entry.step, entry.at)
    gates = []
    for index, step in enumerate(record.plan.steps):
        measured = step.measured()
        if step.gate is None or measured is None:
            continue
        since, until = started.get(index), ended.get(index)
        if since is not None and until is None:
            until = now
        gate = {
            "step": index,
            "name": step.name,
            "route": measured.route,
            "backend": measured.backend,
            "thresholds": {
                "max_error_rate": step.gate.max_error_rate,
                "max_p95_ms": step.gate.max_p95_ms,
                "min_requests": step.gate.min_requests,
                "interval": step.gate.interval,
                "window": step.gate.window,
            },
            "started_at": since,
            "ended_at": until if index in ended else None,
            "series": [],
        }
        if since is not None and until is not None:
            gate["series"] = await _series(
                store, measured.route, measured.backend, since, until, now, step.gate.interval
            )
        gates.append(gate)
    return gates


async def _series(
    store: Store,
    route: str,
    backend: str,
    since: float,
    until: float,
    now: float,
    interval: float,
) -> list[dict[str, Any]]:
    """The backend's figures from ``since`` to ``until`` in slices of the gate's interval
    (wider when there would be too many); seconds no longer kept are left out."""
    first = max(int(since), int(now) - RETENTION_SECONDS)
    last = min(math.ceil(until), int(now))
    if last <= first:
        return []
    width = max(int(interval), 1, math.ceil((last - first) / MAX_SLICES))
    windows = await backend_series(store, route, backend, first, last, width)
    return [
        {
            "at": first + i * width,
            "seconds": width,
            "requests": w.requests,
            "errors": w.errors,
            "error_rate": round(w.error_rate, 6),
            "p95_ms": None if w.p95_ms is None else round(w.p95_ms, 3),
        }
        for i, w in enumerate(windows)
    ]


__all__ = ["MAX_SLICES", "plan_overview", "plan_status", "status_view"]
