"""How the SQL event log writes on one kind of database: the interface, and its rows.

:class:`~hybridmesh.events.backends.sql.SqlEventBackend` keeps one :class:`LogRecorder`
for its store's dialect (``_sql_sqlite`` or ``_sql_postgres``); every statement that
differs between the databases lives in those modules. Writers that append events within
their own batch of writes (the orchestration engine) use the same recorder.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from hybridmesh.core.clock import Clock
from hybridmesh.events.backends._sql_wakeup import PostgresListener, Wakeup
from hybridmesh.store import Statement, Transaction

#: A row of a statement that takes one value per column, as the database driver wants it.
Row = tuple[Any, ...]


class LogRow(NamedTuple):
    """One event to append to ``event_log``: its dedupe key, where it goes, and its body.

    A named tuple rather than a frozen dataclass: one is made per event published, and a
    tuple is several times cheaper to make, and is already the row the driver takes."""

    event_id: str
    source: str
    type: str
    partition: int
    only_group: str | None  # a replay for one group; None for everyone
    body: str  # the event as JSON
    published_at: float

    def values(self) -> Row:
        """The row's values in the order of :data:`~._sql_queries.INSERT_EVENT`: its own."""
        return self


@dataclass(slots=True, frozen=True)
class SettleRow:
    """One group's new place in one partition, written only while ``token`` is still the
    partition's lease (a settle, or a partition given back)."""

    position: int  # the highest seq the group is done with
    head_attempts: int  # how often the next event was delivered already
    not_before: float  # epoch seconds: no lease before then (a retry's delay); 0.0 for none
    group: str
    partition: int
    token: str  # the lease this settles: a lease taken over since makes it change nothing

    def values(self) -> Row:
        """The row's values in the order of :data:`~._sql_queries.SETTLE` (the arrays of
        ``SETTLE_MANY`` on PostgreSQL take the same order)."""
        return (
            self.position,
            self.head_attempts,
            self.not_before,
            self.group,
            self.partition,
            self.token,
        )


@dataclass(slots=True, frozen=True)
class DeadLetterRow:
    """One dead letter to keep in ``event_dead_letters``, written only while the batch's
    lease (``group``, ``partition``, ``token``) is still current."""

    id: str
    group: str
    event_id: str | None  # the event's fields, when the delivery parsed as one
    source: str | None
    type: str | None
    reason: str
    attempts: int
    body: str  # the event as JSON, or the bytes that failed to parse
    failed_at: float
    partition: int
    token: str

    def values(self) -> Row:
        """The row's values in the order of :data:`~._sql_queries.INSERT_DEAD_LETTER`."""
        return (
            self.id,
            self.group,
            self.event_id,
            self.source,
            self.type,
            self.reason,
            self.attempts,
            self.body,
            self.failed_at,
            self.group,
            self.partition,
            self.token,
        )


class LogRecorder(ABC):
    """The event log's writes that depend on the database."""

    #: What the select of a look (``_sql_queries.look_sql``) adds to lock the rows it
    #: takes: nothing on SQLite (one writer at a time), ``FOR UPDATE ... SKIP LOCKED``.
    lease_lock: str

    @abstractmethod
    async def append(self, queries: Transaction, rows: Sequence[LogRow]) -> None:
        """Append ``rows`` in their order, as one publish."""

    @abstractmethod
    def append_statement(self, rows: Sequence[LogRow]) -> Statement:
        """The statement that appends ``rows`` within a caller's :meth:`Store.batch`, one
        row at a time (``rows`` of the statement)."""

    @abstractmethod
    async def settle(self, queries: Transaction, rows: Sequence[SettleRow]) -> None:
        """Run ``_sql_queries.SETTLE`` for each row."""

    @staticmethod
    @abstractmethod
    def wildcard_match(parts: Sequence[str | None]) -> tuple[str, tuple[Any, ...]]:
        """A case-sensitive condition that ``type`` is ``parts`` joined, each None standing
        for any run of characters (``_sql_queries.WildcardMatch``), with its arguments."""

    def listener(
        self, url: str, wakeup: Wakeup, clock: Clock, wanted: Callable[[str], bool]
    ) -> PostgresListener | None:
        """What wakes this process's fetches for other processes' publishes, if anything
        does (otherwise fetches find them by polling)."""
        return None


__all__ = ["DeadLetterRow", "LogRecorder", "LogRow", "Row", "SettleRow"]
