"""The SQL event log on PostgreSQL: row locks, the publish lock, NOTIFY, and statements
that take a whole batch of rows as arrays (one round trip).

Publishers hold a transaction-scoped advisory lock, so sequence numbers commit in order (a
reader never passes a seq that commits later), and each publish NOTIFYs the other
processes' waiting fetches, naming the types appended.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from hybridmesh.core.clock import Clock
from hybridmesh.events.backends._sql_log import LogRecorder, LogRow, SettleRow
from hybridmesh.events.backends._sql_wakeup import PostgresListener, Wakeup
from hybridmesh.store import Statement, Transaction

#: Publishers hold this transaction-scoped advisory lock (the bytes of "hmevents"), so
#: sequence numbers commit in order and a reader never skips a gap that fills later.
PUBLISH_LOCK_KEY = int.from_bytes(b"hmevents", "big")
#: The NOTIFY channel that wakes waiting fetches in every process.
NOTIFY_CHANNEL = "hybridmesh_events"

#: Concurrent fetchers in other processes pass over the rows being leased.
SKIP_LOCKED = " FOR UPDATE OF p SKIP LOCKED"

_EVENT_COLUMNS = "event_id, source, type, partition, only_group, body, published_at"
_EVENT_ARRAYS = (
    "?::text[], ?::text[], ?::text[], ?::integer[], ?::text[], ?::text[], ?::double precision[]"
)

# A NOTIFY's payload names the types appended (space-separated; empty when they would not
# fit), so a process wakes only the fetches that take one of them.
_TYPES_OF_APPENDED = "string_agg(DISTINCT type, ' ') AS types FROM appended"
_TYPES = "CASE WHEN length(types) <= 4000 THEN types ELSE '' END"


def _append_ctes(written: str | None) -> str:
    """CTEs that take the publish lock, insert rows (one array per INSERT_EVENT column) in
    their order, and NOTIFY when any was inserted (CTE ``notified``). With ``written``,
    the arrays start with one more, a text array of ids: a row is appended only when its
    id is in that relation of the caller's (with an ``id`` column), and the lock is taken
    once that relation is complete. The lock is taken before any row draws its seq, and
    held until the statement commits."""
    after = f" FROM (SELECT 1 FROM {written} LIMIT 1) AS w" if written else ""
    guard = "?::text[], " if written else ""
    guard_column = "guard, " if written else ""
    where = f"\n    WHERE v.guard IN (SELECT id FROM {written})" if written else ""
    return f"""publish_lock AS MATERIALIZED (
    SELECT pg_advisory_xact_lock({PUBLISH_LOCK_KEY}){after}
),
appended AS (
    INSERT INTO event_log ({_EVENT_COLUMNS})
    SELECT v.event_id, v.source, v.type, v.partition, v.only_group, v.body, v.published_at
    FROM unnest({guard}{_EVENT_ARRAYS}) WITH ORDINALITY
        AS v({guard_column}event_id, source, type, partition, only_group, body, published_at, n)
        CROSS JOIN publish_lock{where}
    ORDER BY v.n
    ON CONFLICT DO NOTHING
    RETURNING type
),
notified AS (
    SELECT pg_notify('{NOTIFY_CHANNEL}', {_TYPES}) AS sent
    FROM (SELECT {_TYPES_OF_APPENDED}) AS a WHERE types IS NOT NULL
)"""


# A whole append in one statement, so in its own implicit transaction.
APPEND_EVENTS = f"WITH {_append_ctes(None)}\nSELECT 1 FROM notified\n"

# INSERT_EVENT for one row, with the publish lock and the notify, for a caller's
# transaction that appends its events row by row.
APPEND_EVENT = f"""
WITH publish_lock AS MATERIALIZED (SELECT pg_advisory_xact_lock({PUBLISH_LOCK_KEY})),
appended AS (
    INSERT INTO event_log ({_EVENT_COLUMNS})
    SELECT ?::text, ?::text, ?::text, ?::integer, ?::text, ?::text, ?::double precision
    FROM publish_lock
    ON CONFLICT DO NOTHING
    RETURNING type
)
SELECT pg_notify('{NOTIFY_CHANNEL}', type) FROM appended
"""

# SETTLE for many rows in one statement (one array per SETTLE argument), so one round trip
# with no BEGIN and COMMIT around it. A consumer settles a partition for every batch, and
# on a fetch releases each partition that held nothing for it.
SETTLE_MANY = """
UPDATE event_positions AS p SET position = v.position, head_attempts = v.head_attempts,
    not_before = v.not_before, lease_owner = NULL, lease_token = NULL, lease_until = NULL
FROM unnest(?::bigint[], ?::integer[], ?::double precision[], ?::text[], ?::integer[],
            ?::text[]) AS v(position, head_attempts, not_before, group_name, partition, token)
WHERE p.group_name = v.group_name AND p.partition = v.partition AND p.lease_token = v.token
"""


# What LIKE reads as a wildcard or as its escape, in a literal part of a pattern.
_LIKE_SPECIAL = re.compile(r"[%_\\]")


def array_columns(rows: Iterable[Sequence[Any]]) -> list[list[Any]]:
    """``rows`` as one list per column: the arguments of a statement that takes each
    column as an array (``unnest(?::text[], ...)``), so many rows go in one round trip."""
    return [list(column) for column in zip(*rows, strict=True)]


class PostgresLogRecorder(LogRecorder):
    """:class:`LogRecorder` for PostgreSQL; also appends events within a caller's larger
    statement (:meth:`guarded_append`)."""

    lease_lock = SKIP_LOCKED

    async def append(self, queries: Transaction, rows: Sequence[LogRow]) -> None:
        await queries.execute(APPEND_EVENTS, *array_columns(row.values() for row in rows))

    def append_statement(self, rows: Sequence[LogRow]) -> Statement:
        # Each row takes the publish lock and notifies.
        return Statement(APPEND_EVENT, rows=[row.values() for row in rows])

    async def settle(self, queries: Transaction, rows: Sequence[SettleRow]) -> None:
        await queries.execute(SETTLE_MANY, *array_columns(row.values() for row in rows))

    @staticmethod
    def wildcard_match(parts: Sequence[str | None]) -> tuple[str, tuple[Any, ...]]:
        like = "".join(
            "%" if part is None else _LIKE_SPECIAL.sub(r"\\\g<0>", part) for part in parts
        )
        return "type LIKE ? ESCAPE '\\'", (like,)

    def listener(
        self, url: str, wakeup: Wakeup, clock: Clock, wanted: Callable[[str], bool]
    ) -> PostgresListener | None:
        return PostgresListener(url, NOTIFY_CHANNEL, wakeup, clock, wanted)

    def guarded_append(self, written: str) -> str:
        """CTEs that append events within a caller's statement, only those whose guard
        (an id) is in the caller's relation ``written`` (with an ``id`` column); their
        arguments come from :meth:`guarded_arguments`. The caller's final SELECT must
        read ``notified`` for the NOTIFY to be sent."""
        return _append_ctes(written)

    def guarded_arguments(self, rows: Sequence[tuple[str, LogRow]]) -> list[list[Any]]:
        """The arguments of :meth:`guarded_append` for ``rows``, each with its guard."""
        return array_columns((guard, *row.values()) for guard, row in rows)


__all__ = [
    "APPEND_EVENT",
    "APPEND_EVENTS",
    "NOTIFY_CHANNEL",
    "PUBLISH_LOCK_KEY",
    "SETTLE_MANY",
    "SKIP_LOCKED",
    "PostgresLogRecorder",
    "array_columns",
]
