"""What ``hybridmesh flags list|show|evaluate|set --json`` print and change, and the control
plane's ``/api/v1/flags`` answers: one function each, so the two cannot differ."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any

import pydantic

from hybridmesh.core.errors import Problem, ValidationError
from hybridmesh.flags.evaluation import Evaluation
from hybridmesh.flags.files import validation_error
from hybridmesh.flags.model import Flag, with_rollout
from hybridmesh.flags.store import StoredFlag


def flag_summary(stored: StoredFlag) -> dict[str, Any]:
    flag = stored.flag
    return {
        "key": flag.key,
        "enabled": flag.enabled,
        "type": flag.kind,
        "default_variant": flag.default_variant,
        "variants": list(flag.variants),
        "rules": len(flag.targeting),
        "rollout": rollout_of(flag),
        "description": flag.description,
        "version": stored.version,
        "revision": stored.revision,
        "source": stored.source,
        "updated_at": stored.updated_at,
    }


def rollout_of(flag: Flag) -> dict[str, float] | None:
    """The percentages of the flag's last rule when it is a split of everyone."""
    if not flag.targeting:
        return None
    last = flag.targeting[-1]
    if last.when or last.fractional is None:
        return None
    total = sum(s.weight for s in last.fractional)
    return {s.variant: round(100 * s.weight / total, 4) for s in last.fractional}


def evaluation_dict(found: Evaluation) -> dict[str, Any]:
    return {
        "flag_key": found.flag_key,
        "value": found.value,
        "variant": found.variant,
        "reason": found.reason,
        "error_code": found.error_code,
        "error_message": found.error_message,
    }


def flag_change(
    key: str,
    *,
    variants: Mapping[str, Any] | None = None,
    default_variant: str | None = None,
    description: str | None = None,
    enabled: bool | None = None,
    shares: Sequence[tuple[str, Decimal]] = (),
    clear_targeting: bool = False,
) -> Callable[[Flag | None], Flag]:
    """The change ``flags set`` makes to flag ``key`` (None: it does not exist yet, and
    needs ``variants`` and ``default_variant``), for :meth:`FlagStore.update`. Percent
    ``shares`` roll variants out to everyone the earlier rules leave, the default variant
    taking the rest. ``ValidationError`` when the result is not a valid flag."""
    given = dict(variants or {})

    def change(current: Flag | None) -> Flag:
        if current is None and (not given or default_variant is None):
            raise ValidationError(
                [
                    Problem(
                        f"there is no flag {key!r}: give variants (at least one) and a "
                        "default variant to create it",
                        field="variants",
                    )
                ]
            )
        base: dict[str, Any] = {} if current is None else current.definition()
        spec: dict[str, Any] = {**base, "key": key}
        spec["variants"] = {**base.get("variants", {}), **given}
        if default_variant is not None:
            spec["default_variant"] = default_variant
        if description is not None:
            spec["description"] = description
        if enabled is not None:
            spec["enabled"] = enabled
        rules: list[Any] = [] if clear_targeting else list(base.get("targeting", []))
        if shares:
            rules = with_rollout(rules, list(shares), spec["default_variant"])
        spec["targeting"] = rules
        try:
            return Flag.model_validate(spec)
        except pydantic.ValidationError as invalid:
            raise validation_error(invalid) from None

    return change


__all__ = ["evaluation_dict", "flag_change", "flag_summary", "rollout_of"]
