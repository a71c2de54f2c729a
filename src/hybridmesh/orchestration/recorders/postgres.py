"""The engine's recorder on PostgreSQL: a batch of changes as one statement.

Nearly every batch holds only heads, history records and events for the bus's log: it is
written by :func:`write_many`, one statement, so one round trip with no BEGIN and COMMIT
around it. Other batches (signals consumed, outbox rows, review items) are one
:meth:`Store.batch`. Claims skip rows other workers are claiming; renewals and releases
lock rows in id order, the order batches write them in.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from hybridmesh.core.serialization import dumps
from hybridmesh.events.backends._sql_log import LogRow
from hybridmesh.events.backends._sql_postgres import PostgresLogRecorder
from hybridmesh.orchestration.recorders.base import Change, ExecutionRecorder, Save


def _json_rows(columns: str, texts: tuple[str, ...] = ()) -> str:
    """A relation of rows sent as one JSON argument (an array of rows, each an array of
    values in the order of ``columns``, "name type, ..."). One argument of text costs the
    driver far less than an array per column, which it checks value by value.

    The columns named in ``texts`` (long JSON text: an execution's state and input) are
    not in the JSON rows: each comes from a text array argument of its own, after the JSON
    one, one element per row. Inside JSON such text would be escaped by the writer and
    unescaped by the server one character at a time."""
    pairs = [column.split() for column in columns.split(",")]
    values = []
    at = 0
    for name, kind in pairs:
        if name in texts:
            values.append(f"r.{name}")
        else:
            values.append(f"(r.value->>{at})::{kind} AS {name}")
            at += 1
    functions = ", ".join(["jsonb_array_elements(?::jsonb)", *["unnest(?::text[])"] * len(texts)])
    names = ", ".join(["value", *texts])
    return f"(SELECT {', '.join(values)} FROM ROWS FROM ({functions}) AS r({names}))"


# The rows to save are locked in id order first (materialized), the order lease renewals
# lock them in; each save applies only while the worker holds the lease. A held save has a
# NULL status, which keeps the row's, and release 0.
_SAVED = f"""
locked AS MATERIALIZED (
    SELECT id FROM orch_executions WHERE id = ANY(?::text[]) ORDER BY id FOR UPDATE
),
saved AS (
    UPDATE orch_executions AS e SET status = COALESCE(v.status, e.status), state = v.state,
        error = v.error, history_seq = v.history_seq, updated_at = v.updated_at,
        ended_at = v.ended_at,
        signals = CASE WHEN EXISTS (SELECT 1 FROM orch_signals s WHERE s.execution_id = e.id)
                       THEN 1 ELSE 0 END,
        wake_at = CASE WHEN v.release = 0 THEN e.wake_at
                       WHEN EXISTS (SELECT 1 FROM orch_signals s WHERE s.execution_id = e.id)
                       THEN v.now ELSE v.wake END,
        lease_owner = CASE WHEN v.release = 1 THEN NULL ELSE e.lease_owner END,
        lease_until = CASE WHEN v.release = 1 THEN NULL ELSE e.lease_until END
    FROM {
    _json_rows(
        "id text, status text, state text, error text, history_seq integer, "
        "updated_at float8, ended_at float8, release integer, now float8, wake float8, "
        "owner text",
        texts=("state",),
    )
} AS v
        JOIN locked ON locked.id = v.id
    WHERE e.id = v.id AND e.lease_owner = v.owner
    RETURNING e.id, e.signals
)"""

# The ids must be distinct.
_STARTED = f"""
started AS (
    INSERT INTO orch_executions (id, kind, name, version, status, input, state, error,
        trace_context, wake_at, lease_owner, lease_until, history_seq, created_at, updated_at)
    SELECT id, kind, name, version, status, input, state, NULL, trace_context, wake_at,
        lease_owner, lease_until, history_seq, created_at, created_at
    FROM {
    _json_rows(
        "id text, kind text, name text, version integer, status text, input text, "
        "state text, trace_context text, wake_at float8, lease_owner text, "
        "lease_until float8, history_seq integer, created_at float8",
        texts=("input", "state"),
    )
} AS v
    ORDER BY id
    ON CONFLICT (id) DO NOTHING
    RETURNING id
)"""

# The records of executions whose row was written.
_HISTORY = f"""
history AS (
    INSERT INTO orch_history (execution_id, seq, type, step_id, attempt, data, at)
    SELECT h.* FROM {
    _json_rows(
        "execution_id text, seq integer, type text, step_id text, attempt integer, "
        "data text, at float8"
    )
} AS h
    WHERE h.execution_id IN (SELECT id FROM written)
)"""


@lru_cache(maxsize=16)
def write_many(saves: bool, starts: bool, history: bool, events: str | None) -> str:
    """A batch of the engine's writes as one statement, so one round trip in its own
    transaction. Its arguments, for the parts asked for: the saves (the ids to lock as an
    array, the rows as JSON, each with the columns of ``_SAVED``'s relation but the state,
    then the states as an array), the starts (JSON rows with ``_STARTED``'s columns but
    the input and the state, then the inputs and the states as arrays), the history
    records (JSON rows) and the events (the event log's guarded append, ``events``: its
    CTEs over ``written``). Records and events count only for executions whose row was
    written. Returns a row per written execution, its id and ``signals`` (NULL for a
    start), and one row of NULLs when events were appended."""
    if not (saves or starts):
        raise ValueError("a batch of the engine's writes saves or starts something")
    parts = []
    written = []
    if saves:
        parts.append(_SAVED)
        written.append("SELECT id FROM saved")
    if starts:
        parts.append(_STARTED)
        written.append("SELECT id FROM started")
    parts.append(f"\nwritten AS ({' UNION ALL '.join(written)})")
    if history:
        parts.append(_HISTORY)
    if events is not None:
        parts.append("\n" + events)
    selects = []
    if saves:
        selects.append("SELECT id, signals FROM saved")
    if starts:
        selects.append("SELECT id, NULL::integer AS signals FROM started")
    if events is not None:
        selects.append("SELECT NULL::text AS id, NULL::integer AS signals FROM notified")
    return f"WITH{','.join(parts)}\n{' UNION ALL '.join(selects)}\n"


class PostgresRecorder(ExecutionRecorder):
    """:class:`ExecutionRecorder` for PostgreSQL."""

    claim_lock = " FOR UPDATE SKIP LOCKED"
    update_lock = " FOR UPDATE"

    async def write(self, changes: Sequence[Change]) -> list[bool | None]:
        log = self.log
        events = None
        for change in changes:
            if change.consumed or change.rows:
                return await self.write_batch(changes)
            if change.events and events is None:
                if not isinstance(log, PostgresLogRecorder):
                    return await self.write_batch(changes)
                events = log.guarded_append("written")
        return await self._write_many(changes, events)

    async def _write_many(
        self, changes: Sequence[Change], events_sql: str | None
    ) -> list[bool | None]:
        save_ids: list[str] = []
        saves: list[list[Any]] = []
        states: list[str] = []
        starts: list[list[Any]] = []
        inputs: list[str] = []
        start_states: list[str] = []
        history: list[list[Any]] = []
        events: list[tuple[str, LogRow]] = []
        started: set[str] = set()
        duplicates: set[int] = set()  # starts of an id already started in this batch
        for index, change in enumerate(changes):
            head = change.head
            if isinstance(head, Save):
                save_ids.append(head.id)
                saves.append(
                    [
                        head.id,
                        head.status,
                        head.error,
                        head.history_seq,
                        head.now,
                        head.ended_at,
                        1 if head.release else 0,
                        head.now,
                        head.wake,
                        head.owner,
                    ]
                )
                states.append(head.state)
            elif head.id in started:  # the first of the same id in one batch starts
                duplicates.add(index)
                continue
            else:
                started.add(head.id)
                starts.append(
                    [
                        head.id,
                        head.kind,
                        head.name,
                        head.version,
                        head.status,
                        head.trace_context,
                        head.wake_at,
                        head.lease_owner,
                        head.lease_until,
                        head.history_seq,
                        head.created_at,
                    ]
                )
                inputs.append(head.input)
                start_states.append(head.state)
            for row in change.history:
                history.append(
                    [
                        row.execution_id,
                        row.seq,
                        row.type,
                        row.step_id,
                        row.attempt,
                        row.data,
                        row.at,
                    ]
                )
            for event in change.events:
                events.append((head.id, event))
        args: list[Any] = []
        if saves:
            args += (save_ids, dumps(saves), states)
        if starts:
            args += (dumps(starts), inputs, start_states)
        if history:
            args.append(dumps(history))
        if events:
            assert isinstance(self.log, PostgresLogRecorder)
            args += self.log.guarded_arguments(events)
        query = write_many(bool(saves), bool(starts), bool(history), events_sql if events else None)
        written = {
            row["id"]: row["signals"]
            for row in await self.store.fetch_all(query, *args)
            if row["id"] is not None
        }
        results: list[bool | None] = []
        for index, change in enumerate(changes):
            head = change.head
            if head.id not in written or index in duplicates:
                results.append(None)
            elif isinstance(head, Save):
                results.append(bool(written[head.id]))
            else:
                results.append(False)
        return results


__all__ = ["PostgresRecorder", "write_many"]
