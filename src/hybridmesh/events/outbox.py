"""The transactional outbox: business rows and their events, written together.

An application writes its own rows and :meth:`Outbox.add` the events in *one* store
transaction, so an event exists exactly when the change it announces does. An
:class:`OutboxRelay` then publishes outbox rows to the bus and deletes them. A relay killed
at any point loses nothing: rows are deleted only after the bus has accepted them. It may
publish a row twice (killed between publishing and deleting, or two relays racing); the
backends drop an event whose (source, id) they have seen, and idempotent consumers drop
what gets through, so the duplicate never reaches a handler twice.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable

from hybridmesh.core.clock import SYSTEM_CLOCK, Clock
from hybridmesh.core.serialization import loads
from hybridmesh.events.bus import EventBus
from hybridmesh.events.envelope import CloudEvent, EventFormatError
from hybridmesh.observability import get_logger
from hybridmesh.store import Statement, Store, Transaction

log = get_logger("hybridmesh.events.outbox")

_INSERT = (
    "INSERT INTO event_outbox (event_id, source, type, body, created_at) VALUES (?, ?, ?, ?, ?)"
)


class Outbox:
    """Writes events into the outbox table of ``store``, inside the caller's transaction."""

    def __init__(self, store: Store, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self.store = store
        self.clock = clock

    async def add(self, tx: Transaction, events: Iterable[CloudEvent]) -> int:
        """Queue ``events`` (validated) in ``tx``; they are published after it commits."""
        statement = self.statement(events)
        if statement.rows:
            await tx.executemany(statement.sql, statement.rows)
        return len(statement.rows or ())

    def statement(self, events: Iterable[CloudEvent]) -> Statement:
        """The insert that queues ``events`` (validated), for a :meth:`Store.batch`."""
        now = self.clock.now().isoformat()
        rows = []
        for event in events:
            event.validate()
            rows.append((event.id, event.source, event.type, event.to_json().decode(), now))
        return Statement(_INSERT, rows=rows)

    async def pending(self) -> int:
        """How many events wait to be published."""
        return int(await self.store.fetch_value("SELECT COUNT(*) FROM event_outbox") or 0)


class OutboxRelay:
    """Moves outbox rows to the bus, oldest first, ``batch_size`` at a time."""

    def __init__(
        self,
        store: Store,
        bus: EventBus,
        *,
        batch_size: int = 500,
        poll_interval: float = 0.2,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.store = store
        self.bus = bus
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.clock = clock
        self.published = 0

    async def relay_once(self) -> int:
        """Publish one batch and delete it; returns how many rows it moved."""
        rows = await self.store.fetch_all(
            "SELECT seq, body FROM event_outbox ORDER BY seq LIMIT ?", self.batch_size
        )
        if not rows:
            return 0
        events: list[CloudEvent] = []
        done: list[tuple[int]] = []
        for row in rows:
            try:
                events.append(CloudEvent.from_dict(loads(row["body"])))
            except (EventFormatError, ValueError) as error:
                # Outbox.add validated it: a row that no longer parses was edited by hand. It
                # stays in the table (counted by ``pending``) for someone to look at.
                log.error("outbox row %s is not a CloudEvent (%s); skipping it", row["seq"], error)
                continue
            done.append((int(row["seq"]),))
        if events:
            await self.bus.publish_many(events)
        if done:
            await self.store.executemany("DELETE FROM event_outbox WHERE seq = ?", done)
        self.published += len(done)
        return len(rows)

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Relay until ``stop`` is set (or the task is cancelled)."""
        stop = stop or asyncio.Event()
        while not stop.is_set():
            try:
                moved = await self.relay_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("outbox relay failed; trying again")
                moved = 0
            if moved < self.batch_size:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.poll_interval)


__all__ = ["Outbox", "OutboxRelay"]
