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
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from hybridmesh.core.errors import StoreUnavailableError
from hybridmesh.data.bridge import EventBridge
from hybridmesh.data.config import BridgeSpec, ReplicationSpec
from hybridmesh.data.control import DataControl
from hybridmesh.data.databases import open_database
from hybridmesh.data.metrics import DataMetrics
from hybridmesh.data.replication import Conflict, Replicator, reverse_spec
from hybridmesh.events import EventBus
from hybridmesh.review import ReviewQueue
from hybridmesh.store import Store

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
        winner = "incoming change" if conflict.winner == "incoming" else "local change"
        await queue.add(
            "replication",
            f"{conflict.table} {list(conflict.key)}: changed on both sides; the {winner} won",
            {
                "replication": conflict.replication,
                "table": conflict.table,
                "key": list(conflict.key),
                "incoming": conflict.incoming,
                "incoming_at": conflict.incoming_at,
                "local": conflict.local,
                "local_at": conflict.local_at,
                "winner": conflict.winner,
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
) -> dict[str, Any]:
    """Run replication or bridge ``name`` until it is asked to stop (or ``stop`` is set, or,
    with ``until_caught_up``, until it has caught up); returns its last status. A bridge
    needs ``bus``."""
    control = DataControl(store)
    record = await control.get(name)
    metrics = metrics or DataMetrics.default()
    stop = stop or asyncio.Event()
    last: dict[str, Any] = {}

    async def report(status: dict[str, Any]) -> None:
        nonlocal last
        last = status
        metrics.observe(status)
        with contextlib.suppress(StoreUnavailableError):
            await control.report(name, status)
        if on_status is not None:
            await on_status(status)

    try:
        await _run_record(record.spec, store, control, bus, stop, until_caught_up, report)
    finally:
        with contextlib.suppress(StoreUnavailableError):
            await control.released(name)
    return last


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
    async with opened(spec.source.url, spec.target.url) as (source, target):
        await _run_pair(
            control, spec, source, target, stop, until_caught_up, report, conflict_filer(store)
        )


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
        await report(await _status(forward, reverse, desired))


async def _status(forward: Replicator, reverse: Replicator | None, desired: str) -> dict[str, Any]:
    status = (await forward.status()).to_dict()
    status["kind"] = "replication"
    status["desired"] = desired
    status["reverse"] = None if reverse is None else (await reverse.status()).to_dict()
    return status


__all__ = ["conflict_filer", "opened", "run_stored"]
