"""The SQL of the SQL event log (tables from migration 2 in :mod:`hybridmesh.store.migrations`).

Every statement here is written once with ``?`` placeholders and runs on SQLite and
PostgreSQL; what differs between them (row locks, the publish lock, NOTIFY, array
statements) lives in ``_sql_sqlite`` and ``_sql_postgres``.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from hybridmesh.events.backend import DeadLetter
from hybridmesh.events.envelope import CloudEvent, EventFormatError
from hybridmesh.events.subjects import validate_pattern

INSERT_EVENT = (
    "INSERT INTO event_log (event_id, source, type, partition, only_group, body, published_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"
)

UPSERT_GROUP = """
INSERT INTO event_groups (name, pattern, start, max_deliveries, ack_wait, created_at, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (name) DO UPDATE SET pattern = excluded.pattern, start = excluded.start,
    max_deliveries = excluded.max_deliveries, ack_wait = excluded.ack_wait,
    updated_at = excluded.updated_at
"""

INSERT_POSITION = (
    "INSERT INTO event_positions (group_name, partition, position) VALUES (?, ?, ?) "
    "ON CONFLICT DO NOTHING"
)

# One look of a group at its partitions: take the free ones (never leased, released, or
# their lease expired) that are not waiting for a retry and have events past their
# position, oldest pending first; give each a range, from its first pending seq, ``span``
# seqs at most and up to the log's newest seq (every seq up to the newest has committed:
# publishers append in seq order). A partition with an event the group wants in its range
# is leased; one without is moved to the end of its range at once, in this same write, so
# a group passes over other types without leasing, reading or giving back anything. A
# lease still set was not settled in time (its consumer died mid-batch): taking it over
# counts one more attempt of the partition's next event. Returns every partition taken,
# leased (``lease_token``) or moved, with its first pending seq and the newest seq.
# Arguments: group (replays), the narrowing's, span, span, group, now, now, how many,
# owner, token, lease end, group.
_LOOK = """
WITH c AS MATERIALIZED (
    SELECT r.partition AS taken, r.bound, EXISTS (
        SELECT 1 FROM event_log l WHERE l.partition = r.partition AND l.seq > r.position
            AND l.seq <= r.bound AND (l.only_group IS NULL OR l.only_group = ?){narrowing}
    ) AS wanted
    FROM (
        SELECT t.partition, t.position, CASE WHEN t.first + ? - 1 < t.newest
            THEN t.first + ? - 1 ELSE t.newest END AS bound
        FROM (
            SELECT p.partition, p.position,
                (SELECT l.seq FROM event_log l WHERE l.partition = p.partition
                 AND l.seq > p.position ORDER BY l.seq LIMIT 1) AS first,
                (SELECT MAX(l.seq) FROM event_log l) AS newest
            FROM event_positions p
            WHERE p.group_name = ? AND (p.lease_token IS NULL OR p.lease_until <= ?)
                AND p.not_before <= ?
                AND EXISTS (SELECT 1 FROM event_log l
                            WHERE l.partition = p.partition AND l.seq > p.position)
            ORDER BY first LIMIT ?{lock}
        ) AS t
    ) AS r
)
UPDATE event_positions
SET position = CASE WHEN c.wanted THEN position ELSE c.bound END,
    head_attempts = CASE WHEN NOT c.wanted THEN 0
        WHEN lease_token IS NULL THEN head_attempts ELSE head_attempts + 1 END,
    lease_owner = CASE WHEN c.wanted THEN CAST(? AS TEXT) END,
    lease_token = CASE WHEN c.wanted THEN CAST(? AS TEXT) END,
    lease_until = CASE WHEN c.wanted THEN CAST(? AS DOUBLE PRECISION) END
FROM c
WHERE group_name = ? AND partition = c.taken
RETURNING partition, position, head_attempts, lease_token,
    (SELECT l.seq FROM event_log l WHERE l.partition = event_positions.partition
     AND l.seq > event_positions.position ORDER BY l.seq LIMIT 1) AS first,
    (SELECT MAX(l.seq) FROM event_log l) AS newest
"""


@lru_cache(maxsize=256)
def look_sql(lock: str, narrowing: str) -> str:
    """:data:`_LOOK` with a database's row locks and a group's narrowing."""
    return _LOOK.format(lock=lock, narrowing=narrowing)


# Settle a batch (or release a partition): only while its lease is still the current one.
SETTLE = """
UPDATE event_positions SET position = ?, head_attempts = ?, not_before = ?, lease_owner = NULL,
    lease_token = NULL, lease_until = NULL
WHERE group_name = ? AND partition = ? AND lease_token = ?
"""

# A dead letter, written only while the batch's lease is current (run before its SETTLE).
INSERT_DEAD_LETTER = """
INSERT INTO event_dead_letters
    (id, group_name, event_id, source, type, reason, attempts, body, failed_at)
SELECT ?, ?, ?, ?, ?, ?, CAST(? AS INTEGER), ?, CAST(? AS DOUBLE PRECISION)
FROM event_positions WHERE group_name = ? AND partition = ? AND lease_token = ?
"""

DEAD_LETTER_COLUMNS = "id, group_name, reason, attempts, body, failed_at, replayed_at"

# Retention: the oldest seq still young enough, the seq at the count limit, and a batch.
FIRST_YOUNG_SEQ = "SELECT seq FROM event_log WHERE published_at >= ? ORDER BY seq LIMIT 1"
SEQ_AT_COUNT = "SELECT seq FROM event_log ORDER BY seq DESC LIMIT 1 OFFSET ?"
DELETE_UP_TO = (
    "DELETE FROM event_log WHERE seq IN "
    "(SELECT seq FROM event_log WHERE seq <= ? ORDER BY seq LIMIT ?)"
)


NEWEST_SEQ = "SELECT COALESCE(MAX(seq), 0) FROM event_log"

# Where a read without a group goes next: the first seq past its place, and the newest.
READ_BOUNDS = (
    "SELECT (SELECT seq FROM event_log WHERE seq > ? ORDER BY seq LIMIT 1) AS first, "
    "(SELECT MAX(seq) FROM event_log) AS newest"
)


@lru_cache(maxsize=256)
def read_log_sql(narrowing: str) -> str:
    """Up to ``?`` events past ``?`` up to ``?`` in log order, published for every group
    (not replays), of the types ``narrowing`` lets through (its arguments last but one)."""
    return (
        "SELECT seq, type, body FROM event_log WHERE seq > ? AND seq <= ? "
        f"AND only_group IS NULL{narrowing} ORDER BY seq LIMIT ?"
    )


def partition_of(event: CloudEvent, partitions: int) -> int:
    """The partition of ``event``: by its partition key, else by its id."""
    key = event.partition_key or event.id
    return zlib.crc32(key.encode()) % partitions


#: Renders a sequence of literal parts (str) and runs of any characters (None) as a SQL
#: condition on ``type`` matching the whole of it, with its arguments (LIKE or GLOB).
WildcardMatch = Callable[[Sequence[str | None]], tuple[str, tuple[Any, ...]]]

# How many dots ``type`` has: one less than its tokens.
_DOTS = "length(type) - length(replace(type, '.', ''))"


@lru_cache(maxsize=1024)
def type_filter(pattern: str, wildcard: WildcardMatch) -> tuple[str, tuple[Any, ...]]:
    """A SQL condition (``" AND ..."``, or ``""`` for ``>``) that the types matching
    ``pattern`` meet, and its arguments, so a read passes over other types in the database.

    It is exact for every pattern but those with a ``*`` before a trailing ``>`` (there a
    ``*`` may stand for several tokens in SQL; :func:`matches` decides). Types have no
    wildcards and no empty tokens, so fixing the number of dots makes each ``*`` (a run of
    any characters in ``wildcard``) exactly one token: ``a.*.c`` is ``a.%.c`` with two dots.
    """
    tokens = validate_pattern(pattern).split(".")
    tail = tokens[-1] == ">"
    fixed = tokens[:-1] if tail else tokens
    if not fixed:
        return "", ()
    if not tail and "*" not in fixed:
        return " AND type = ?", (pattern,)
    if "*" not in fixed:  # a literal prefix, then one token or more
        prefix = ".".join(fixed) + "."
        return " AND substr(type, 1, ?) = ?", (len(prefix), prefix)
    if tail:
        condition, args = f" AND {_DOTS} >= ?", (len(fixed),)
    else:
        condition, args = f" AND {_DOTS} = ?", (len(fixed) - 1,)
    parts: list[str | None] = []
    for index, token in enumerate(fixed):
        if index:
            parts.append(".")
        parts.append(None if token == "*" else token)
    if tail:
        parts += [".", None]
    matching, matching_args = wildcard(parts)
    return f"{condition} AND {matching}", (*args, *matching_args)


@lru_cache(maxsize=256)
def read_events_sql(partitions: int, narrowing: str) -> str:
    """The events a group wants in each of ``partitions`` partitions, in one statement:
    up to ``?`` past ``?`` up to ``?``, oldest first. Its arguments, per partition:
    partition, position, the last seq to look at, the group, the narrowing's, the limit.

    Rows the group does not want (replays for other groups, types the narrowing rules out)
    are passed over in the database: with the ``event_log_scan`` index it reads the index
    entries of the range, and the bodies of the rows it returns.
    """
    one = (
        "SELECT * FROM (SELECT seq, partition, type, body FROM event_log "
        "WHERE partition = ? AND seq > ? AND seq <= ? AND (only_group IS NULL OR only_group = ?)"
        f"{narrowing} ORDER BY seq LIMIT ?) AS q{{index}}"
    )
    return " UNION ALL ".join(one.format(index=index) for index in range(partitions))


def epoch_to_datetime(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


def dead_letter_from_row(row: dict[str, Any]) -> DeadLetter:
    body: str = row["body"]
    try:
        event: CloudEvent | None = CloudEvent.from_json(body)
    except EventFormatError:
        event = None
    failed_at = epoch_to_datetime(row["failed_at"])
    assert failed_at is not None  # NOT NULL in the schema
    return DeadLetter(
        id=row["id"],
        group=row["group_name"],
        reason=row["reason"],
        attempts=row["attempts"],
        failed_at=failed_at,
        body=body.encode(),
        event=event,
        replayed_at=epoch_to_datetime(row["replayed_at"]),
    )


__all__ = [
    "DEAD_LETTER_COLUMNS",
    "DELETE_UP_TO",
    "FIRST_YOUNG_SEQ",
    "INSERT_DEAD_LETTER",
    "INSERT_EVENT",
    "INSERT_POSITION",
    "NEWEST_SEQ",
    "READ_BOUNDS",
    "SEQ_AT_COUNT",
    "SETTLE",
    "UPSERT_GROUP",
    "WildcardMatch",
    "dead_letter_from_row",
    "epoch_to_datetime",
    "look_sql",
    "partition_of",
    "read_events_sql",
    "read_log_sql",
    "type_filter",
]
