"""Retention of the SQL event log: how much to keep, and deleting the rest in batches."""

from __future__ import annotations

from dataclasses import dataclass

from hybridmesh.core.errors import ConfigurationError
from hybridmesh.events.backends import _sql_queries as q
from hybridmesh.store import Store

#: Rows one retention DELETE removes; each batch commits on its own, so writers go on.
TRIM_BATCH = 5_000


@dataclass(frozen=True)
class Retention:
    """How much of the log to keep; ``None`` (the default for both) keeps everything.

    ``max_age`` is in seconds since publishing, judged in log order; ``max_events`` keeps
    only the newest that many. Trimming deletes events whether or not every group has
    handled them, as a broker's retention limits do, and with them their dedupe records.
    """

    max_age: float | None = None
    max_events: int | None = None

    def __post_init__(self) -> None:
        if self.max_age is not None and self.max_age < 0:
            raise ConfigurationError("retention max_age must be at least 0 seconds")
        if self.max_events is not None and self.max_events < 0:
            raise ConfigurationError("retention max_events must be at least 0")


async def trim_log(store: Store, retention: Retention, now: float) -> int:
    """Delete the events ``retention`` no longer keeps at epoch time ``now``, oldest first,
    in batches of :data:`TRIM_BATCH`; returns how many."""
    bound = 0  # every seq up to this one goes
    if retention.max_events is not None:
        seq = await store.fetch_value(q.SEQ_AT_COUNT, retention.max_events)
        bound = int(seq) if seq is not None else 0
    if retention.max_age is not None:
        young = await store.fetch_value(q.FIRST_YOUNG_SEQ, now - retention.max_age)
        if young is None:  # nothing is young enough: everything goes
            young = int(await store.fetch_value("SELECT COALESCE(MAX(seq), 0) FROM event_log")) + 1
        bound = max(bound, int(young) - 1)
    deleted = 0
    while bound > 0:
        count = await store.execute(q.DELETE_UP_TO, bound, TRIM_BATCH)
        deleted += count
        if count < TRIM_BATCH:
            break
    return deleted


__all__ = ["TRIM_BATCH", "Retention", "trim_log"]
