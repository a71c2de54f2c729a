"""Idempotent consumers: handle each event once, although the bus delivers at least once.

Receipts of handled events are kept in the store, keyed by (consumer, source, id) — the
pair CloudEvents promises is unique. Two ways to use them:

- :meth:`IdempotentConsumer.wrap` a handler: a delivery whose receipt exists is dropped, and
  the receipt is written after the handler succeeds. A crash between the handler's effects
  and the receipt lets the event through once more, so the effects themselves should be
  idempotent (an upsert, an idempotency key).
- :meth:`IdempotentConsumer.claim`: the receipt and the handler's own writes go in one
  store transaction, so the effects happen exactly once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta

from hybridmesh.core.clock import SYSTEM_CLOCK, Clock
from hybridmesh.core.errors import Problem, ValidationError
from hybridmesh.core.names import name_problem
from hybridmesh.events.bus import Ack, Drop, Handler, HandlerResult
from hybridmesh.events.envelope import CloudEvent
from hybridmesh.store import Store, Transaction

_RECORD = (
    "INSERT INTO event_receipts (consumer, source, event_id, handled_at) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (consumer, source, event_id) DO NOTHING"
)


class IdempotentConsumer:
    """Receipts for consumer ``name`` in ``store`` (migrated).

    ``name`` keys the receipts, so it follows the one name rule (:mod:`hybridmesh.core.names`);
    anything else raises :class:`~hybridmesh.core.errors.ValidationError`.
    """

    def __init__(self, store: Store, name: str, *, clock: Clock = SYSTEM_CLOCK) -> None:
        problem = name_problem(name)
        if problem is not None:
            raise ValidationError([Problem(f"consumer {problem}", field="name")])
        self.store = store
        self.name = name
        self.clock = clock

    async def seen(self, event: CloudEvent) -> bool:
        """Whether ``event`` has a receipt already."""
        row = await self.store.fetch_one(
            "SELECT 1 AS hit FROM event_receipts WHERE consumer = ? AND source = ? "
            "AND event_id = ?",
            self.name,
            event.source,
            event.id,
        )
        return row is not None

    async def record(self, event: CloudEvent, tx: Transaction | None = None) -> bool:
        """Write the receipt; False when it existed already."""
        target = tx if tx is not None else self.store
        now = self.clock.now().isoformat()
        return await target.execute(_RECORD, self.name, event.source, event.id, now) > 0

    def wrap(self, handler: Handler) -> Handler:
        """``handler`` that skips events it has handled before (see the module docstring)."""

        async def once(event: CloudEvent) -> HandlerResult:
            if await self.seen(event):
                return Drop("duplicate delivery")
            result = await handler(event)
            if result is None or isinstance(result, Ack | Drop):
                await self.record(event)
            return result

        return once

    @asynccontextmanager
    async def claim(self, event: CloudEvent) -> AsyncIterator[Transaction | None]:
        """A store transaction holding ``event``'s receipt, or None for a duplicate.

        Write the handler's effects through the yielded transaction: they commit together
        with the receipt, or not at all::

            async with consumer.claim(event) as tx:
                if tx is None:
                    return  # handled before
                await tx.execute("UPDATE stock ...")
        """
        async with self.store.transaction() as tx:
            fresh = await self.record(event, tx)
            yield tx if fresh else None

    async def prune(self, older_than: timedelta) -> int:
        """Delete receipts older than ``older_than``; redeliveries older than that are
        treated as new. Returns how many were deleted."""
        cutoff: datetime = self.clock.now() - older_than
        return await self.store.execute(
            "DELETE FROM event_receipts WHERE consumer = ? AND handled_at < ?",
            self.name,
            cutoff.isoformat(),
        )


__all__ = ["IdempotentConsumer"]
