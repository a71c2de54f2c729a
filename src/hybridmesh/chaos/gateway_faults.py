"""Faults injected on a gateway route for the length of an experiment.

The route's ``faults`` policy (:mod:`hybridmesh.gateway.policies.faults`) is written into
the stored route with an ``expires_at``, as one new revision: every replica picks it up
within a second, and every replica stops faulting at ``expires_at`` by its own clock. A
rollback removes it early; an experiment whose runner died leaves an inert policy behind
that the next injection or clearing replaces.

A route whose owners set a ``faults`` policy of their own (one without ``expires_at``) is
refused: an experiment must not overwrite what it cannot put back.
"""

from __future__ import annotations

import time
from typing import Any

from hybridmesh.core.errors import Problem, ValidationError
from hybridmesh.core.limits import DAY_SECONDS
from hybridmesh.gateway.config import Route
from hybridmesh.gateway.state import GatewayState

#: The policy's name under a route's ``policies:``.
FAULTS = "faults"


def fault_settings(
    *,
    duration: float,
    delay_seconds: float | None = None,
    delay_percent: float = 100,
    abort_status: int | None = None,
    abort_percent: float = 100,
    backends: list[str] | tuple[str, ...] = (),
    header: str | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    """The ``faults`` settings of one injection, as a route stores them."""
    if not 0 < duration <= DAY_SECONDS:
        raise ValidationError([Problem("must be above 0 and at most one day", field="duration")])
    if delay_seconds is None and abort_status is None:
        raise ValidationError(
            [Problem("give delay_seconds, abort_status or both", field="delay_seconds")]
        )
    settings: dict[str, Any] = {"expires_at": (time.time() if now is None else now) + duration}
    if delay_seconds is not None:
        settings["delay"] = {"percent": delay_percent, "seconds": delay_seconds}
    if abort_status is not None:
        settings["abort"] = {"percent": abort_percent, "status": abort_status}
    if backends:
        settings["backends"] = list(backends)
    if header is not None:
        settings["header"] = header
    return settings


def _check_not_owned(route: str, data: dict[str, Any]) -> None:
    current = data.get("policies", {}).get(FAULTS)
    if isinstance(current, dict) and current.get("expires_at") is None:
        raise ValidationError(
            [
                Problem(
                    f"route {route!r} has a faults policy of its own (without expires_at); "
                    "an experiment does not replace it",
                    field=f"policies.{FAULTS}",
                )
            ]
        )


async def inject_fault(state: GatewayState, route: str, settings: dict[str, Any]) -> Route:
    """Store ``settings`` (from :func:`fault_settings`) as route ``route``'s faults."""

    def change(data: dict[str, Any]) -> None:
        _check_not_owned(route, data)
        data.setdefault("policies", {})[FAULTS] = settings

    return await state.edit(route, change)


async def clear_faults(state: GatewayState, route: str) -> bool:
    """Remove the faults an experiment injected on ``route`` (expired or not); whether
    there were any. A faults policy of the route's own is left alone."""
    removed = False

    def change(data: dict[str, Any]) -> None:
        nonlocal removed
        current = data.get("policies", {}).get(FAULTS)
        if isinstance(current, dict) and current.get("expires_at") is not None:
            del data["policies"][FAULTS]
            removed = True

    await state.edit(route, change)
    return removed


__all__ = ["FAULTS", "clear_faults", "fault_settings", "inject_fault"]
