"""The worker loop of an engine: claim due executions, drive each one in a task of its own,
renew the leases it holds, and release them all when it stops.

A worker claims only as many executions as it has room for (``max_executions``); a full
worker claims again when an execution ends only if its last claim took all it had room
for (due executions may be waiting), otherwise its next poll finds new ones.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any

from hybridmesh.observability import get_logger
from hybridmesh.observability.tracing import context_in_trace
from hybridmesh.orchestration._claimed import Unrunnable, claimed_live, end_unrunnable, let_go
from hybridmesh.orchestration._driver import Driver, DriverContext, Live
from hybridmesh.orchestration._records import Execution
from hybridmesh.orchestration.catalog import DefinitionCatalog

log = get_logger("hybridmesh.orchestration")


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    """How a worker claims: for how long, how often it looks, and how many at once."""

    lease_seconds: float
    poll_interval: float
    max_executions: int


class Worker:
    """Claims and drives executions for one engine, through ``context``; the definitions
    of claimed executions come from ``catalog``."""

    def __init__(
        self, context: DriverContext, catalog: DefinitionCatalog, settings: WorkerSettings
    ) -> None:
        self.context = context
        self.catalog = catalog
        self.settings = settings
        self._driver = Driver(context, lambda: self.stopping)
        self._driving: dict[str, asyncio.Task[None]] = {}
        self._lives: dict[str, Live] = {}
        self._endings: dict[str, asyncio.Future[Execution | None]] = {}
        self._poke = asyncio.Event()
        # Whether due executions may be waiting that this worker had no room to claim: its
        # last claim took as many as it asked for (or it has not claimed yet).
        self._backlog = True
        self.stopping = False
        self._loop: asyncio.Task[None] | None = None
        self._helpers: list[asyncio.Task[None]] = []

    @property
    def running(self) -> bool:
        """Whether the worker runs and is not stopping: it drives what it starts."""
        return self._loop is not None and not self.stopping

    @property
    def driving(self) -> int:
        """How many executions the worker drives right now."""
        return len(self._driving)

    def start(self) -> None:
        """Start claiming, renewing leases, and relaying events (idempotent)."""
        if self._loop is not None:
            return
        self.stopping = False
        self._loop = asyncio.create_task(self._work(), name="hybridmesh-orchestrator")
        self._helpers.append(asyncio.create_task(self._renew(), name="hybridmesh-leases"))
        writer = self.context.writer
        if writer.relay is not None:
            self._helpers.append(
                asyncio.create_task(writer.relay_events(), name="hybridmesh-relay")
            )

    async def stop(self, grace: float) -> None:
        """Claim nothing more, let drivers save at their next step boundary (cancel those
        still running after ``grace`` seconds), release every lease, and relay the
        outbox's events."""
        if self._loop is None:
            return
        self.stopping = True
        self._poke.set()
        drivers = list(self._driving.values())
        if drivers:
            _, late = await asyncio.wait(drivers, timeout=grace)
            for task in late:
                task.cancel()
            if late:
                await asyncio.gather(*late, return_exceptions=True)
        self._loop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._loop
        self._loop = None
        context = self.context
        with contextlib.suppress(Exception):
            await context.recorder.release_all(context.worker_id, context.now())
        await context.writer.flush_relay()
        for helper in self._helpers:
            helper.cancel()
        await asyncio.gather(*self._helpers, return_exceptions=True)
        self._helpers.clear()

    def poke(self) -> None:
        """Look for due executions now, not at the next poll."""
        self._poke.set()

    def ending(self, execution_id: str) -> asyncio.Future[Execution | None] | None:
        """While this worker drives the execution: a future of the ending it saved (None
        when its driver stopped without ending it)."""
        return self._endings.get(execution_id)

    def notify(self, execution_id: str, step_id: str | None = None) -> None:
        """Tell this worker's driver of the execution, if any, that signals wait (about
        ``step_id``, or about the whole execution)."""
        live = self._lives.get(execution_id)
        if live is None:
            return
        live.signals = True
        live.outcomes.put_nowait(None)  # wakes the driver, waiting or sleeping
        inline = live.inline_call
        if (
            live.inline is not None
            and inline is not None
            and not live.interrupted
            and (step_id is None or step_id == inline.step_id)
        ):
            live.interrupted = True  # the driver makes the attempt itself: interrupt it
            live.inline.cancel()

    def spawn(self, live: Live) -> None:
        """Drive ``live`` in a task of its own."""
        # The driver runs in the execution's trace: its attempts' spans are the execution's
        # children, whichever worker makes them.
        task = asyncio.create_task(
            self._driver.drive(live),
            name=f"hybridmesh-execution-{live.id}",
            context=context_in_trace({"traceparent": live.trace} if live.trace else {}),
        )
        self._driving[live.id] = task
        self._lives[live.id] = live
        self._endings.setdefault(live.id, asyncio.get_running_loop().create_future())

        def done(_: asyncio.Task[None]) -> None:
            full = self._backlog and len(self._driving) >= self.settings.max_executions
            self._driving.pop(live.id, None)
            self._lives.pop(live.id, None)
            future = self._endings.pop(live.id, None)
            if future is not None and not future.done():
                future.set_result(live.ended)
            if full:
                # Executions may wait that a full worker could not claim (its last claim
                # took all it had room for): claim now, not at the next poll. Otherwise new
                # ones are found by the next poll, as when the worker is not full; claiming
                # after every ending of a full worker would cost a query per execution.
                self._poke.set()

        task.add_done_callback(done)

    async def _work(self) -> None:
        settings = self.settings
        while not self.stopping:
            self._poke.clear()
            free = settings.max_executions - len(self._driving)
            claimed = 0
            if free > 0:
                try:
                    claimed = await self._claim(free)
                    self._backlog = claimed == free
                except Exception:
                    log.exception("claiming executions failed; trying again")
            if claimed and claimed == free:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poke.wait(), settings.poll_interval)

    async def _claim(self, limit: int) -> int:
        context = self.context
        now = context.now()
        rows = await context.recorder.claim(
            context.worker_id, now + self.settings.lease_seconds, now, limit
        )
        for row in rows:
            if row["id"] in self._driving:
                continue  # our own lease, renewed: the driver is on it
            try:
                live = await claimed_live(row, self.catalog, context)
            except Unrunnable as unrunnable:
                await self._end(row, unrunnable)
                continue
            except Exception:
                log.exception(
                    "execution %s: its definition cannot be loaded; trying again in %g s",
                    row["id"],
                    self.settings.lease_seconds,
                )
                await self._let_go(row)
                continue
            self.spawn(live)
        return len(rows)

    async def _end(self, row: dict[str, Any], unrunnable: Unrunnable) -> None:
        """End an execution that can never run (see ``_claimed``); when that fails, let it
        go to be tried again later."""
        try:
            await end_unrunnable(self.context, row, unrunnable)
        except Exception:
            log.exception("execution %s: ending it failed (%s)", row["id"], unrunnable.reason)
            await self._let_go(row)

    async def _let_go(self, row: dict[str, Any]) -> None:
        """Release a claimed execution this worker does not drive, due again after a
        lease's time: held, its lease would be renewed with the others' for as long as the
        worker runs."""
        context = self.context
        try:
            await let_go(context, row, context.now() + self.settings.lease_seconds)
        except Exception:
            log.exception("execution %s: releasing it failed", row["id"])

    async def _renew(self) -> None:
        context = self.context
        lease = self.settings.lease_seconds
        while True:
            await asyncio.sleep(lease / 3)
            if not self._driving:
                continue
            try:
                rows = await context.recorder.renew(context.worker_id, context.now() + lease)
            except Exception:
                log.exception("renewing leases failed")
                continue
            for row in rows:
                if row["signals"]:  # from another process: a cancel, a completion event
                    self.notify(row["id"])


__all__ = ["Worker", "WorkerSettings"]
