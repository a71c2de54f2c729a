"""What ``GET /api/v1/stream`` sends: bus events and execution status changes, live.

One :class:`LiveFeed` per application serves every stream client, whatever their number:

- **bus events**: one reader of the bus per process, without a consumer group (as the
  WebSocket hub reads it, see :func:`~hybridmesh.events.watch.watch_bus`), opened when the
  first client asks for events. The newest :data:`REPLAY_SIZE` events are kept, so a
  client that reconnects with ``Last-Event-ID`` gets what it missed, when that id is still
  kept.
- **execution changes**: one :class:`ExecutionWatch` per process polls the store once a
  second for the executions whose status changed, on indexes only (see its text).

Each source starts with its first client and stops :data:`LINGER` seconds after its last
one left (so a client that reconnects finds the events it missed). Each client has a
bounded queue; one that falls :data:`QUEUE_LIMIT` messages behind is ended, and its
``EventSource``-like reader reconnects with ``Last-Event-ID``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from hybridmesh.core.serialization import dumps
from hybridmesh.events.backend import Delivery
from hybridmesh.events.bus import EventBus
from hybridmesh.events.envelope import CloudEvent
from hybridmesh.events.subjects import matches
from hybridmesh.events.watch import watch_bus
from hybridmesh.observability import get_logger
from hybridmesh.store import Store

log = get_logger("hybridmesh.control.live")

#: Seconds between heartbeats (SSE comments) on an idle stream.
HEARTBEAT = 15.0
#: Seconds between two looks at the executions.
POLL_INTERVAL = 1.0
#: Bus events kept for clients that reconnect with ``Last-Event-ID``.
REPLAY_SIZE = 1_000
#: Messages a client may fall behind before its stream is ended.
QUEUE_LIMIT = 1_000
#: Seconds a source keeps running after its last client left.
LINGER = 30.0

#: Execution statuses that may still change: the ``orch_executions_status`` index finds
#: them without reading the ended ones.
ACTIVE_STATUSES: tuple[str, ...] = ("running", "compensating")


@dataclass(frozen=True)
class Message:
    """One server-sent event: its ``event:`` name, ``data:`` (JSON) and optional ``id:``."""

    event: str
    data: str
    id: str | None = None

    def encode(self) -> bytes:
        lines = [f"event: {self.event}"]
        if self.id is not None:
            lines.append(f"id: {self.id}")
        lines.append(f"data: {self.data}")
        return ("\n".join(lines) + "\n\n").encode()


def cloudevent_message(event: CloudEvent) -> Message:
    return Message("cloudevent", dumps(event.to_dict()), id=event.id)


@dataclass(eq=False)
class Subscriber:
    """One stream: what it wants, and its queue (None in the queue ends the stream)."""

    events: bool
    executions: bool
    pattern: str = ">"
    queue: asyncio.Queue[Message | None] = field(
        default_factory=lambda: asyncio.Queue(maxsize=QUEUE_LIMIT)
    )
    ended: bool = False

    def wants(self, event: CloudEvent) -> bool:
        return self.events and matches(self.pattern, event.type)

    def offer(self, message: Message | None) -> None:
        """Queue ``message``; a stream that has fallen too far behind is ended instead."""
        if self.ended:
            return
        try:
            self.queue.put_nowait(message)
        except asyncio.QueueFull:
            self.end()

    def end(self) -> None:
        """End the stream: its writer stops after what is queued, or at once when full."""
        if self.ended:
            return
        self.ended = True
        if self.queue.full():
            with contextlib.suppress(asyncio.QueueEmpty):
                self.queue.get_nowait()
        self.queue.put_nowait(None)


@dataclass(frozen=True)
class ExecutionChange:
    """An execution whose status changed (or that appeared), as the stream sends it."""

    id: str
    kind: str
    name: str
    status: str
    updated_at: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "name": self.name,
            "status": self.status,
            "updated_at": datetime.fromtimestamp(self.updated_at, UTC).isoformat(),
        }


class ExecutionWatch:
    """Finds the executions whose status changed since the previous look, on indexes only.

    ``orch_executions`` has no index on ``updated_at`` (every write changes it: an index
    there would cost each write of the engine, and on PostgreSQL its in-place updates). So
    a look reads instead:

    1. the ids and statuses of the executions still running or compensating (index-only on
       ``(status, created_at, id)``), as many as run now, whatever the table's size;
    2. those started since the previous look (``(created_at, id)``), which may have ended
       already;
    3. by primary key, those that were active at the previous look and are no more: they
       ended.

    :meth:`start` learns where things stand; each later look reports each change once.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self._known: dict[str, str] = {}  # active id -> status, at the previous look
        self._since = 0.0  # the newest created_at seen

    async def start(self) -> None:
        """Learn where things stand now, so that the changes reported are later ones."""
        row = await self.store.fetch_one("SELECT MAX(created_at) AS newest FROM orch_executions")
        self._since = float(row["newest"]) if row and row["newest"] is not None else 0.0
        self._known = {row["id"]: row["status"] for row in await self._active()}

    async def changes(self) -> list[ExecutionChange]:
        """The executions that started, changed status or ended since the previous look."""
        active = {row["id"]: row["status"] for row in await self._active()}
        newest = await self.store.fetch_all(
            "SELECT id, created_at FROM orch_executions WHERE created_at > ?", self._since
        )
        changed = {i for i, status in active.items() if self._known.get(i) != status}
        changed |= {row["id"] for row in newest}
        changed |= set(self._known) - set(active)
        self._known = active
        if newest:
            self._since = max(self._since, *(float(row["created_at"]) for row in newest))
        return await self._load(changed)

    async def _active(self) -> list[dict[str, Any]]:
        marks = ", ".join("?" for _ in ACTIVE_STATUSES)
        return await self.store.fetch_all(
            f"SELECT id, status FROM orch_executions WHERE status IN ({marks})",
            *ACTIVE_STATUSES,
        )

    async def _load(self, ids: Iterable[str]) -> list[ExecutionChange]:
        wanted = sorted(ids)
        if not wanted:
            return []
        marks = ", ".join("?" for _ in wanted)
        rows = await self.store.fetch_all(
            f"SELECT id, kind, name, status, updated_at FROM orch_executions WHERE id IN ({marks}) "
            "ORDER BY updated_at, id",
            *wanted,
        )
        return [
            ExecutionChange(r["id"], r["kind"], r["name"], r["status"], float(r["updated_at"]))
            for r in rows
        ]


