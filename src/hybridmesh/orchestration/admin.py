"""What needs only the store, not a running engine: reading executions and their history,
and leaving signals (a cancel, a step's completion, a retry of failed compensations) for
whichever worker holds the execution or claims it next. The CLI uses these directly."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hybridmesh.core.clock import SYSTEM_CLOCK, Clock
from hybridmesh.core.errors import NotFoundError, ValidationError
from hybridmesh.core.ids import new_id
from hybridmesh.core.serialization import dumps
from hybridmesh.orchestration._machine import Status
from hybridmesh.orchestration._records import EXECUTION_COLUMNS, Execution, HistoryEvent
from hybridmesh.store import Store

# Only for an execution that has not ended: a late event for an ended one leaves nothing.
INSERT_SIGNAL = """
INSERT INTO orch_signals (id, execution_id, kind, step_id, data, at)
SELECT ?, ?, ?, ?, ?, ? WHERE EXISTS (
    SELECT 1 FROM orch_executions WHERE id = ? AND status IN ('running', 'compensating')
)
"""
# A signal makes its execution due now, unless it has ended.
WAKE_FOR_SIGNAL = (
    "UPDATE orch_executions SET signals = 1, wake_at = ? "
    "WHERE id = ? AND status IN ('running', 'compensating')"
)


async def load_execution(store: Store, execution_id: str) -> Execution:
    """The execution as stored; ``NotFoundError`` when there is none."""
    row = await store.fetch_one(
        f"SELECT {EXECUTION_COLUMNS} FROM orch_executions WHERE id = ?", execution_id
    )
    if row is None:
        raise NotFoundError(f"no execution {execution_id!r}")
    return Execution.from_row(row)


async def list_executions(
    store: Store,
    *,
    status: str | None = None,
    kind: str | None = None,
    name: str | None = None,
    limit: int = 100,
) -> list[Execution]:
    """Executions, newest first, filtered by status, kind and definition name."""
    page, _ = await page_executions(store, status=status, kind=kind, name=name, limit=limit)
    return page


@dataclass(frozen=True)
class ExecutionPosition:
    """Where an execution stands in the newest-first order of :func:`page_executions`: its
    ``created_at`` as stored (epoch seconds: a datetime would round it) and its id."""

    created_at: float
    id: str


async def page_executions(
    store: Store,
    *,
    status: str | None = None,
    kind: str | None = None,
    name: str | None = None,
    limit: int = 100,
    after: ExecutionPosition | None = None,
) -> tuple[list[Execution], ExecutionPosition | None]:
    """A page of at most ``limit`` executions, newest first (by ``created_at``, then
    ``id``), filtered by status, kind and definition name; and where the next page starts,
    None when this one is the last. ``after``, that position from a previous page, starts
    this page right after it: pages walk every execution exactly once, however many start
    meanwhile (those are newer, so they come before the first page)."""
    # One row more than the page tells whether another page follows.
    sql, args = page_query(status=status, kind=kind, name=name, limit=limit + 1, after=after)
    rows = await store.fetch_all(sql, *args)
    rows, more = rows[:limit], len(rows) > limit
    following = ExecutionPosition(float(rows[-1]["created_at"]), rows[-1]["id"]) if more else None
    return [Execution.from_row(row) for row in rows], following


def page_query(
    *,
    status: str | None = None,
    kind: str | None = None,
    name: str | None = None,
    limit: int = 100,
    after: ExecutionPosition | None = None,
) -> tuple[str, list[Any]]:
    """The statement of :func:`page_executions` and its arguments. Indexes on
    ``(created_at, id)``, ``(name, created_at, id)`` and ``(status, created_at, id)`` serve
    its order, with or without those filters: a page reads its own rows, not the table."""
    where: list[str] = []
    args: list[Any] = []
    for column, value in (("status", status), ("kind", kind), ("name", name)):
        if value is not None:
            where.append(f"{column} = ?")
            args.append(value)
    if after is not None:
        where.append("(created_at < ? OR (created_at = ? AND id < ?))")
        args.extend([after.created_at, after.created_at, after.id])
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    sql = (
        f"SELECT {EXECUTION_COLUMNS} FROM orch_executions{clause} "
        "ORDER BY created_at DESC, id DESC LIMIT ?"
    )
    return sql, [*args, limit]


async def load_history(store: Store, execution_id: str) -> list[HistoryEvent]:
    """The execution's history, oldest first; ``NotFoundError`` when there is none."""
    rows = await store.fetch_all(
        "SELECT seq, type, step_id, attempt, data, at FROM orch_history "
        "WHERE execution_id = ? ORDER BY seq",
        execution_id,
    )
    if not rows:
        await load_execution(store, execution_id)  # raises NotFoundError
    return [HistoryEvent.from_row(row) for row in rows]


async def send_signal(
    store: Store,
    execution_id: str,
    kind: str,
    step_id: str | None,
    data: Any,
    *,
    now: float,
    reopen: bool = False,
) -> None:
    """Leave a signal for the worker that holds (or next claims) the execution, and make
    it due now; with ``reopen``, a ``compensation_failed`` execution is compensating
    again. A signal for an execution that has ended is dropped."""
    async with store.transaction() as tx:
        if reopen:
            await tx.execute(
                "UPDATE orch_executions SET status = ?, wake_at = ?, ended_at = NULL "
                "WHERE id = ? AND status = ?",
                Status.COMPENSATING.value,
                now,
                execution_id,
                Status.COMPENSATION_FAILED.value,
            )
        await tx.execute(
            INSERT_SIGNAL, new_id(), execution_id, kind, step_id, dumps(data), now, execution_id
        )
        await tx.execute(WAKE_FOR_SIGNAL, now, execution_id)


async def retry_compensations(
    store: Store, execution_id: str, *, clock: Clock = SYSTEM_CLOCK
) -> Execution:
    """Reopen the failed compensations of a ``compensation_failed`` execution for any
    worker on ``store`` to run. Needs only the store (the CLI's review retry uses it).
    Raises ``NotFoundError``, and ``ValidationError`` in any other status."""
    execution = await load_execution(store, execution_id)
    if execution.status is not Status.COMPENSATION_FAILED:
        raise ValidationError(
            f"execution {execution_id!r} is {execution.status.value}, "
            "not compensation_failed: there is nothing to retry"
        )
    now = clock.now().timestamp()
    await send_signal(store, execution_id, "retry_compensations", None, None, now=now, reopen=True)
    return execution


__all__ = [
    "ExecutionPosition",
    "list_executions",
    "load_execution",
    "load_history",
    "page_executions",
    "page_query",
    "retry_compensations",
    "send_signal",
]
