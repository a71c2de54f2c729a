"""The Chaos Toolkit actions of hybridmesh: what an experiment's ``method`` does.

Each is a plain function for the toolkit's python provider (``module:
hybridmesh.chaos.actions``, ``func``, ``arguments``), returns what it did as JSON-able
data, and raises when it could not do it (the toolkit records the activity as failed).
A store is named by ``database_url`` (default ``HYBRIDMESH_DATABASE_URL``).

Every fault has a ``duration`` and ends by itself after it, in the component that applies
it (the gateway's replicas, the fault proxy, the circuit breaker), so nothing stays
switched on when the runner dies before its rollbacks. A circuit breaker lives in the
memory of the process whose client calls: :func:`open_circuit` reaches the one of a
process serving the control-plane API (``api_url``, with an operate ``token``).
"""

from __future__ import annotations

import asyncio
import os
import re
import signal as signals
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp

from hybridmesh.chaos._store import opened
from hybridmesh.chaos.gateway_faults import clear_faults, fault_settings, inject_fault
from hybridmesh.gateway.state import GatewayState

#: Seconds a call to a fault proxy's control API or the control-plane API may take.
CONTROL_TIMEOUT = 10.0


# -- gateway routes ---------------------------------------------------------------------------


def inject_route_fault(
    route: str,
    duration: float,
    delay_seconds: float | None = None,
    delay_percent: float = 100,
    abort_status: int | None = None,
    abort_percent: float = 100,
    backends: list[str] | None = None,
    header: str | None = None,
    database_url: str | None = None,
) -> dict[str, Any]:
    """Delay and/or abort a share of ``route``'s requests (only those to ``backends``, or
    carrying ``header``, when given) for ``duration`` seconds; every gateway replica
    picks it up within a second and drops it at its expiry by itself."""
    settings = fault_settings(
        duration=duration,
        delay_seconds=delay_seconds,
        delay_percent=delay_percent,
        abort_status=abort_status,
        abort_percent=abort_percent,
        backends=backends or (),
        header=header,
    )

    async def inject() -> dict[str, Any]:
        async with opened(database_url) as store:
            await inject_fault(GatewayState(store), route, settings)
        return {"route": route, "faults": settings}

    return asyncio.run(inject())


def clear_route_faults(route: str, database_url: str | None = None) -> dict[str, Any]:
    """Remove the faults an experiment injected on ``route`` (a rollback)."""

    async def clear() -> dict[str, Any]:
        async with opened(database_url) as store:
            removed = await clear_faults(GatewayState(store), route)
        return {"route": route, "removed": removed}

    return asyncio.run(clear())


# -- processes --------------------------------------------------------------------------------


def _pids_matching(pattern: str) -> list[int]:
    """Processes whose command line (arguments joined by spaces) matches ``pattern``; never
    this process or its parent (the runner)."""
    expression = re.compile(pattern)
    spared = {os.getpid(), os.getppid()}
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in spared:
            continue
        try:
            raw = (entry / "cmdline").read_bytes()
        except OSError:
            continue  # gone, or not ours to read
        command = raw.rstrip(b"\0").replace(b"\0", b" ").decode(errors="replace")
        if command and expression.search(command):
            found.append(int(entry.name))
    return sorted(found)


def _targets(pid: int | None, pidfile: str | None, command_line: str | None) -> list[int]:
    given = [x for x in (pid, pidfile, command_line) if x is not None]
    if len(given) != 1:
        raise ValueError("give exactly one of pid, pidfile, command_line")
    if pid is not None:
        return [int(pid)]
    if pidfile is not None:
        text = Path(pidfile).read_text().strip()
        if not text.isdigit():
            raise ValueError(f"{pidfile} does not hold a process id")
        return [int(text)]
    assert command_line is not None
    pids = _pids_matching(command_line)
    if not pids:
        raise LookupError(f"no process's command line matches {command_line!r}")
    return pids


def signal_process(
    signal: str = "SIGTERM",
    pid: int | None = None,
    pidfile: str | None = None,
    command_line: str | None = None,
) -> dict[str, Any]:
    """Send ``signal`` (a name: SIGKILL, SIGTERM, SIGSTOP, SIGCONT, ...) to the process
    ``pid``, the one in ``pidfile``, or every process whose command line matches the
    regular expression ``command_line`` (such as ``hybridmesh worker``)."""
    number = signals.Signals[
        signal.upper() if signal.upper().startswith("SIG") else f"SIG{signal.upper()}"
    ]
    pids = _targets(pid, pidfile, command_line)
    for target in pids:
        os.kill(target, number)
    return {"signal": number.name, "pids": pids}