class _Source:
    """A task that runs while some subscriber wants it, and :data:`LINGER` seconds more."""

    def __init__(self) -> None:
        self.task: asyncio.Task[None] | None = None
        self.stopper: asyncio.Task[None] | None = None

    def keep(self) -> None:
        """A subscriber wants it: call off a pending stop."""
        if self.stopper is not None:
            self.stopper.cancel()
            self.stopper = None

    def release(self, linger: float) -> None:
        """No subscriber wants it any more: stop it after ``linger`` seconds."""
        self.keep()
        self.stopper = asyncio.create_task(self._stop_after(linger))

    async def _stop_after(self, linger: float) -> None:
        await asyncio.sleep(linger)
        self.stopper = None  # this task must not cancel itself in stop()
        await self.stop()

    async def stop(self) -> None:
        self.keep()
        task, self.task = self.task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


class LiveFeed:
    """Fans bus events and execution changes out to the stream's subscribers."""

    def __init__(
        self,
        bus: EventBus,
        store: Store,
        *,
        heartbeat: float = HEARTBEAT,
        poll_interval: float = POLL_INTERVAL,
        linger: float = LINGER,
    ) -> None:
        self.bus = bus
        self.store = store
        self.heartbeat = heartbeat
        self.poll_interval = poll_interval
        self.linger = linger
        self.closing = False
        self._subscribers: set[Subscriber] = set()
        self._recent: deque[tuple[CloudEvent, Message]] = deque(maxlen=REPLAY_SIZE)
        self._events = _Source()
        self._executions = _Source()
        self._starting = asyncio.Lock()

    async def subscribe(self, subscriber: Subscriber, *, last_event_id: str | None) -> bool:
        """Add ``subscriber``, starting the sources it needs; queue the events it missed
        after ``last_event_id``. False when that id is no longer kept (it missed events
        that cannot be sent again)."""
        async with self._starting:
            if subscriber.events:
                self._events.keep()
                if self._events.task is None:
                    self._recent.clear()  # what was read before has a gap after it
                    reader = await self.bus.open_reader(">", start="latest")
                    self._events.task = asyncio.create_task(
                        watch_bus(self.bus, ">", reader, self._deliver, name="stream")
                    )
            if subscriber.executions:
                self._executions.keep()
                if self._executions.task is None:
                    watch = ExecutionWatch(self.store)
                    await watch.start()
                    self._executions.task = asyncio.create_task(self._poll(watch))
            self._subscribers.add(subscriber)
        if last_event_id is None or not subscriber.events:
            return True
        return self._replay(subscriber, last_event_id)

    def _replay(self, subscriber: Subscriber, last_event_id: str) -> bool:
        kept = list(self._recent)
        for index, (event, _) in enumerate(kept):
            if event.id == last_event_id:
                for later, message in kept[index + 1 :]:
                    if subscriber.wants(later):
                        subscriber.offer(message)
                return True
        return False

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.discard(subscriber)
        if self.closing:
            return
        if subscriber.events and not any(s.events for s in self._subscribers):
            self._events.release(self.linger)
        if subscriber.executions and not any(s.executions for s in self._subscribers):
            self._executions.release(self.linger)

    async def _deliver(self, delivery: Delivery) -> None:
        event = delivery.event
        if event is None:  # not a CloudEvent: nothing to show
            return
        message = cloudevent_message(event)
        self._recent.append((event, message))
        for subscriber in list(self._subscribers):
            if subscriber.wants(event):
                subscriber.offer(message)

    async def _poll(self, watch: ExecutionWatch) -> None:
        while True:
            await asyncio.sleep(self.poll_interval)
            try:
                changes = await watch.changes()
            except Exception as error:  # the store is away: look again later
                log.warning("stream: reading the executions failed (%s)", error)
                continue
            for change in changes:
                message = Message("execution", dumps(change.to_dict()))
                for subscriber in list(self._subscribers):
                    if subscriber.executions:
                        subscriber.offer(message)

    async def close(self) -> None:
        """End every stream and stop reading (the server is stopping). Idempotent."""
        self.closing = True
        for subscriber in list(self._subscribers):
            subscriber.end()
        await self._events.stop()
        await self._executions.stop()


#: Where the application keeps its feed (see :func:`hybridmesh.control.mount_control_plane`).
LIVE = web.AppKey("live_feed", LiveFeed)


__all__ = [
    "HEARTBEAT",
    "LIVE",
    "ExecutionChange",
    "ExecutionWatch",
    "LiveFeed",
    "Message",
    "Subscriber",
]
