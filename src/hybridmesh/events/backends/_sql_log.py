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
from typing import Any

from hybridmesh.core.clock import Clock
from hybridmesh.events.backends._sql_wakeup import PostgresListener, Wakeup
from hybridmesh.store import Statement, Transaction

#: A row of a statement that takes one value per column, as the database driver wants it.
Row = tuple[Any, ...]


@dataclass(slots=True)
class LogRow:
    """One event to append to ``event_log``: its dedupe key, where it goes, and its body."""

    event_id: str
    source: str
    type: str
    partition: int
    only_group: str | None  # a replay for one group; None for everyone
    body: str  # the event as JSON
    published_at: float

    def values(self) -> Row:
        """The row's values in the order of :data:`~._sql_queries.INSERT_EVENT`."""
        return (
            self.event_id,
            self.source,
            self.type,
            self.partition,
            self.only_group,
            self.body,
            self.published_at,
        )


class LogRecorder(ABC):
    """The event log's writes that depend on the database."""

    #: Leases free partitions (``_sql_queries.LEASE`` with this database's row locks).
    lease_sql: str

    @abstractmethod
    async def append(self, queries: Transaction, rows: Sequence[LogRow]) -> None:
        """Append ``rows`` in their order, as one publish."""

    @abstractmethod
    def append_statement(self, rows: Sequence[LogRow]) -> Statement:
        """The statement that appends ``rows`` within a caller's :meth:`Store.batch`, one
        row at a time (``rows`` of the statement)."""

    @abstractmethod
    async def settle(self, queries: Transaction, rows: Sequence[Row]) -> None:
        """Run ``_sql_queries.SETTLE`` for each row."""

    def listener(
        self, url: str, wakeup: Wakeup, clock: Clock, wanted: Callable[[str], bool]
    ) -> PostgresListener | None:
        """What wakes this process's fetches for other processes' publishes, if anything
        does (otherwise fetches find them by polling)."""
        return None


__all__ = ["LogRecorder", "LogRow", "Row"]
