"""``/api/v1/migrations``: migration plans, as ``hybridmesh migrate list|show`` has them, and
a person's controls, as ``migrate start|approve|pause|resume|abort``, with the same JSON as
their ``--json``.

The list is a plain array, as ``migrate list --json`` prints it: there is one row per plan
name (a new version replaces the old), so it stays small. A control the plan's status does
not allow (approving a plan that has ended, resuming one that is not paused) is a 409, as
the CLI refuses it (exit 1). The actor the plan's audit records is the token's name.
"""

from __future__ import annotations

from typing import Any, Literal

import pydantic
from aiohttp import web

from hybridmesh.control.auth import Role
from hybridmesh.control.declare import Call, Handler, Operations
from hybridmesh.migration.overview import plan_overview
from hybridmesh.migration.state import MigrationState, PlanConflictError, Status

operations = Operations()

_TAGS = ("migrations",)

#: The controls, as ``migrate ACTION PLAN``, and what each does.
CONTROLS: dict[str, str] = {
    "start": "Start the plan: a runner (`migrate runner`, `migrate run`) then drives it.",
    "approve": "Let the plan's current step go ahead (a step that waits for a person).",
    "pause": "Stop the plan where it is, traffic as it stands, until it is resumed.",
    "resume": "Go on with a paused plan (a step being monitored starts a new window).",
    "abort": "Roll the plan back as its rollback strategy says, and end it.",
}


class PlanName(pydantic.BaseModel):
    name: str = pydantic.Field(max_length=256, description="The plan's name.")


class PlanOut(pydantic.BaseModel):
    """A plan and where its run stands: as `hybridmesh migrate list --json` shows each."""

    name: str
    version: int
    source: str
    strategy: str
    targets: list[str]
    status: Status
    step: int = pydantic.Field(description="The current step's index (0-based).")
    step_name: str | None
    steps: int
    phase: Literal["pending", "monitoring"]
    window_started: float | None
    gate: dict[str, Any]
    reason: str | None
    approved_step: int | None
    lease_owner: str | None
    lease_until: float | None
    created_at: float
    updated_at: float


class PlanList(pydantic.RootModel[list[PlanOut]]):
    """The plans, by name."""


class Shift(pydantic.BaseModel):
    """A shift of traffic: ``backend`` of ``route`` got ``percent`` (the route's other
    backends share the rest)."""

    at: float
    step: int | None
    route: str
    backend: str
    percent: float
    action: str


class Evaluation(pydantic.BaseModel):
    """A gate's verdict on a step's whole monitoring window."""

    at: float
    step: int | None
    step_name: str | None
    verdict: Literal["pass", "fail", "inconclusive"]
    requests: int | None
    error_rate: float | None
    p95_ms: float | None
    reasons: list[str]


class GatePoint(pydantic.BaseModel):
    """The gated backend over ``seconds`` from ``at``."""

    at: int
    seconds: int
    requests: int
    errors: int
    error_rate: float
    p95_ms: float | None


class GateOut(pydantic.BaseModel):
    """A gated step: what it reads, its thresholds, and its backend over time."""

    step: int
    name: str
    route: str
    backend: str
    thresholds: dict[str, float]
    started_at: float | None
    ended_at: float | None
    series: list[GatePoint]


class AuditOut(pydantic.BaseModel):
    """An action on the plan: who, what, when and why."""

    id: str
    plan: str
    at: float
    actor: str
    action: str
    step: int | None
    reason: str | None
    details: dict[str, Any]


class PlanDetail(PlanOut):
    """A plan, where it stands and how it got there: as `hybridmesh migrate show --json`."""

    route: str | None = pydantic.Field(default=None, description="The current step's route.")
    weights: dict[str, float] | None = pydantic.Field(
        default=None, description="The current route's weights, by backend."
    )
    thresholds: dict[str, Any] | None = None
    last_measurement: dict[str, Any] | None = None
    measurements: dict[str, int] | None = None
    window_left_seconds: float | None = None
    plan: dict[str, Any] = pydantic.Field(description="The plan: its spec and steps.")
    versions: list[dict[str, Any]]
    traffic: list[Shift]
    evaluations: list[Evaluation]
    gates: list[GateOut]
    audit: list[AuditOut]


class Control(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    reason: str | None = pydantic.Field(
        default=None, max_length=1_000, description="Why, for the plan's audit."
    )


@operations.operation(
    "GET",
    "/api/v1/migrations",
    summary="List the migration plans",
    tags=_TAGS,
    role=Role.READ,
    response=PlanList,
)
async def list_migrations(call: Call) -> object:
    """The plans and where each stands, by name, as `hybridmesh migrate list --json`."""
    return [record.to_dict() for record in await MigrationState(call.plane.store).plans()]


@operations.operation(
    "GET",
    "/api/v1/migrations/{name}",
    summary="Show a migration plan",
    tags=_TAGS,
    role=Role.READ,
    path_params=PlanName,
    response=PlanDetail,
    errors=(404,),
)
async def get_migration(call: Call) -> object:
    """The plan, its current step and weights, its gate against its thresholds, each shift
    of traffic, each gate's verdicts and its backend's figures over time, and its audit, as
    `hybridmesh migrate show NAME --json`."""
    path: PlanName = call.path
    return await plan_overview(call.plane.store, path.name)


def _control(action: str) -> Handler:
    async def control(call: Call) -> object:
        path: PlanName = call.path
        body: Control = call.body
        actor = call.principal.name if call.principal else "api"
        try:
            record = await MigrationState(call.plane.store).control(
                path.name, action, actor=actor, reason=body.reason
            )
        except PlanConflictError as conflict:
            raise web.HTTPConflict(text=str(conflict)) from None
        return record.to_dict()

    control.__name__ = f"{action}_migration"
    control.__doc__ = (
        f"{CONTROLS[action]} As `hybridmesh migrate {action} NAME --json`; the plan's audit "
        "names the token. 409 when the plan's status does not allow it."
    )
    return control


for _action in CONTROLS:
    operations.operation(
        "POST",
        f"/api/v1/migrations/{{name}}/{_action}",
        summary=f"{_action.capitalize()} a migration plan",
        tags=_TAGS,
        role=Role.OPERATE,
        path_params=PlanName,
        body=Control,
        response=PlanOut,
        errors=(404, 409),
    )(_control(_action))


__all__ = ["CONTROLS", "operations"]
