"""The engine's writes: changes of many executions gathered into one batch per round
(group commit) for the recorder, and the events each change publishes.

An event goes into the bus's event log in the same write when the log is kept in the same
store, else into the store's outbox, which the relay moves to the bus. Either way it is
published exactly when the change that announces it is written.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hybridmesh.core.clock import SYSTEM_CLOCK, Clock
from hybridmesh.events import CloudEvent, EventBus, Outbox, OutboxRelay
from hybridmesh.events.backends._sql_log import LogRow
from hybridmesh.observability import get_logger
from hybridmesh.orchestration.plan import Kind, Plan
from hybridmesh.orchestration.recorders.base import Change, ExecutionRecorder
from hybridmesh.orchestration.steps import ORCHESTRATOR
from hybridmesh.store import Statement, Store
from hybridmesh.store.group_commit import GroupCommit

log = get_logger("hybridmesh.orchestration")


def wall_clock(clock: Clock) -> Callable[[], float]:
    """Epoch seconds now, by ``clock``: leases and due times are compared across
    processes, so the engine keeps them in wall-clock time."""
    if clock is SYSTEM_CLOCK:
        return time.time  # the same value, without building a datetime
    return lambda: clock.now().timestamp()


@dataclass(slots=True)
class Publication:
    """An event the engine publishes with an execution's change: the rows that append it
    to the bus's log, or the outbox insert that queues it."""

    event: CloudEvent
    log_rows: list[LogRow] | None
    outbox: Statement | None

    def attach(self, change: Change) -> None:
        """Write the event with ``change`` (only if the change's head is written)."""
        if self.log_rows is not None:
            change.events.extend(self.log_rows)
        elif self.outbox is not None:
            change.rows.append(self.outbox)


class Writer:
    """Writes changes through ``recorder`` in group commits, and publishes their events
    on ``bus`` (through the log or the outbox of ``store``)."""

    def __init__(
        self, store: Store, recorder: ExecutionRecorder, bus: EventBus | None, clock: Clock
    ) -> None:
        self.recorder = recorder
        self.bus = bus
        self._inline = recorder.log is not None
        self._outbox = Outbox(store, clock=clock) if bus is not None else None
        self.relay = OutboxRelay(store, bus, clock=clock) if bus is not None else None
        self._relay_poke = asyncio.Event()
        self._commits: GroupCommit[Change, bool | None] = GroupCommit(
            self._write, "hybridmesh-orchestrator-writes", gather=store.batches_inline
        )

    async def submit(self, change: Change) -> bool | None:
        """Write ``change`` in the next batch; what :meth:`ExecutionRecorder.write` says
        of it (None: nothing of it was written)."""
        return await self._commits.submit(change)

    async def _write(self, changes: list[Change]) -> list[bool | None]:
        return await self.recorder.write(changes)

    def event(
        self,
        plan: Plan | tuple[Kind, str, int],
        execution_id: str,
        trace: str | None,
        outcome: str,
        data: dict[str, Any],
    ) -> Publication | None:
        """The event for ``outcome`` (None without a bus) of an execution of ``plan`` (or
        of the kind, name and version of a definition that cannot be read), in the
        execution's trace (``trace``, its traceparent). :meth:`Publication.attach` it to
        the change that announces it; once written, :meth:`published` it."""
        if self._outbox is None or self.bus is None:
            return None
        kind, name, version = (
            (plan.kind, plan.name, plan.version) if isinstance(plan, Plan) else plan
        )
        key = "saga_id" if kind is Kind.SAGA else "execution_id"
        body = {
            key: execution_id,
            "type": name,
            "version": version,
            "status": outcome,
            **data,
        }
        if kind is Kind.WORKFLOW:
            body["workflow_id"] = name
        else:
            body["saga_type"] = name
        event = CloudEvent.create(
            f"{kind.value}.{outcome}",
            ORCHESTRATOR,
            body,
            subject=execution_id,
            extensions=(
                {"partitionkey": execution_id, "traceparent": trace}
                if trace
                else {"partitionkey": execution_id}
            ),
        )
        if self._inline:
            return Publication(event, self.bus.log_rows([event]), None)
        return Publication(event, None, self._outbox.statement([event]))

    def published(self, publication: Publication) -> None:
        """A publication's change was written: tell the bus, or the relay."""
        if publication.log_rows is not None:
            assert self.bus is not None
            self.bus.appended([publication.event])
        else:
            self._relay_poke.set()

    async def relay_events(self) -> None:
        """Move the outbox's events to the bus, whenever a change queued some and at the
        relay's poll interval (events of other processes' engines too). Runs until
        cancelled."""
        relay = self.relay
        assert relay is not None
        while True:
            try:
                while await relay.relay_once():
                    pass
            except Exception:
                log.exception("publishing the engine's events failed; trying again")
            self._relay_poke.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._relay_poke.wait(), relay.poll_interval)

    async def flush_relay(self) -> None:
        """Relay what the outbox holds now (best effort: a failure is left for later)."""
        if self.relay is not None:
            with contextlib.suppress(Exception):
                while await self.relay.relay_once():
                    pass


__all__ = ["Publication", "Writer", "wall_clock"]
