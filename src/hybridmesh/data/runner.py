"""Running a stored replication or event bridge in this process, as the state store asks.

:func:`run_stored` is what ``hybridmesh replicate start`` runs, and what a migration plan's
runner starts for a ``database_decomposition`` plan's data steps. It follows the asked-for
state (running, paused, stopped, reverse sync on or off) that :class:`DataControl` keeps,
reports status to the store every second, and exports metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from hybridmesh.core.errors import HybridMeshError, StoreUnavailableError
from hybridmesh.data.bridge import EventBridge
from hybridmesh.data.config import BridgeSpec, ReplicationSpec
from hybridmesh.data.control import STALE_AFTER, DataControl
from hybridmesh.data.databases import open_database
from hybridmesh.data.metrics import DataMetrics
from hybridmesh.data.replication import Conflict, Replicator, reverse_spec
from hybridmesh.events import EventBus
from hybridmesh.observability import get_logger
from hybridmesh.review import ReviewQueue
from hybridmesh.store import Store

log = get_logger("hybridmesh.data")

StatusSink = Callable[[dict[str, Any]], Awaitable[None]]


@contextlib.asynccontextmanager
async def opened(*urls: str) -> AsyncIterator[list[Store]]:
    """The databases at ``urls``, closed at the end."""
    opened_dbs: list[Store] = []
    try:
        for url in urls:
            opened_dbs.append(await open_database(url))
        yield opened_dbs
    finally:
        for db in opened_dbs:
            await db.close()


def conflict_filer(store: Store) -> Callable[[Conflict], Awaitable[None]]:
    """Files each conflict in the review queue with both versions, once per change (a
    batch applied again after a crash does not file it twice)."""
    queue = ReviewQueue(store)

    async def file(conflict: Conflict) -> None:
        ref = f"{conflict.replication}:{conflict.table}:{json.dumps(list(conflict.key))}"
        ref = f"{ref}@{conflict.incoming_at:.6f}"
        if await queue.list(status=None, origin="replication", origin_ref=ref, limit=1):
            return
        await queue.add(
            "replication",
            f"{conflict.table} {list(conflict.key)}: changed in {conflict.incoming_from} and in "
            f"{conflict.local_to} since they last agreed; {conflict.winner_system}'s change "
            f"won ({conflict.policy.replace('_', ' ')})",
            {
                "replication": conflict.replication,
                "table": conflict.table,
                "key": list(conflict.key),
                "incoming": conflict.incoming,
                "incoming_from": conflict.incoming_from,
                "incoming_at": conflict.incoming_at,
                "local": conflict.local,
                "local_to": conflict.local_to,
                "local_at": conflict.local_at,
                "winner": conflict.winner,
                "winner_system": conflict.winner_system,
                "policy": conflict.policy,
            },
            origin_ref=ref,
        )

    return file


async def run_stored(
    store: Store,
    name: str,
    *,
    bus: EventBus | None = None,
    until_caught_up: bool = False,
    stop: asyncio.Event | None = None,
    on_status: StatusSink | None = None,
    metrics: DataMetrics | None = None,
    owner: str | None = None,
) -> dict[str, Any]:
    """Run replication or bridge ``name`` until it is asked to stop (or ``stop`` is set, or,
    with ``until_caught_up``, until it has caught up); returns its last status. A bridge
    needs ``bus``.

    One process runs a replication at a time: this one claims it first, and raises
    :class:`AlreadyRunningError` while another reports on it; if another takes it over
    (this one stalled past :data:`~hybridmesh.data.control.STALE_AFTER`), this one stops.
    """
    control = DataControl(store)
    record = await control.get(name)
    owner = owner or default_owner()
    if not await control.claim(name, owner):
        raise AlreadyRunningError(
            f"{name} is run by {record.owner} (it reported "
            f"{time.time() - (record.heartbeat_at or 0):.1f} s ago); stop that one first, or, "
            f"if it died, start again once it has been silent for {STALE_AFTER:g} s"
        )
    metrics = metrics or DataMetrics.default()
    stop = stop or asyncio.Event()
    last: dict[str, Any] = {}

    async def report(status: dict[str, Any]) -> None:
        nonlocal last
        last = status
        metrics.observe(status)
        try:
            if not await control.report(name, status, owner):
                stop.set()  # taken over: the other process goes on from the same position
        except StoreUnavailableError:
            pass
        if on_status is not None:
            await on_status(status)

    try:
        await _run_record(record.spec, store, control, bus, stop, until_caught_up, report)
    finally:
        with contextlib.suppress(StoreUnavailableError):
            await control.released(name, owner)
    return last


class AlreadyRunningError(HybridMeshError):
    """Another process runs this replication or bridge."""


def default_owner() -> str:
    """This process, as a replication's owner: host, process id and a random part."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class DataSupervisor:
    """Runs every stored replication and bridge that is asked to run (or stay paused) and
    that no other process runs: ``hybridmesh replicate run``, and beside a migration plan
    runner. Several supervisors share the work; one that dies is replaced within
    :data:`~hybridmesh.data.control.STALE_AFTER` seconds."""

    def __init__(
        self,
        store: Store,
        *,
        bus: EventBus | None = None,
        owner: str | None = None,
        look_every: float = 1.0,
    ) -> None:
        self.store = store
        self.bus = bus
        self.owner = owner or default_owner()
        self.look_every = look_every
        self.tasks: dict[str, asyncio.Task[dict[str, Any]]] = {}

    async def run(self, stop: asyncio.Event) -> None:
        control = DataControl(self.store)
        try:
            while not stop.is_set():
                with contextlib.suppress(StoreUnavailableError):
                    for record in await control.running():
                        if record.kind == "bridge" and self.bus is None:
                            continue
                        task = self.tasks.get(record.name)
                        if task is not None and not task.done():
                            continue
                        if record.running_now() and record.owner != self.owner:
                            continue
                        self.tasks[record.name] = asyncio.create_task(
                            self._run(record.name, stop), name=f"data:{record.name}"
                        )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.look_every)
        finally:
            stop.set()
            if self.tasks:
                await asyncio.gather(*self.tasks.values(), return_exceptions=True)

    async def _run(self, name: str, stop: asyncio.Event) -> dict[str, Any]:
        try:
            return await run_stored(self.store, name, bus=self.bus, stop=stop, owner=self.owner)
        except AlreadyRunningError:
            return {}
        except Exception as error:  # one replication failing does not stop the others
            log.warning("data: %s failed: %s: %s", name, type(error).__name__, error)
            await asyncio.sleep(self.look_every)
            return {}