def kill_process(
    pid: int | None = None, pidfile: str | None = None, command_line: str | None = None
) -> dict[str, Any]:
    """SIGKILL: the process gets no chance to clean up (a crash)."""
    return signal_process("SIGKILL", pid, pidfile, command_line)


def terminate_process(
    pid: int | None = None, pidfile: str | None = None, command_line: str | None = None
) -> dict[str, Any]:
    """SIGTERM: the process shuts down as it would on a deployment."""
    return signal_process("SIGTERM", pid, pidfile, command_line)


def stop_process(
    pid: int | None = None, pidfile: str | None = None, command_line: str | None = None
) -> dict[str, Any]:
    """SIGSTOP: the process freezes (a long pause, a hung host) until
    :func:`continue_process`, which is its rollback."""
    return signal_process("SIGSTOP", pid, pidfile, command_line)


def continue_process(
    pid: int | None = None, pidfile: str | None = None, command_line: str | None = None
) -> dict[str, Any]:
    """SIGCONT: a stopped process goes on."""
    return signal_process("SIGCONT", pid, pidfile, command_line)


# -- migration plans --------------------------------------------------------------------------


def control_migration_plan(
    plan: str,
    action: str = "start",
    reason: str = "chaos experiment",
    database_url: str | None = None,
) -> dict[str, Any]:
    """``hybridmesh migrate start|pause|resume|abort|approve PLAN``: what an experiment
    does to a strangler-fig shift (start it while a fault is on, say); a runner
    (``hybridmesh migrate runner``) drives it."""
    from hybridmesh.migration.state import MigrationState

    async def control() -> dict[str, Any]:
        async with opened(database_url) as store:
            record = await MigrationState(store).control(plan, action, actor="chaos", reason=reason)
        return {"plan": plan, "action": action, "status": record.status.value}

    return asyncio.run(control())


def _owner_process(owner: str, command: bytes) -> int | None:
    """The process of this host that ``owner`` (a default id, ``HOST:PID:...``) names, if
    its command line holds ``command``; None otherwise."""
    import socket

    parts = owner.split(":")
    if len(parts) != 3 or parts[0] != socket.gethostname() or not parts[1].isdigit():
        return None
    try:
        arguments = Path(f"/proc/{parts[1]}/cmdline").read_bytes()
    except OSError:
        return None
    return int(parts[1]) if command in arguments else None


def kill_busiest_worker(signal: str = "SIGKILL", database_url: str | None = None) -> dict[str, Any]:
    """Send ``signal`` to the ``hybridmesh worker`` of this host that holds the most leases
    of running executions: a worker mid-saga, for sure, where killing any worker might hit
    an idle one. A worker's default id is ``HOST:PID:...``, which names its process; a
    worker given another ``--worker-id`` cannot be found this way (use ``pidfile``)."""

    async def leases() -> list[tuple[str, int]]:
        async with opened(database_url) as store:
            rows = await store.fetch_all(
                "SELECT lease_owner, COUNT(*) AS n FROM orch_executions "
                "WHERE lease_owner IS NOT NULL AND status IN ('running', 'compensating') "
                "AND lease_until > ? GROUP BY lease_owner ORDER BY n DESC, lease_owner",
                time.time(),
            )
        return [(str(row["lease_owner"]), int(row["n"])) for row in rows]

    for owner, held in asyncio.run(leases()):
        pid = _owner_process(owner, b"worker")
        if pid is not None:
            return {**signal_process(signal, pid=pid), "worker_id": owner, "leases": held}
    raise LookupError("no worker of this host holds a lease of a running execution")


def kill_replicator(
    replication: str, signal: str = "SIGKILL", database_url: str | None = None
) -> dict[str, Any]:
    """Send ``signal`` to the process of this host that runs ``replication`` now (a
    ``hybridmesh replicate run`` or ``replicate start``, named by its default owner id),
    and say how far the replication had got."""
    from hybridmesh.data.control import DataControl

    async def record() -> dict[str, Any]:
        async with opened(database_url) as store:
            return (await DataControl(store).get(replication)).to_dict()

    found = asyncio.run(record())
    owner = found.get("owner")
    pid = _owner_process(owner, b"replicate") if owner else None
    if pid is None:
        raise LookupError(f"no process of this host runs {replication!r} now (owner {owner!r})")
    status = found.get("status") or {}
    copied = sum(int(t.get("rows_copied", 0)) for t in status.get("tables", []))
    return {
        **signal_process(signal, pid=pid),
        "owner": owner,
        "phase": status.get("phase"),
        "rows_copied": copied,
    }


