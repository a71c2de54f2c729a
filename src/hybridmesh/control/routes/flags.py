"""``/api/v1/flags``: feature flags, as ``hybridmesh flags list|show|evaluate|set`` have them,
with the same JSON as their ``--json``. The list is a plain array, as ``flags list --json``
prints it. Evaluating changes nothing (a read); setting is an operation."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pydantic

from hybridmesh.control.auth import Role
from hybridmesh.control.declare import Call, Operations
from hybridmesh.flags.client import FlagClient
from hybridmesh.flags.model import TARGETING_KEY
from hybridmesh.flags.store import FlagStore
from hybridmesh.flags.summary import evaluation_dict, flag_change, flag_summary

operations = Operations()

_TAGS = ("flags",)


class FlagKey(pydantic.BaseModel):
    key: str = pydantic.Field(max_length=256, description="The flag's key.")


class FlagOut(pydantic.BaseModel):
    """A flag as `hybridmesh flags list --json` shows each."""

    key: str
    enabled: bool
    type: str
    default_variant: str
    variants: list[str]
    rules: int
    rollout: dict[str, float] | None
    description: str | None
    version: int
    revision: int
    source: str | None
    updated_at: float


class FlagList(pydantic.RootModel[list[FlagOut]]):
    """The stored flags."""


class FlagDetail(FlagOut):
    """A flag and its definition: as `flags show KEY --json`."""

    definition: dict[str, Any]


class Evaluate(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    context: dict[str, Any] = pydantic.Field(default_factory=dict)
    targeting_key: str | None = pydantic.Field(default=None, min_length=1, max_length=256)
    default: Any = pydantic.Field(default=None, description="What an error serves.")


class EvaluationOut(pydantic.BaseModel):
    """What the flag serves in the context, and why: as `flags evaluate KEY --json`."""

    flag_key: str
    value: Any
    variant: str | None
    reason: str
    error_code: str | None
    error_message: str | None


class SetFlag(pydantic.BaseModel):
    """What `flags set` takes: what is given changes, the rest stays."""

    model_config = pydantic.ConfigDict(extra="forbid")

    enabled: bool | None = None
    description: str | None = pydantic.Field(default=None, max_length=2_000)
    variants: dict[str, Any] = pydantic.Field(default_factory=dict)
    default_variant: str | None = pydantic.Field(default=None, max_length=256)
    percents: dict[str, Decimal] = pydantic.Field(
        default_factory=dict, description="Variant -> percent of everyone (0 to 100, 0.01 steps)."
    )
    clear_targeting: bool = False

    @pydantic.field_validator("percents")
    @classmethod
    def _percents(cls, shares: dict[str, Decimal]) -> dict[str, Decimal]:
        for value in shares.values():
            if not value.is_finite() or not 0 <= value <= 100 or value != round(value, 2):
                raise ValueError("a percent is 0 to 100, in steps of 0.01")
        return shares


@operations.operation(
    "GET",
    "/api/v1/flags",
    summary="List the feature flags",
    tags=_TAGS,
    role=Role.READ,
    response=FlagList,
)
async def list_flags(call: Call) -> object:
    """The stored flags, as `hybridmesh flags list --json`."""
    return [flag_summary(s) for s in await FlagStore(call.plane.store).list()]


@operations.operation(
    "GET",
    "/api/v1/flags/{key}",
    summary="Show a feature flag",
    tags=_TAGS,
    role=Role.READ,
    path_params=FlagKey,
    response=FlagDetail,
    errors=(404,),
)
async def get_flag(call: Call) -> object:
    """One flag and its definition, as `hybridmesh flags show KEY --json`."""
    path: FlagKey = call.path
    stored = await FlagStore(call.plane.store).get(path.key)
    return {**flag_summary(stored), "definition": stored.flag.definition()}


@operations.operation(
    "POST",
    "/api/v1/flags/{key}/evaluate",
    summary="Evaluate a feature flag",
    tags=_TAGS,
    role=Role.READ,
    path_params=FlagKey,
    body=Evaluate,
    response=EvaluationOut,
    errors=(404,),
)
async def evaluate_flag(call: Call) -> object:
    """What the flag serves in `context` (with `targeting_key`), and why, as `hybridmesh
    flags evaluate KEY --json`. Changes nothing."""
    path: FlagKey = call.path
    body: Evaluate = call.body
    stored = await FlagStore(call.plane.store).get(path.key)
    attributes = dict(body.context)
    if body.targeting_key is not None:
        attributes[TARGETING_KEY] = body.targeting_key
    found = FlagClient.from_flags([stored.flag]).evaluate(path.key, attributes, body.default)
    return evaluation_dict(found)


@operations.operation(
    "POST",
    "/api/v1/flags/{key}",
    summary="Create or change a feature flag",
    tags=_TAGS,
    role=Role.OPERATE,
    path_params=FlagKey,
    body=SetFlag,
    response=FlagDetail,
)
async def set_flag(call: Call) -> object:
    """Turn the flag on or off, change its variants, default or percentage rollout, or
    create it (with variants and a default variant), as `hybridmesh flags set KEY`. 400
    when the result is not a valid flag."""
    path: FlagKey = call.path
    body: SetFlag = call.body
    change = flag_change(
        path.key,
        variants=body.variants,
        default_variant=body.default_variant,
        description=body.description,
        enabled=body.enabled,
        shares=list(body.percents.items()),
        clear_targeting=body.clear_targeting,
    )
    stored = await FlagStore(call.plane.store).update(path.key, change, source="api")
    return {**flag_summary(stored), "definition": stored.flag.definition()}


__all__ = ["operations"]
