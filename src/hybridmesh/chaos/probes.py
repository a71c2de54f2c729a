"""The Chaos Toolkit probes of hybridmesh: what a steady-state hypothesis measures.

Each is a plain function for the toolkit's python provider and returns a value that a
``tolerance`` checks: a number for a range (``{type: range, range: [0, 0.001]}``), a
mapping with a ``target`` key or a ``jsonpath`` (``{type: jsonpath, path: $.holds,
expect: true}``). A store is named by ``database_url`` (default
``HYBRIDMESH_DATABASE_URL``); windows are durations such as ``30s``, ``5m`` or ``1h``.

:func:`slo_holds` is the hypothesis the integration guide's success metrics make: calls
succeed over 99.9 %, workflows complete over 99.5 %, p95 under 100 ms, inconsistency
under 1 %, over the experiment's window.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp

from hybridmesh.chaos._store import opened
from hybridmesh.gateway.stats import merge_histograms, parse_duration, window_stats
from hybridmesh.observability.slo import SLOS, slo_results
from hybridmesh.observability.slo import slo_report as _slo_report
from hybridmesh.orchestration import Status

#: Execution statuses that have not ended.
OPEN_STATUSES = ("running", "compensating")


def _seconds(window: str | float) -> float:
    return float(window) if isinstance(window, int | float) else parse_duration(str(window))


# -- gateway routes ---------------------------------------------------------------------------


def route_stats(route: str, window: str = "1m", database_url: str | None = None) -> dict[str, Any]:
    """``route``'s requests, errors (5xx, the gateway's own and faults' included), error
    rate and p95 in ms over ``window``, every replica and backend together."""

    async def read() -> dict[str, Any]:
        async with opened(database_url) as store:
            stats = await window_stats(store, route, max(1, int(_seconds(window))))
        requests = stats.requests
        errors = sum(b.errors for b in stats.backends.values())
        latency = merge_histograms(b.latency for b in stats.backends.values())
        p95 = latency.percentile_ms(95)
        return {
            "route": route,
            "requests": requests,
            "errors": errors,
            "error_rate": errors / requests if requests else 0.0,
            "p95_ms": None if p95 is None else round(p95, 3),
            "backends": [b.to_dict() for b in stats.backends.values()],
        }

    return asyncio.run(read())


def route_error_rate(route: str, window: str = "1m", database_url: str | None = None) -> float:
    """The share of ``route``'s requests answered 5xx over ``window`` (0.0 without any)."""
    return float(route_stats(route, window, database_url)["error_rate"])


def route_p95_ms(route: str, window: str = "1m", database_url: str | None = None) -> float:
    """``route``'s p95 latency in ms over ``window`` (0.0 without any request)."""
    return float(route_stats(route, window, database_url)["p95_ms"] or 0.0)


def http_success_ratio(
    url: str, requests: int = 10, timeout: float = 5.0, method: str = "GET"
) -> float:
    """Send ``requests`` requests to ``url`` one after the other; the share answered with a
    status under 400 in ``timeout`` seconds. It measures now, by itself, what the
    recorded figures say with a delay of a second or more."""

    async def measure() -> float:
        good = 0
        limit = aiohttp.ClientTimeout(total=timeout)
        async with aiohttp.ClientSession(timeout=limit) as session:
            for _ in range(requests):
                try:
                    async with session.request(method, url) as answer:
                        await answer.read()
                        good += answer.status < 400
                except (aiohttp.ClientError, TimeoutError):
                    pass
        return good / requests if requests else 1.0

    return asyncio.run(measure())


def route_backend_weight(route: str, backend: str, database_url: str | None = None) -> float:
    """The percent of ``route``'s traffic that ``backend`` gets now, as stored (a
    migration plan moves it; a rollback puts it back)."""
    from hybridmesh.gateway.state import GatewayState

    async def read() -> float:
        async with opened(database_url) as store:
            stored = await GatewayState(store).route(route)
        return float(stored.route.backend(backend).weight)

    return asyncio.run(read())


def migration_plan(name: str, database_url: str | None = None) -> dict[str, Any]:
    """Migration plan ``name``'s ``status`` (draft, running, rolled_back, completed, ...),
    the ``step`` it is at and of how many, and the ``reason`` its gate gave."""
    from hybridmesh.migration.state import MigrationState

    async def read() -> dict[str, Any]:
        async with opened(database_url) as store:
            record = await MigrationState(store).get(name)
        return {
            "plan": name,
            "status": record.status.value,
            "step": record.step,
            "steps": len(record.plan.steps),
            "reason": record.reason,
        }

    return asyncio.run(read())


# -- executions, dead letters, replications ---------------------------------------------------


def executions(
    status: str | None = None,
    name: str | None = None,
    window: str | None = None,
    stuck_for: str | None = None,
    database_url: str | None = None,
) -> int:
    """How many sagas and workflows are in ``status`` (any), of definition ``name`` (any),
    created within ``window`` (any time); with ``stuck_for``, only those not ended whose
    last change is older than that: executions stuck after a fault."""
    where: list[str] = ["1 = 1"]
    args: list[Any] = []
    if status is not None:
        where.append("status = ?")
        args.append(status)
    if name is not None:
        where.append("name = ?")
        args.append(name)
    if window is not None:
        where.append("created_at >= ?")
        args.append(time.time() - _seconds(window))
    if stuck_for is not None:
        where.append(f"status IN ({', '.join('?' for _ in OPEN_STATUSES)})")
        args.extend(OPEN_STATUSES)
        where.append("updated_at < ?")
        args.append(time.time() - _seconds(stuck_for))

    async def count() -> int:
        async with opened(database_url) as store:
            sql = f"SELECT COUNT(*) FROM orch_executions WHERE {' AND '.join(where)}"
            return int(await store.fetch_value(sql, *args))

    return asyncio.run(count())