def reconcile_replication(
    replication: str, repair: bool = False, database_url: str | None = None
) -> dict[str, Any]:
    """``hybridmesh reconcile REPLICATION``: compare its source and target tables (and with
    ``repair``, write the side that is not the truth), recorded in the store, where the
    data-consistency SLO reads it. Returns the rows compared and those that differ."""
    from hybridmesh.data.config import ReplicationSpec
    from hybridmesh.data.control import DataControl
    from hybridmesh.data.reconcile import reconcile

    async def run() -> dict[str, Any]:
        async with opened(database_url) as store:
            spec = (await DataControl(store).get(replication)).spec
            if not isinstance(spec, ReplicationSpec):
                raise LookupError(f"{replication!r} is not a replication")
            report = await reconcile(spec, store=store, repair=repair)
        tables = [t.to_dict() for t in report.tables]
        return {
            "replication": replication,
            "consistent": report.consistent,
            "source_rows": sum(t["source_rows"] for t in tables),
            "target_rows": sum(t["target_rows"] for t in tables),
            "missing": sum(t["missing"] for t in tables),
            "extra": sum(t["extra"] for t in tables),
            "different": sum(t["different"] for t in tables),
        }

    return asyncio.run(run())


# -- the fault proxy --------------------------------------------------------------------------


async def _control(
    method: str, url: str, body: dict[str, Any] | None = None, token: str | None = None
) -> Any:
    timeout = aiohttp.ClientTimeout(total=CONTROL_TIMEOUT)
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.request(method, url, json=body, headers=headers) as answer,
    ):
        data = await answer.json(content_type=None)
        if answer.status >= 400:
            raise RuntimeError(f"{method} {url}: {answer.status} {data.get('detail', data)}")
        return data


def add_toxic(
    control_url: str,
    kind: str,
    duration: float,
    name: str | None = None,
    stream: str = "downstream",
    latency: float = 0,
    jitter: float = 0,
    rate: float = 0,
    timeout: float = 0,
) -> dict[str, Any]:
    """Switch a toxic on at the fault proxy whose control API is ``control_url`` (see
    :mod:`hybridmesh.chaos.proxy`): ``latency`` (ms, ``jitter``), ``bandwidth`` (``rate``
    KB/s), ``reset_peer`` or ``timeout`` (after ``timeout`` ms), for ``duration`` s."""
    body: dict[str, Any] = {
        "kind": kind,
        "duration": duration,
        "stream": stream,
        "latency": latency,
        "jitter": jitter,
        "rate": rate,
        "timeout": timeout,
    }
    if name is not None:
        body["name"] = name
    return dict(asyncio.run(_control("POST", f"{control_url.rstrip('/')}/toxics", body)))


def remove_toxic(control_url: str, name: str | None = None) -> dict[str, Any]:
    """Remove toxic ``name``, or every toxic when no name is given (a rollback)."""
    base = f"{control_url.rstrip('/')}/toxics"
    url = base if name is None else f"{base}/{name}"
    return dict(asyncio.run(_control("DELETE", url)))


# -- circuit breakers -------------------------------------------------------------------------


def _breaker_url(api_url: str, name: str, verb: str) -> str:
    return f"{api_url.rstrip('/')}/api/v1/breakers/{quote(name, safe=':')}/{verb}"


def open_circuit(api_url: str, token: str, name: str, duration: float) -> dict[str, Any]:
    """Force the circuit breaker ``name`` of the process serving the control-plane API at
    ``api_url`` open for ``duration`` seconds (``token``: a bearer token of the operate
    role). Its client refuses the calls the breaker guards; at the end the breaker lets a
    half-open trial through by itself. Returns the breaker as the API answers it."""
    url = _breaker_url(api_url, name, "open")
    return dict(asyncio.run(_control("POST", url, {"duration": duration}, token)))


def close_circuit(api_url: str, token: str, name: str) -> dict[str, Any]:
    """Close the breaker ``name`` now (the rollback of :func:`open_circuit`)."""
    url = _breaker_url(api_url, name, "reset")
    return dict(asyncio.run(_control("POST", url, token=token)))


__all__ = [
    "add_toxic",
    "clear_route_faults",
    "close_circuit",
    "continue_process",
    "control_migration_plan",
    "inject_route_fault",
    "kill_busiest_worker",
    "kill_process",
    "kill_replicator",
    "open_circuit",
    "reconcile_replication",
    "remove_toxic",
    "signal_process",
    "stop_process",
    "terminate_process",
]
