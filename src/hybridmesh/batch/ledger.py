"""The batch ledger: records and runs, as rows of ``batch_records`` and ``batch_runs``.

A record is one operation for a legacy system, queued until a run carries it there. Each
change of its status is guarded by the status it leaves, so of two processes racing over
the same record only one moves it::

    queued ──claim──▶ sent ──result ok──▶ acknowledged
      ▲                 │
      │                 └──result failed──▶ failed ──▶ (review queue)
      └──── delivery failed / requeue ───────┘

A run is one delivery: a file in the exchange directory, or one POST to a bulk endpoint.
:class:`BatchLedger` holds the SQL; :class:`~hybridmesh.batch.integration.BatchIntegration`
decides when each step happens, and the deliveries (:mod:`hybridmesh.batch.delivery`) and the
inbox collector (:mod:`hybridmesh.batch.inbox`) carry them out.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from hybridmesh.core.clock import SYSTEM_CLOCK, Clock
from hybridmesh.core.errors import NotFoundError, Problem, ValidationError
from hybridmesh.core.ids import uuid7
from hybridmesh.core.names import name_problem
from hybridmesh.core.serialization import dumps, loads
from hybridmesh.store import Store, Transaction


class RecordStatus(StrEnum):
    QUEUED = "queued"
    SENT = "sent"
    ACKNOWLEDGED = "acknowledged"
    FAILED = "failed"


class RunStatus(StrEnum):
    SENT = "sent"  # delivered; results pending
    ACKNOWLEDGED = "acknowledged"  # every record ok
    PARTIALLY_FAILED = "partially_failed"  # some records failed
    FAILED = "failed"  # not delivered (records requeued), or every record failed


#: Columns every export starts with; payloads may not use these keys.
RESERVED_FIELDS = ("record_id", "idempotency_key")

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# Characters XML 1.0 cannot carry at all, not even as character references.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_MAX_KEY = 200


@dataclass(frozen=True, slots=True)
class BatchRecord:
    """One queued operation and where it stands."""

    id: str
    target: str
    operation: str
    payload: dict[str, Any]
    idempotency_key: str | None
    status: RecordStatus
    run_id: str | None
    error: str | None
    created_at: datetime
    updated_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "target": self.target,
            "operation": self.operation,
            "payload": self.payload,
            "idempotency_key": self.idempotency_key,
            "status": self.status.value,
            "run_id": self.run_id,
            "error": self.error,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class BatchRun:
    """One delivery of records: ``location`` is the file written or the URL posted to."""

    id: str
    target: str
    operation: str
    format: str
    location: str
    records: int
    status: RunStatus
    error: str | None
    created_at: datetime
    acknowledged_at: datetime | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "target": self.target,
            "operation": self.operation,
            "format": self.format,
            "location": self.location,
            "records": self.records,
            "status": self.status.value,
            "error": self.error,
            "created_at": self.created_at.isoformat(),
            "acknowledged_at": self.acknowledged_at.isoformat() if self.acknowledged_at else None,
        }


@dataclass(frozen=True, slots=True)
class RecordResult:
    """What the legacy side said about one record. ``line`` locates it in a result file."""

    record_id: str
    ok: bool
    error: str | None = None
    line: int | None = None


@dataclass(frozen=True, slots=True)
class Settlement:
    """What applying results changed: records moved, and results that moved nothing."""

    acknowledged: list[str]
    failed: list[BatchRecord]
    unknown: list[str]  # no such record for this target
    ignored: list[str]  # the record was not awaiting a result (a repeated result, say)
    runs: list[str]  # the runs whose records were settled


_last_id = [""]


def ordered_id() -> str:
    """A UUID version 7 that sorts after every one made before it in this process.

    Plain version 7 ids are random within a millisecond; records are exported in
    (created_at, id) order, so ids made within one clock tick must keep the order of the
    calls that made them.
    """
    made = uuid7()
    last = _last_id[0]
    if made <= last:
        digits = f"{int(last.replace('-', ''), 16) + 1:032x}"
        made = "-".join((digits[:8], digits[8:12], digits[12:16], digits[16:20], digits[20:]))
    _last_id[0] = made
    return made


def check_record(
    target: str, operation: str, payload: Any, idempotency_key: str | None
) -> dict[str, Any]:
    """The payload as a dict, or :class:`ValidationError` naming what cannot be exported."""
    problems = []
    target_problem = name_problem(target)
    if target_problem is not None:
        problems.append(Problem(f"target {target_problem}", field="target"))
    if not _NAME.match(operation):
        problems.append(
            Problem(
                f"operation {operation!r} must be 1-128 letters, digits, '.', '_' or '-'",
                field="operation",
            )
        )
    if idempotency_key is not None and (
        not idempotency_key or len(idempotency_key) > _MAX_KEY or _NOT_XML.search(idempotency_key)
    ):
        problems.append(
            Problem(
                f"must be 1-{_MAX_KEY} characters without control characters",
                field="idempotency_key",
            )
        )
    if payload is None:
        payload = {}
    if not isinstance(payload, Mapping):
        problems.append(
            Problem(f"must be a JSON object, not {type(payload).__name__}", field="payload")
        )
        raise ValidationError(problems)
    for key in payload:
        if not isinstance(key, str) or not key or _NOT_XML.search(key):
            problems.append(Problem(f"bad field name {key!r}", field="payload"))
        elif key in RESERVED_FIELDS:
            problems.append(Problem(f"{key!r} is reserved for the export", field="payload"))
    if not problems:
        try:
            dumps(payload)
        except TypeError as error:
            problems.append(Problem(f"not JSON: {error}", field="payload"))
    if problems:
        raise ValidationError(problems)
    return dict(payload)


class BatchLedger:
    """The SQL of the batch integration. Methods taking ``tx`` run inside the caller's
    transaction; the others commit on their own."""

    def __init__(
        self,
        store: Store,
        *,
        clock: Clock = SYSTEM_CLOCK,
        ids: Callable[[], str] = ordered_id,
    ) -> None:
        self.store = store
        self._clock = clock
        self._ids = ids

    def _now(self) -> float:
        return self._clock.now().timestamp()

    def new_id(self) -> str:
        return self._ids()

    # -- records ---------------------------------------------------------------------------

    async def add(
        self,
        target: str,
        operation: str,
        payload: dict[str, Any],
        idempotency_key: str | None,
        *,
        tx: Transaction | None = None,
    ) -> tuple[BatchRecord, bool]:
        """Queue a record; with a key already queued for this target and operation, return
        the existing record instead. The flag says whether the record is new."""
        db: Transaction = tx or self.store
        now = self._now()
        record_id = self._ids()
        body = dumps(payload)
        added = await db.execute(
            "INSERT INTO batch_records (id, target, operation, payload, idempotency_key, "
            "status, created_at, updated_at) VALUES (?, ?, ?, ?, ?, 'queued', ?, ?) "
            "ON CONFLICT DO NOTHING",
            *(record_id, target, operation, body, idempotency_key, now, now),
        )
        if added:
            at = _time(now)
            record = BatchRecord(
                record_id,
                target,
                operation,
                loads(body),
                idempotency_key,
                RecordStatus.QUEUED,
                None,
                None,
                at,
                at,
            )
            return record, True
        row = await db.fetch_one(
            f"SELECT {_RECORD} FROM batch_records "
            "WHERE target = ? AND operation = ? AND idempotency_key = ?",
            *(target, operation, idempotency_key),
        )
        if row is None:  # only a duplicate key can make the insert do nothing
            raise NotFoundError(f"batch record for key {idempotency_key!r} vanished")
        return _record(row), False

    async def get(self, record_id: str) -> BatchRecord:
        """One record; :class:`NotFoundError` when there is none."""
        row = await self.store.fetch_one(
            f"SELECT {_RECORD} FROM batch_records WHERE id = ?", record_id
        )
        if row is None:
            raise NotFoundError(f"no batch record {record_id!r}")
        return _record(row)

    async def records(
        self,
        *,
        status: RecordStatus | str | None = None,
        target: str | None = None,
        limit: int = 100,
    ) -> list[BatchRecord]:
        """Records, newest first."""
        state = RecordStatus(status).value if status else None
        where, args = _filters(("status", state), ("target", target))
        rows = await self.store.fetch_all(
            f"SELECT {_RECORD} FROM batch_records{where} ORDER BY created_at DESC, id DESC LIMIT ?",
            *args,
            limit,
        )
        return [_record(row) for row in rows]

    async def queue_sizes(self) -> dict[tuple[str, str], int]:
        """How many records wait in each (target, operation) queue that has any."""
        rows = await self.store.fetch_all(
            "SELECT target, operation, COUNT(*) AS n FROM batch_records "
            "WHERE status = 'queued' GROUP BY target, operation"
        )
        return {(row["target"], row["operation"]): int(row["n"]) for row in rows}

    async def queue_size(self, target: str, operation: str) -> int:
        value = await self.store.fetch_value(
            "SELECT COUNT(*) FROM batch_records "
            "WHERE target = ? AND operation = ? AND status = 'queued'",
            target,
            operation,
        )
        return int(value or 0)

    async def requeue(self, record_id: str) -> BatchRecord:
        """Put a failed record back in its queue. Idempotent for a record already queued.

        Raises :class:`NotFoundError` for an unknown record and :class:`ValidationError` for
        one that was sent or acknowledged.
        """
        changed = await self.store.execute(
            "UPDATE batch_records SET status = 'queued', run_id = NULL, error = NULL, "
            "updated_at = ? WHERE id = ? AND status = 'failed'",
            self._now(),
            record_id,
        )
        record = await self.get(record_id)
        if not changed and record.status is not RecordStatus.QUEUED:
            message = (
                f"batch record {record_id} is {record.status.value}; "
                "only failed records can be requeued"
            )
            raise ValidationError([Problem(message, field="status")])
        return record

    # -- runs ------------------------------------------------------------------------------

    async def claim(
        self, tx: Transaction, target: str, operation: str, run_id: str, limit: int
    ) -> list[BatchRecord]:
        """Move up to ``limit`` of the oldest queued records into run ``run_id``.

        When a concurrent claim got to a row first, PostgreSQL checks the outer WHERE again
        against the row as that claim left it, and skips it: every record goes into exactly
        one run. (SQLite runs one writer at a time.)
        """
        await tx.execute(
            "UPDATE batch_records SET status = 'sent', run_id = ?, updated_at = ? "
            "WHERE status = 'queued' AND id IN (SELECT id FROM batch_records "
            "WHERE target = ? AND operation = ? AND status = 'queued' "
            "ORDER BY created_at, id LIMIT ?)",
            *(run_id, self._now(), target, operation, limit),
        )
        rows = await tx.fetch_all(
            f"SELECT {_RECORD} FROM batch_records WHERE run_id = ? AND status = 'sent' "
            "ORDER BY created_at, id",
            run_id,
        )
        return [_record(row) for row in rows]

    async def add_run(
        self,
        tx: Transaction,
        run_id: str,
        target: str,
        operation: str,
        format: str,
        location: str,
        records: int,
    ) -> BatchRun:
        now = self._now()
        await tx.execute(
            "INSERT INTO batch_runs (id, target, operation, format, location, records, status, "
            "created_at) VALUES (?, ?, ?, ?, ?, ?, 'sent', ?)",
            *(run_id, target, operation, format, location, records, now),
        )
        return BatchRun(
            run_id,
            target,
            operation,
            format,
            location,
            records,
            RunStatus.SENT,
            None,
            _time(now),
            None,
        )

    async def fail_run(self, run_id: str, error: str) -> BatchRun:
        """A run that was not delivered: its records go back to the queue, in one commit."""
        now = self._now()
        async with self.store.transaction() as tx:
            await tx.execute(
                "UPDATE batch_records SET status = 'queued', run_id = NULL, updated_at = ? "
                "WHERE run_id = ? AND status = 'sent'",
                now,
                run_id,
            )
            await tx.execute(
                "UPDATE batch_runs SET status = 'failed', error = ?, acknowledged_at = ? "
                "WHERE id = ? AND status = 'sent'",
                *(error, now, run_id),
            )
        return await self.run(run_id)

    async def run(self, run_id: str) -> BatchRun:
        row = await self.store.fetch_one(f"SELECT {_RUN} FROM batch_runs WHERE id = ?", run_id)
        if row is None:
            raise NotFoundError(f"no batch run {run_id!r}")
        return _run(row)

    async def runs(self, *, limit: int = 100, status: RunStatus | None = None) -> list[BatchRun]:
        """Runs, newest first."""
        where, args = _filters(("status", status.value if status else None))
        rows = await self.store.fetch_all(
            f"SELECT {_RUN} FROM batch_runs{where} ORDER BY created_at DESC, id DESC LIMIT ?",
            *args,
            limit,
        )
        return [_run(row) for row in rows]

    async def stale_runs(self, format: str, older_than: float) -> list[str]:
        """Runs of ``format`` still awaiting results, started more than ``older_than`` s ago."""
        rows = await self.store.fetch_all(
            "SELECT id FROM batch_runs WHERE status = 'sent' AND format = ? AND created_at < ?",
            format,
            self._now() - older_than,
        )
        return [row["id"] for row in rows]

    # -- results ---------------------------------------------------------------------------

    async def settle(
        self,
        tx: Transaction,
        target: str,
        results: Sequence[RecordResult],
        *,
        missing_from_run: str | None = None,
        missing_reason: str = "no result for this record",
    ) -> Settlement:
        """Apply results to records of ``target`` that are awaiting one.

        Each failed record is moved by its own guarded UPDATE, so when two collectors apply
        the same result only one of them reports the failure. With ``missing_from_run``, the
        run's records that got no result fail too, for ``missing_reason`` (a bulk answer
        must cover them all).
        """
        now = self._now()
        known = await self._records(tx, [r.record_id for r in results])
        settlement = Settlement([], [], [], [], [])
        ok_rows: list[tuple[Any, ...]] = []
        failures: list[tuple[BatchRecord, str]] = []
        for result in results:
            record = known.get(result.record_id)
            if record is None or record.target != target:
                settlement.unknown.append(result.record_id)
            elif record.status is not RecordStatus.SENT:
                settlement.ignored.append(result.record_id)
            elif result.ok:
                ok_rows.append((now, record.id))
                settlement.acknowledged.append(record.id)
                # A later result for the same record is a repeat.
                known[record.id] = replace(record, status=RecordStatus.ACKNOWLEDGED)
            else:
                failures.append((record, result.error or f"rejected by {target} (no reason given)"))
                known[record.id] = replace(record, status=RecordStatus.FAILED)
        if missing_from_run is not None:
            rows = await tx.fetch_all(
                f"SELECT {_RECORD} FROM batch_records WHERE run_id = ? AND status = 'sent'",
                missing_from_run,
            )
            failures.extend(
                (_record(row), missing_reason) for row in rows if row["id"] not in known
            )
        if ok_rows:
            await tx.executemany(
                "UPDATE batch_records SET status = 'acknowledged', updated_at = ? "
                "WHERE id = ? AND status = 'sent'",
                ok_rows,
            )
        for record, error in failures:
            moved = await tx.execute(
                "UPDATE batch_records SET status = 'failed', error = ?, updated_at = ? "
                "WHERE id = ? AND status = 'sent'",
                *(error, now, record.id),
            )
            if moved:
                failed = replace(record, status=RecordStatus.FAILED, error=error)
                settlement.failed.append(replace(failed, updated_at=_time(now)))
            else:
                settlement.ignored.append(record.id)
        settled = [known[i] for i in settlement.acknowledged] + settlement.failed
        settlement.runs.extend(sorted({r.run_id for r in settled if r.run_id}))
        for run_id in settlement.runs:
            await self._close_run(tx, run_id, now)
        return settlement

    async def _records(self, tx: Transaction, ids: Iterable[str]) -> dict[str, BatchRecord]:
        unique = list(dict.fromkeys(ids))
        found: dict[str, BatchRecord] = {}
        for start in range(0, len(unique), 500):
            chunk = unique[start : start + 500]
            marks = ", ".join("?" * len(chunk))
            rows = await tx.fetch_all(
                f"SELECT {_RECORD} FROM batch_records WHERE id IN ({marks})", *chunk
            )
            found.update((row["id"], _record(row)) for row in rows)
        return found

    async def _close_run(self, tx: Transaction, run_id: str, now: float) -> None:
        """Give a run its final status once none of its records awaits a result."""
        rows = await tx.fetch_all(
            "SELECT status, COUNT(*) AS n FROM batch_records WHERE run_id = ? GROUP BY status",
            run_id,
        )
        counts = {row["status"]: int(row["n"]) for row in rows}
        if counts.get(RecordStatus.SENT.value):
            return
        failed = counts.get(RecordStatus.FAILED.value, 0)
        acknowledged = counts.get(RecordStatus.ACKNOWLEDGED.value, 0)
        if not failed:
            status, error = RunStatus.ACKNOWLEDGED, None
        elif not acknowledged:
            status, error = RunStatus.FAILED, "every record failed"
        else:
            status, error = RunStatus.PARTIALLY_FAILED, None
        await tx.execute(
            "UPDATE batch_runs SET status = ?, error = ?, acknowledged_at = ? "
            "WHERE id = ? AND status = 'sent'",
            *(status.value, error, now, run_id),
        )


_RECORD = (
    "id, target, operation, payload, idempotency_key, status, run_id, error, created_at, updated_at"
)
_RUN = (
    "id, target, operation, format, location, records, status, error, created_at, acknowledged_at"
)


def _time(value: float) -> datetime:
    return datetime.fromtimestamp(value, UTC)


def _record(row: Mapping[str, Any]) -> BatchRecord:
    return BatchRecord(
        id=row["id"],
        target=row["target"],
        operation=row["operation"],
        payload=loads(row["payload"]),
        idempotency_key=row["idempotency_key"],
        status=RecordStatus(row["status"]),
        run_id=row["run_id"],
        error=row["error"],
        created_at=_time(row["created_at"]),
        updated_at=_time(row["updated_at"]),
    )


def _run(row: Mapping[str, Any]) -> BatchRun:
    return BatchRun(
        id=row["id"],
        target=row["target"],
        operation=row["operation"],
        format=row["format"],
        location=row["location"],
        records=int(row["records"]),
        status=RunStatus(row["status"]),
        error=row["error"],
        created_at=_time(row["created_at"]),
        acknowledged_at=_time(row["acknowledged_at"]) if row["acknowledged_at"] else None,
    )


def _filters(*pairs: tuple[str, str | None]) -> tuple[str, list[Any]]:
    clauses = [f"{column} = ?" for column, value in pairs if value]
    args = [value for _, value in pairs if value]
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), args


__all__ = [
    "RESERVED_FIELDS",
    "BatchLedger",
    "BatchRecord",
    "BatchRun",
    "RecordResult",
    "RecordStatus",
    "RunStatus",
    "Settlement",
    "check_record",
    "ordered_id",
]