def executions_ended(window: str = "5m", database_url: str | None = None) -> dict[str, int]:
    """Executions that ended within ``window``, by status (completed, failed, ...)."""

    async def count() -> dict[str, int]:
        async with opened(database_url) as store:
            rows = await store.fetch_all(
                "SELECT status, COUNT(*) AS n FROM orch_executions "
                "WHERE ended_at >= ? GROUP BY status",
                time.time() - _seconds(window),
            )
        found = {s.value: 0 for s in Status if s.terminal}
        found.update({row["status"]: int(row["n"]) for row in rows})
        return found

    return asyncio.run(count())


def steps_recovered(window: str = "5m", database_url: str | None = None) -> dict[str, Any]:
    """Steps that were in flight when their worker died and that another worker ran again
    (with the same idempotency key) within ``window``: how many, and in how many
    executions. What shows that a killed worker's sagas were taken over mid-step."""

    async def count() -> dict[str, Any]:
        async with opened(database_url) as store:
            row = await store.fetch_one(
                "SELECT COUNT(*) AS steps, COUNT(DISTINCT execution_id) AS executions "
                "FROM orch_history WHERE type = 'step.recovered' AND at >= ?",
                time.time() - _seconds(window),
            )
        return {
            "steps": int(row["steps"]) if row else 0,
            "executions": int(row["executions"]) if row else 0,
        }

    return asyncio.run(count())


def outbox_backlog(database_url: str | None = None) -> dict[str, Any]:
    """Events written to the store's outbox and not yet on the bus: how many, and the age
    in seconds of the oldest (0 when none waits). It grows while the broker is unreachable
    and drains once it is back; nothing is lost in between."""

    async def count() -> dict[str, Any]:
        async with opened(database_url) as store:
            row = await store.fetch_one(
                "SELECT COUNT(*) AS n, MIN(created_at) AS oldest FROM event_outbox"
            )
        waiting = int(row["n"]) if row else 0
        oldest = 0.0
        if waiting and row and row["oldest"]:
            from datetime import datetime

            oldest = round(time.time() - datetime.fromisoformat(row["oldest"]).timestamp(), 3)
        return {"events": waiting, "oldest_seconds": oldest}

    return asyncio.run(count())


def dlq_size(group: str | None = None, database_url: str | None = None) -> int:
    """Dead letters not replayed (of consumer group ``group``, or every group)."""

    async def count() -> int:
        async with opened(database_url) as store:
            sql = "SELECT COUNT(*) FROM event_dead_letters WHERE replayed_at IS NULL"
            if group is None:
                return int(await store.fetch_value(sql))
            return int(await store.fetch_value(sql + " AND group_name = ?", group))

    return asyncio.run(count())


def replication_lag(name: str, database_url: str | None = None) -> dict[str, Any]:
    """Replication ``name``'s last reported lag: ``lag_seconds`` and ``lag_changes`` (0
    when it reported none), and whether a process runs it."""
    from hybridmesh.data.status import replication_status

    async def read() -> dict[str, Any]:
        async with opened(database_url) as store:
            status = await replication_status(store, name)
        reported = status.get("status") or {}
        return {
            "name": name,
            "running": status["running"],
            "lag_seconds": float(reported.get("lag_seconds", 0.0)),
            "lag_changes": int(reported.get("lag_changes", 0)),
        }

    return asyncio.run(read())


# -- the success metrics ----------------------------------------------------------------------


def slo_report(window: str = "1h", database_url: str | None = None) -> dict[str, Any]:
    """The SLO report (``hybridmesh slo report --json``) over ``window`` (1h, 24h, 30d)."""

    async def read() -> dict[str, Any]:
        async with opened(database_url) as store:
            return (await _slo_report(store, window)).to_json()

    return asyncio.run(read())


def slo_holds(
    window: str = "5m",
    slo: str | list[str] | None = None,
    require_data: bool = False,
    database_url: str | None = None,
) -> dict[str, Any]:
    """Whether the guide's success metrics hold over the last ``window``: every SLO named
    by ``slo`` (one name or a list; all four by default) at or above its objective.

    Returns ``holds`` and, per SLO, its figures (``sli``, ``objective``, ``good``,
    ``total``, ``status``; ``p95_seconds`` for sync-latency). An SLO with no event in the
    window holds unless ``require_data``; check ``$.holds`` with a jsonpath tolerance."""
    names = [s.name for s in SLOS]
    wanted = names if slo is None else ([slo] if isinstance(slo, str) else list(slo))
    unknown = [n for n in wanted if n not in names]
    if unknown:
        raise ValueError(f"unknown SLO {unknown[0]!r}; the SLOs are {', '.join(names)}")
    until = time.time()
    since = until - _seconds(window)

    async def read() -> dict[str, Any]:
        async with opened(database_url) as store:
            results = await slo_results(store, since, until)
        figures: dict[str, Any] = {}
        holds = True
        for result in results:
            if result.slo.name not in wanted:
                continue
            overall = result.overall
            met = overall.sli >= overall.objective if overall.sli is not None else not require_data
            holds = holds and met
            figures[result.slo.name] = {
                **overall.to_json(with_p95=result.slo.name == "sync-latency"),
                "met": met,
            }
        return {"holds": holds, "window_seconds": until - since, "slos": figures}

    return asyncio.run(read())


__all__ = [
    "dlq_size",
    "executions",
    "executions_ended",
    "http_success_ratio",
    "migration_plan",
    "outbox_backlog",
    "replication_lag",
    "route_backend_weight",
    "route_error_rate",
    "route_p95_ms",
    "route_stats",
    "slo_holds",
    "slo_report",
    "steps_recovered",
]
