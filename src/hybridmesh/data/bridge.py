"""The event bridge: a legacy database's changes published as CloudEvents on the bus.

New services subscribe to legacy data without a line of the legacy code changing, as
Debezium does for the databases it supports: here for SQLite and PostgreSQL sources, on
hybridmesh's bus (SQL log or NATS JetStream). Each captured change becomes one event:

- ``type`` ``<prefix>.<table>.created|updated|deleted``;
- ``source`` the legacy system's name; ``subject`` the row's key as JSON;
- ``partitionkey`` ``<table>:<key>``, so a row's events are handled in order;
- ``id`` ``<bridge>-<position>``: the same change always has the same id, so a consumer's
  idempotency check drops the copy a restart may publish again;
- ``data``: the table, the key by column, the row before and after, when it was changed and,
  for a change hybridmesh's own replication made, the replication's name (``origin``).

The bridge is a consumer of the change log like any other: it publishes a batch, then saves
its position in the source database; a crash in between publishes that batch again (at
least once, never lost).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from hybridmesh.data._follow import follow
from hybridmesh.data.capture import (
    Change,
    backlog,
    install_capture,
    prune,
    read_changes,
    register_consumer,
    save_position,
)
from hybridmesh.data.config import BridgeSpec
from hybridmesh.data.databases import TableShape
from hybridmesh.events import CloudEvent, EventBus
from hybridmesh.store import Store


class EventBridge:
    """Publishes ``spec``'s tables' changes from ``source`` on ``bus``."""

    def __init__(
        self, spec: BridgeSpec, source: Store, bus: EventBus, *, batch_size: int = 500
    ) -> None:
        self.spec = spec
        self.source = source
        self.bus = bus
        self.batch_size = batch_size
        self.position = 0
        self.published = 0
        self._shapes: dict[str, TableShape] = {}

    @property
    def system(self) -> str:
        return self.spec.source.system or self.spec.name

    async def prepare(self) -> None:
        """Capture the tables, and take up the saved position (a new bridge starts at the
        head of the log: it publishes changes made from now on)."""
        self._shapes = await install_capture(self.source, self.spec.tables)
        self.position = await register_consumer(self.source, self.spec.name)

    async def step(self) -> int:
        """Publish the next batch of changes; returns how many changes were read."""
        if not self._shapes:
            await self.prepare()
        changes = await read_changes(self.source, self.position, self.batch_size)
        if not changes:
            return 0
        events = [self.event(c) for c in changes if c.table in self._shapes]
        if events:
            await self.bus.publish_many(events)
            self.published += len(events)
        self.position = changes[-1].seq
        await save_position(self.source, self.spec.name, self.position)
        return len(changes)

    def event(self, change: Change) -> CloudEvent:
        """The CloudEvent for one captured change."""
        shape = self._shapes[change.table]
        return CloudEvent.create(
            f"{self.spec.prefix}.{change.table}.{change.op}",
            self.system,
            {
                "table": change.table,
                "key": dict(zip(shape.key, change.key, strict=False)),
                "before": change.before,
                "after": change.after,
                "changed_at": change.at,
                "origin": change.origin,
            },
            id=f"{self.spec.name}-{change.seq}",
            subject=change.key_text,
            time=datetime.fromtimestamp(change.at, UTC),
            partition_key=f"{change.table}:{change.key_text}",
        )

    async def run(
        self,
        *,
        desired: Callable[[], Awaitable[str]] | None = None,
        idle: float = 0.05,
        report: Callable[[dict[str, Any]], Awaitable[None]] | None = None,
        report_every: float = 1.0,
        until_caught_up: bool = False,
    ) -> None:
        """Publish until ``desired()`` says ``stopped`` (or, with ``until_caught_up``, until
        the log is read to its head); ``paused`` holds. An unreachable source is retried."""

        def reset() -> None:
            self._shapes = {}

        await follow(
            self.step,
            reset=reset,
            status=self.status,
            desired=desired,
            report=report,
            report_every=report_every,
            until_caught_up=until_caught_up,
            idle=idle,
            housekeeping=self.prune,
        )

    async def prune(self) -> None:
        """Delete the changes every consumer of the source's log has read (the bridge saves
        its position after each batch it published)."""
        await prune(self.source)

    async def status(self) -> dict[str, Any]:
        log = await backlog(self.source)
        return {
            "name": self.spec.name,
            "kind": "bridge",
            "position": self.position,
            "head": log.head,
            "published": self.published,
            "lag_changes": max(0, log.head - self.position),
            "backlog": log.changes,
        }


__all__ = ["EventBridge"]
