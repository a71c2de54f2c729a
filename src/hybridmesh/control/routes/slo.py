"""``/api/v1/slo``: the service level objectives over a window, as ``hybridmesh slo report
--json`` prints them (both call :func:`~hybridmesh.observability.slo.slo_report`)."""

from __future__ import annotations

from typing import Literal

import pydantic

from hybridmesh.control.auth import Role
from hybridmesh.control.declare import Call, Operations
from hybridmesh.observability.slo import slo_report

operations = Operations()


class SloQuery(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    window: Literal["1h", "24h", "30d"] = pydantic.Field(
        default="24h", description="The window measured, ending now."
    )


class MeasurementOut(pydantic.BaseModel):
    """One SLO over the window, overall or for one subject; a subject also has its labels
    (`source` and `target` with their architectures, `kind` and `name` of an execution's
    definition, or `replication`)."""

    model_config = pydantic.ConfigDict(extra="allow")

    good: int
    bad: int
    total: int
    excluded: int
    objective: float
    sli: float | None = pydantic.Field(description="good / total; null without events.")
    error_rate: float | None
    burn_rate: float | None = pydantic.Field(description="error rate / (1 - objective).")
    error_budget_remaining: float | None
    status: Literal["ok", "burning", "exhausted", "no_data"]
    p95_seconds: float | None = pydantic.Field(default=None, description="sync-latency only.")


class SloOut(pydantic.BaseModel):
    name: str
    objective: float
    sli_description: str
    source: str
    overall: MeasurementOut
    subjects: list[MeasurementOut]


class SloReportOut(pydantic.BaseModel):
    """Every SLO over one window ending at `until` (epoch seconds)."""

    window: str
    window_seconds: int
    since: float
    until: float
    slos: list[SloOut]


@operations.operation(
    "GET",
    "/api/v1/slo",
    summary="The SLO report",
    tags=("slo",),
    role=Role.READ,
    query=SloQuery,
    response=SloReportOut,
)
async def get_slo_report(call: Call) -> object:
    """Each SLO over the window, overall and per subject (pair of services, saga or
    workflow, replication): SLI, good and total events, error budget left, burn rate and
    status, as `hybridmesh slo report --window WINDOW --json`."""
    query: SloQuery = call.query
    report = await slo_report(call.plane.store, query.window)
    return report.to_json()


__all__ = ["operations"]
