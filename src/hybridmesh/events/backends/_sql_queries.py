"""The SQL of the SQL event log (tables from migration 2 in :mod:`hybridmesh.store.migrations`).

Every statement here is written once with ``?`` placeholders and runs on SQLite and
PostgreSQL; what differs between them (row locks, the publish lock, NOTIFY, array
statements) lives in ``_sql_sqlite`` and ``_sql_postgres``.
"""

from __future__ import annotations

import zlib
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from hybridmesh.events.backend import DeadLetter
from hybridmesh.events.envelope import CloudEvent, EventFormatError
from hybridmesh.events.subjects import literal_prefix

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

# Lease the partitions of a group that are free (never leased, released, or their lease
# expired), not waiting for a retry, and that have events past their position: oldest
# pending first. A lease still set was not settled in time (its consumer died mid-batch), so
# taking it over counts one more attempt of the partition's next event.
LEASE = """
UPDATE event_positions
SET lease_owner = ?, lease_token = ?, lease_until = ?,
    head_attempts = CASE WHEN lease_token IS NULL THEN head_attempts ELSE head_attempts + 1 END
WHERE group_name = ? AND partition IN (
    SELECT p.partition FROM event_positions p
    WHERE p.group_name = ? AND (p.lease_token IS NULL OR p.lease_until <= ?)
        AND p.not_before <= ?
        AND EXISTS (SELECT 1 FROM event_log l
                    WHERE l.partition = p.partition AND l.seq > p.position)
    ORDER BY (SELECT l.seq FROM event_log l WHERE l.partition = p.partition AND l.seq > p.position
              ORDER BY l.seq LIMIT 1)
    LIMIT ?{lock}
)
RETURNING partition, position, head_attempts
"""
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


def partition_of(event: CloudEvent, partitions: int) -> int:
    """The partition of ``event``: by its partition key, else by its id."""
    key = event.partition_key or event.id
    return zlib.crc32(key.encode()) % partitions


def type_filter(pattern: str) -> tuple[str, tuple[Any, ...]]:
    """A SQL condition on ``type`` that every type matching ``pattern`` meets, and its
    arguments: equality for a pattern without wildcards, a prefix test for one that starts
    with literal tokens, nothing otherwise. It only narrows; :func:`matches` decides."""
    prefix = literal_prefix(pattern)
    if not prefix:
        return "", ()
    if prefix == pattern:
        return " AND type = ?", (pattern,)
    return " AND substr(type, 1, ?) = ?", (len(prefix) + 1, prefix + ".")


@lru_cache(maxsize=256)
def read_events_sql(partitions: int, narrowing: str) -> str:
    """Up to ``?`` events past ``?`` in each of ``partitions`` partitions, in one statement.
    Its arguments, per partition: the group, the narrowing's, partition, position, limit.

    Rows the group does not want (replays for other groups, types the narrowing rules out)
    do not come back, except the last one read in a partition, with a NULL body: the reader
    learns how far it looked, so it can skip past them all. A group that wants few of the
    log's types reads little more than what it wants.
    """
    one = (
        "SELECT seq, partition, type, body FROM (SELECT *, max(seq) OVER () AS last FROM "
        "(SELECT seq, partition, type, CASE WHEN (only_group IS NULL OR "
        f"only_group = ?){narrowing} THEN body END AS body FROM event_log "
        "WHERE partition = ? AND seq > ? ORDER BY seq LIMIT ?) AS w{index}) AS q{index} "
        "WHERE body IS NOT NULL OR seq = last"
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
    "LEASE",
    "SEQ_AT_COUNT",
    "SETTLE",
    "UPSERT_GROUP",
    "dead_letter_from_row",
    "epoch_to_datetime",
    "partition_of",
    "read_events_sql",
    "type_filter",
]