async def _run_record(
    spec: ReplicationSpec | BridgeSpec,
    store: Store,
    control: DataControl,
    bus: EventBus | None,
    stop: asyncio.Event,
    until_caught_up: bool,
    report: StatusSink,
) -> None:
    name = spec.name
    if isinstance(spec, BridgeSpec):
        if bus is None:
            raise ValueError("an event bridge needs a bus")
        async with opened(spec.source.url) as (source,):
            bridge = EventBridge(spec, source, bus)

            async def bridge_desired() -> str:
                if stop.is_set():
                    return "stopped"
                return (await control.desired(name))[0]

            await bridge.run(
                desired=bridge_desired,
                report=report,
                until_caught_up=until_caught_up,
            )
        return
    scheduled = None
    if spec.reconcile.every is not None and not until_caught_up:
        scheduled = asyncio.create_task(_reconcile_every(store, spec, stop, control))
    try:
        async with opened(spec.source.url, spec.target.url) as (source, target):
            await _run_pair(
                control, spec, source, target, stop, until_caught_up, report, conflict_filer(store)
            )
    finally:
        if scheduled is not None:
            scheduled.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await scheduled


async def _reconcile_every(
    store: Store, spec: ReplicationSpec, stop: asyncio.Event, control: DataControl
) -> None:
    """The replication's scheduled reconciliation (``reconcile.every``), repairing when its
    ``reconcile.repair`` says so; runs only once the backfill is done (before, every row not
    copied yet would count as missing)."""
    from hybridmesh.data.reconcile import ReconcileSchedule

    schedule = ReconcileSchedule(spec, store=store)
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), schedule.every)
        if stop.is_set():
            return
        status = (await control.get(spec.name)).status or {}
        if status.get("phase") != "streaming":
            continue
        try:
            await schedule.run_once()
        except Exception as error:  # the next run may well succeed: keep the schedule
            log.warning("data: scheduled reconciliation of %s failed: %s", spec.name, error)


async def _run_pair(
    control: DataControl,
    spec: ReplicationSpec,
    source: Store,
    target: Store,
    stop: asyncio.Event,
    until_caught_up: bool,
    report: StatusSink,
    file_conflict: Callable[[Conflict], Awaitable[None]],
) -> None:
    """The forward replicator, and in a reverse-sync window the reverse one beside it."""
    back = reverse_spec(spec)
    reverse_on: bool | None = None
    forward = reverse = None
    loop = asyncio.get_running_loop()
    last_report = last_poll = 0.0
    desired = "running"
    while not stop.is_set():
        now = loop.time()
        if now - last_poll >= 0.5 or reverse_on is None:
            last_poll = now
            desired, wanted = await control.desired(spec.name)
            if desired == "stopped" and forward is not None:
                break  # as it stands: the last status keeps its tables
            if wanted != reverse_on:
                reverse_on = wanted
                forward = Replicator(
                    spec,
                    source,
                    target,
                    peer=back.name if wanted else None,
                    on_conflict=file_conflict,
                )
                reverse = (
                    Replicator(
                        back,
                        target,
                        source,
                        peer=spec.name,
                        legacy_is_source=False,
                        on_conflict=file_conflict,
                        backfill=False,
                    )
                    if wanted
                    else None
                )
        if desired == "stopped":
            break
        assert forward is not None
        read = 0
        if desired == "running":
            try:
                read = await forward.step()
                if reverse is not None:
                    read += await reverse.step()
            except StoreUnavailableError:
                forward.reset()
                if reverse is not None:
                    reverse.reset()
                await asyncio.sleep(0.5)
                continue
        if now - last_report >= 1.0:
            last_report = now
            # A status asks the source too: away, it is skipped, as a step is retried.
            with contextlib.suppress(StoreUnavailableError):
                await forward.report_position()
                if reverse is not None:
                    await reverse.report_position()
                await report(await _status(forward, reverse, desired))
        if until_caught_up and not read and not forward.backfilling:
            break
        if not read:
            await asyncio.sleep(0.05)
    if forward is not None:
        with contextlib.suppress(StoreUnavailableError):
            await forward.report_position()
            if reverse is not None:
                await reverse.report_position()
        with contextlib.suppress(StoreUnavailableError):
            await report(await _status(forward, reverse, desired))


async def _status(forward: Replicator, reverse: Replicator | None, desired: str) -> dict[str, Any]:
    status = (await forward.status()).to_dict()
    status["kind"] = "replication"
    status["desired"] = desired
    status["reverse"] = None if reverse is None else (await reverse.status()).to_dict()
    return status


__all__ = [
    "AlreadyRunningError",
    "DataSupervisor",
    "conflict_filer",
    "default_owner",
    "opened",
    "run_stored",
]
