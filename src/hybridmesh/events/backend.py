"""The contract between the event bus and the backends that store and carry events.

A backend keeps an append-only log of CloudEvents and, per consumer group, a durable
position. The bus does the rest (handlers, retries, backoff, dead-letter decisions), so every
backend behaves the same and one conformance suite checks them all.

The unit of work is a :class:`PartitionBatch`: events of one partition of one group, in log
order, leased to one consumer. Events that share a ``partitionkey`` always land in the same
partition, so handling a partition's batch in order, one at a time, keeps their order. The
consumer reports back with one :class:`Settlement`:

- the first ``handled`` deliveries are done (acknowledged or dropped);
- then, optionally, the next one is to be retried after ``retry_after`` seconds, or moved to
  the dead letters with ``dead_letter`` as the reason;
- deliveries after that are released untouched: they come again, after the retried one.

A batch that is not settled within the group's ``ack_wait`` (its consumer died) is delivered
again, to any consumer, with the attempt count of its first delivery raised by one. That is
at-least-once delivery: handlers must tolerate seeing an event twice (see
:class:`~hybridmesh.events.idempotency.IdempotentConsumer`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

from hybridmesh.core.errors import HybridMeshError
from hybridmesh.events.envelope import CloudEvent


class BackendUnavailableError(HybridMeshError):
    """The backend cannot publish or fetch now (its server is unreachable, its connection
    was lost). Nothing was acknowledged; trying again later is safe, since a publish of an
    event the backend already has is dropped by its (source, id)."""


@dataclass(frozen=True)
class GroupSpec:
    """A consumer group: who receives what, and how patiently.

    ``pattern`` selects event types with NATS subject rules. ``start`` says where a group
    that does not exist yet begins: at the oldest retained event (``earliest``) or after the
    newest (``latest``). ``max_deliveries`` bounds the attempts of one event before it goes
    to the dead letters. ``ack_wait`` is how long a fetched batch stays leased.
    """

    name: str
    pattern: str = ">"
    start: Literal["earliest", "latest"] = "earliest"
    max_deliveries: int = 5
    ack_wait: float = 30.0


@dataclass
class Delivery:
    """One event handed to a consumer, with its delivery count (1 the first time).

    ``event`` is None when the stored or received bytes are not a valid CloudEvent; then
    ``error`` says why and ``raw`` holds the bytes, and the bus dead-letters it.
    ``position`` is the event's place in the log (the SQL log's ``seq``, the JetStream
    stream sequence): positions only grow, and a group and a reader see the same one for
    the same stored event. A handler finds it with
    :func:`~hybridmesh.events.bus.current_delivery`.
    """

    event: CloudEvent | None
    attempt: int
    raw: bytes = b""
    error: str | None = None
    position: Any = None


@dataclass
class PartitionBatch:
    """Deliveries of one partition of one group, in log order, leased to one consumer."""

    group: str
    partition: str
    deliveries: list[Delivery]
    token: Any = None


@dataclass(frozen=True)
class Settlement:
    """How a consumer finished a :class:`PartitionBatch` (see the module docstring)."""

    handled: int
    retry_after: float | None = None
    dead_letter: str | None = None

    def __post_init__(self) -> None:
        if self.retry_after is not None and self.dead_letter is not None:
            raise ValueError("a settlement retries or dead-letters the next delivery, not both")


@dataclass(frozen=True)
class LogSpan:
    """The positions the log holds now: ``first`` is its oldest retained event's, ``last``
    its newest's (both None when it holds none). Positions only grow, so every position
    before ``first`` is gone: removed by retention, or never used."""

    first: int | None
    last: int | None


@dataclass(frozen=True)
class DeadLetter:
    """An event that exhausted its deliveries (or could not be parsed), kept for review.

    ``body`` is the event as stored (structured JSON when it parsed). ``replayed_at`` is set
    once it has been replayed to its group.
    """

    id: str
    group: str
    reason: str
    attempts: int
    failed_at: datetime
    body: bytes
    event: CloudEvent | None = None
    replayed_at: datetime | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def event_id(self) -> str | None:
        return self.event.id if self.event else None

    @property
    def type(self) -> str | None:
        return self.event.type if self.event else None

    @property
    def source(self) -> str | None:
        return self.event.source if self.event else None

    def to_dict(self) -> dict[str, Any]:
        """The dead letter as JSON-ready values, as ``dlq show --json`` prints it and the
        control plane answers it: the parsed ``event``, or the raw ``body`` when the stored
        bytes never parsed as a CloudEvent (one of the two is null)."""
        return {
            "id": self.id,
            "group": self.group,
            "reason": self.reason,
            "attempts": self.attempts,
            "failed_at": self.failed_at.isoformat(),
            "replayed_at": self.replayed_at.isoformat() if self.replayed_at else None,
            "event": self.event.to_dict() if self.event else None,
            "body": None if self.event else self.body.decode("utf-8", "replace"),
        }


class EventReader(Protocol):
    """A read of the log from a place of its own, kept in this process only: it creates no
    consumer group and leaves nothing behind when it ends, however it ends (on NATS, the
    server deletes its consumer once it has not pulled for a while). It sees the events
    published for every group (not replays), in log order, and acknowledges nothing. For
    watching the bus (``hybridmesh events tail``), not for work that must not be lost."""

    async def read(self, max_events: int, wait: float) -> list[Delivery]:
        """Up to ``max_events`` events after the last read, waiting up to ``wait`` seconds
        for some; an empty list when none came."""
        ...

    async def close(self) -> None:
        """Stop reading and let go of what the read holds. Idempotent."""
        ...


class EventBackend(Protocol):
    """Stores events and group positions. Implementations: ``backends/sql.py`` (SQLite and
    PostgreSQL), ``backends/nats.py`` (JetStream), ``backends/memory.py`` (tests only)."""

    name: str

    async def start(self) -> None:
        """Connect and create what is missing (tables, streams). Idempotent."""
        ...

    async def close(self) -> None: ...

    async def check(self) -> None:
        """Raise :class:`BackendUnavailableError` unless the backend can publish and fetch
        now (its server answers); for health checks. Quick: a round trip at most."""
        ...

    async def publish(self, events: Sequence[CloudEvent], *, group: str | None = None) -> None:
        """Append ``events`` durably, in order; when this returns they will be delivered.

        An event whose (source, id) was published before is not appended again (within the
        backend's dedupe window). With ``group``, only that group receives the events and the
        dedupe is skipped: this is how a dead letter is replayed.
        """
        ...

    async def ensure_group(self, spec: GroupSpec) -> None:
        """Create the group's durable position if it does not exist; update its settings."""
        ...

    async def delete_group(self, name: str) -> None:
        """Forget a group and its positions (its dead letters stay). For groups that live
        as long as one process, such as a tail or a WebSocket hub. Unknown names are fine."""
        ...

    async def open_reader(
        self, pattern: str, *, start: Literal["earliest", "latest"] = "latest"
    ) -> EventReader:
        """A :class:`EventReader` of the events whose type matches ``pattern``, from the
        oldest retained one or after the newest."""
        ...

    async def log_span(self) -> LogSpan:
        """Which positions the log holds now (:attr:`Delivery.position` is one of them):
        where retention has trimmed it up to, and how far it goes."""
        ...

    async def fetch(
        self, spec: GroupSpec, consumer: str, *, max_events: int, wait: float
    ) -> list[PartitionBatch]:
        """Lease batches of events for ``consumer``, waiting up to ``wait`` seconds for some.

        Returns an empty list when nothing is ready. Only events whose type matches the
        group's pattern are delivered.
        """
        ...

    async def settle(self, batch: PartitionBatch, settlement: Settlement) -> None:
        """Record how ``batch`` ended and release its lease."""
        ...

    async def dead_letters(self, *, group: str | None = None, limit: int = 100) -> list[DeadLetter]:
        """The dead letters, newest first."""
        ...

    async def get_dead_letter(self, dead_letter_id: str) -> DeadLetter:
        """One dead letter; raises ``NotFoundError``."""
        ...

    async def replay(self, dead_letter_id: str) -> DeadLetter:
        """Deliver the dead letter's event again, to its group only, and mark it replayed.

        Raises ``NotFoundError``, and ``ValidationError`` when the body is not a CloudEvent.
        """
        ...

    async def purge(self, *, group: str | None = None) -> int:
        """Delete dead letters (of one group, or all); returns how many."""
        ...


__all__ = [
    "BackendUnavailableError",
    "DeadLetter",
    "Delivery",
    "EventBackend",
    "EventReader",
    "GroupSpec",
    "LogSpan",
    "PartitionBatch",
    "Settlement",
]
