"""What a reconciliation finds and does: a report per table and per run, and the rows a
repair writes. Every report turns into JSON with ``to_dict()``."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from hybridmesh.data.checksums import canonical_text

#: Sample keys kept per kind of difference in a report (the counts are always exact).
SAMPLE_LIMIT = 100

Action = Literal["insert", "update", "delete"]
Status = Literal["consistent", "repaired", "inconsistent"]


@dataclass(frozen=True)
class Difference:
    """A row on both sides that differs: its key and, per differing column, the source's
    value (mapped) and the target's."""

    key: dict[str, Any]
    columns: dict[str, tuple[Any, Any]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": jsonable(self.key),
            "columns": {
                column: {"source": jsonable(a), "target": jsonable(b)}
                for column, (a, b) in self.columns.items()
            },
        }


@dataclass
class TableReport:
    """What comparing (and repairing) one table found.

    ``missing`` rows are in the source and not in the target, ``extra`` ones in the target
    and not in the source, ``different`` ones in both with different values; the counts
    are exact, the keys a sample of at most ``SAMPLE_LIMIT`` each. Keys use the target's
    column names. ``method`` says where rows were hashed (``sql`` or ``python``) and how
    keys were cut (``range``, ``hash``, ``keyset`` or ``whole``).
    """

    source: str
    target: str
    method: str
    source_rows: int = 0
    target_rows: int = 0
    missing: int = 0
    extra: int = 0
    different: int = 0
    missing_keys: list[dict[str, Any]] = field(default_factory=list)
    extra_keys: list[dict[str, Any]] = field(default_factory=list)
    differences: list[Difference] = field(default_factory=list)
    #: Segment checksums compared (per pair of sides).
    segments: int = 0
    #: Rows read from each side to be compared one by one (or hashed in Python).
    rows_read: int = 0
    seconds: float = 0.0
    #: Rows written by the repair.
    repaired: int = 0
    #: Differences found again after the repair; None when there was no repair.
    remaining: int | None = None

    @property
    def inconsistent(self) -> int:
        """Rows that differ, of every kind."""
        return self.missing + self.extra + self.different

    @property
    def inconsistency_rate(self) -> float:
        """Differing rows over the source's rows (1 when the source is empty)."""
        return self.inconsistent / max(self.source_rows, 1)

    @property
    def consistent(self) -> bool:
        """No difference, or none left after the repair."""
        return self.inconsistent == 0 or self.remaining == 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "target": self.target,
            "method": self.method,
            "source_rows": self.source_rows,
            "target_rows": self.target_rows,
            "missing": self.missing,
            "extra": self.extra,
            "different": self.different,
            "inconsistency_rate": self.inconsistency_rate,
            "missing_keys": jsonable(self.missing_keys),
            "extra_keys": jsonable(self.extra_keys),
            "differences": [d.to_dict() for d in self.differences],
            "segments": self.segments,
            "rows_read": self.rows_read,
            "seconds": round(self.seconds, 6),
            "repaired": self.repaired,
            "remaining": self.remaining,
        }


@dataclass
class ReconcileReport:
    """One reconciliation run of a replication: a :class:`TableReport` per table."""

    replication: str
    run_id: str
    truth: Literal["source", "target"]
    repair: bool
    started_at: datetime
    finished_at: datetime
    tables: list[TableReport] = field(default_factory=list)

    def _sum(self, name: str) -> int:
        return sum(int(getattr(table, name) or 0) for table in self.tables)

    @property
    def source_rows(self) -> int:
        return self._sum("source_rows")

    @property
    def inconsistent(self) -> int:
        """Differing rows found, before any repair, over every table."""
        return self._sum("inconsistent")

    @property
    def inconsistency_rate(self) -> float:
        """Differing rows over the source's rows, over every table."""
        return self.inconsistent / max(self.source_rows, 1)

    @property
    def repaired(self) -> int:
        return self._sum("repaired")

    @property
    def remaining(self) -> int:
        """Differences left: after the repair, or all of them without one."""
        return sum(t.inconsistent if t.remaining is None else t.remaining for t in self.tables)

    @property
    def status(self) -> Status:
        """``consistent`` (no difference), ``repaired`` (all repaired) or ``inconsistent``."""
        if self.inconsistent == 0:
            return "consistent"
        return "repaired" if self.remaining == 0 else "inconsistent"

    @property
    def consistent(self) -> bool:
        """Nothing differs any more: consistent, or fully repaired."""
        return self.status != "inconsistent"

    def to_dict(self) -> dict[str, Any]:
        return {
            "replication": self.replication,
            "run_id": self.run_id,
            "status": self.status,
            "truth": self.truth,
            "repair": self.repair,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat(),
            "seconds": round((self.finished_at - self.started_at).total_seconds(), 6),
            "source_rows": self.source_rows,
            "inconsistent": self.inconsistent,
            "inconsistency_rate": self.inconsistency_rate,
            "repaired": self.repaired,
            "remaining": self.remaining,
            "tables": [t.to_dict() for t in self.tables],
        }


@dataclass(frozen=True)
class Repair:
    """One row a repair wrote: in ``table`` on ``side``, the row before and after (None
    for a row inserted or deleted). ``key`` uses that table's column names."""

    side: Literal["source", "target"]
    table: str
    key: dict[str, Any]
    action: Action
    before: dict[str, Any] | None
    after: dict[str, Any] | None


def jsonable(value: Any) -> Any:
    """``value`` with what JSON cannot hold turned into text: decimals (exactly), bytes
    (``\\x`` and hex), times (ISO 8601), UUIDs and whole numbers beyond 64 bits."""
    if value is None or isinstance(value, bool | str | float):
        return value
    if isinstance(value, int):
        return value if -(2**63) <= value < 2**64 else str(value)
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, bytes | bytearray | memoryview):
        return canonical_text(value)
    return str(value)


__all__ = [
    "SAMPLE_LIMIT",
    "Action",
    "Difference",
    "ReconcileReport",
    "Repair",
    "Status",
    "TableReport",
    "jsonable",
]
