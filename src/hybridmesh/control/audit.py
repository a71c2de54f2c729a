"""The audit trail of the control-plane API: one row for every write made through it.

A write is a POST, PUT, PATCH or DELETE that a known token made, whatever its outcome
(a 403 and a 400 are recorded too, with their status). A request without a valid token has
no one to record (the access log has it).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from hybridmesh.core.clock import SYSTEM_CLOCK, Clock
from hybridmesh.core.ids import uuid7
from hybridmesh.store import Store

#: The HTTP methods that change something, and so are audited.
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True)
class AuditEntry:
    """One write: who (token name and role), what (method, path, operation, target),
    how it ended (the HTTP status), when, and the request id to find it in the logs."""

    token_name: str
    role: str
    method: str
    path: str
    operation: str
    target: str | None
    status: int
    request_id: str | None
    at: float = 0.0
    id: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": datetime.fromtimestamp(self.at, UTC).isoformat(),
            "token_name": self.token_name,
            "role": self.role,
            "method": self.method,
            "path": self.path,
            "operation": self.operation,
            "target": self.target,
            "status": self.status,
            "request_id": self.request_id,
        }


_COLUMNS = "id, at, token_name, role, method, path, operation, target, status, request_id"


class AuditLog:
    """Writes and reads the audit trail in a (migrated) store."""

    def __init__(self, store: Store, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self.store = store
        self.clock = clock

    async def record(self, entry: AuditEntry) -> AuditEntry:
        """Append ``entry``, stamped now with a new id; returns it as stored."""
        stored = replace(entry, at=self.clock.now().timestamp(), id=uuid7())
        await self.store.execute(
            f"INSERT INTO api_audit ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            stored.id,
            stored.at,
            stored.token_name,
            stored.role,
            stored.method,
            stored.path,
            stored.operation,
            stored.target,
            stored.status,
            stored.request_id,
        )
        return stored

    async def list(self, *, limit: int = 100) -> list[AuditEntry]:
        """The newest ``limit`` entries, newest first."""
        rows = await self.store.fetch_all(
            f"SELECT {_COLUMNS} FROM api_audit ORDER BY at DESC, id DESC LIMIT ?", limit
        )
        return [
            AuditEntry(
                token_name=row["token_name"],
                role=row["role"],
                method=row["method"],
                path=row["path"],
                operation=row["operation"],
                target=row["target"],
                status=int(row["status"]),
                request_id=row["request_id"],
                at=float(row["at"]),
                id=row["id"],
            )
            for row in rows
        ]


__all__ = ["WRITE_METHODS", "AuditEntry", "AuditLog"]
