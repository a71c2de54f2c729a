"""``/api/v1/audit``: the audit trail of the API's writes, as ``hybridmesh audit list``."""

from __future__ import annotations

import pydantic

from hybridmesh.control.auth import Role
from hybridmesh.control.declare import Call, Operations

operations = Operations()


class AuditQuery(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    limit: int = pydantic.Field(default=100, ge=1, le=1_000, description="How many entries.")


class AuditEntryOut(pydantic.BaseModel):
    """One write made through the API."""

    id: str
    at: str
    token_name: str
    role: str
    method: str
    path: str
    operation: str = pydantic.Field(description="The operation's `operationId`.")
    target: str | None = pydantic.Field(description="The id or name the write acted on.")
    status: int = pydantic.Field(description="The HTTP status it was answered with.")
    request_id: str | None


class AuditList(pydantic.RootModel[list[AuditEntryOut]]):
    """The newest entries, newest first."""


@operations.operation(
    "GET",
    "/api/v1/audit",
    summary="The audit trail",
    tags=("audit",),
    role=Role.ADMIN,
    query=AuditQuery,
    response=AuditList,
)
async def list_audit(call: Call) -> object:
    """Every write made through the API (whatever its outcome), newest first, as
    `hybridmesh audit list --json`."""
    query: AuditQuery = call.query
    return [entry.to_dict() for entry in await call.plane.audit.list(limit=query.limit)]


__all__ = ["operations"]
