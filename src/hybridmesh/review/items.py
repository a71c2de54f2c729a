"""What the review queue holds: items, the actions taken on them, and the errors it raises."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, get_args

from hybridmesh.core.errors import Problem, ValidationError

Origin = Literal["saga", "workflow", "batch", "dlq", "replication"]
"""Where an item came from: a saga or workflow execution, a batch record, a dead letter, or a
conflict two replications met while both sides of a cut-over took writes."""

Status = Literal["open", "retried", "resolved", "discarded"]
"""``open`` waits for a person; the other three are final."""

ActionKind = Literal["created", "retried", "retry_failed", "resolved", "discarded"]

ORIGINS: tuple[Origin, ...] = get_args(Origin)
STATUSES: tuple[Status, ...] = get_args(Status)


@dataclass(frozen=True)
class ReviewAction:
    """One entry of an item's timeline: what was done, by whom, when, and why."""

    action: ActionKind
    actor: str | None
    note: str | None
    at: datetime

    def to_dict(self) -> dict[str, Any]:
        """The action as JSON-ready values (``at`` in ISO 8601)."""
        return {
            "action": self.action,
            "actor": self.actor,
            "note": self.note,
            "at": self.at.isoformat(),
        }


@dataclass(frozen=True)
class ReviewItem:
    """Work that needs a person: why it stopped, the data to act on, and where it came from.

    ``origin_ref`` names the thing in its origin (an execution id, a batch record id, a dead
    letter id); the origin's retry handler uses it. ``actions`` is the timeline, oldest
    first; only :meth:`ReviewQueue.get <hybridmesh.review.ReviewQueue.get>` fills it.
    """

    id: str
    origin: Origin
    origin_ref: str | None
    reason: str
    payload: Mapping[str, Any]
    status: Status
    created_at: datetime
    updated_at: datetime
    actions: tuple[ReviewAction, ...] = field(default=())

    def __post_init__(self) -> None:
        check_origin(self.origin)
        check_status(self.status)

    def to_dict(self) -> dict[str, Any]:
        """The item and its actions as JSON-ready values (times in ISO 8601)."""
        return {
            "id": self.id,
            "origin": self.origin,
            "origin_ref": self.origin_ref,
            "reason": self.reason,
            "payload": dict(self.payload),
            "status": self.status,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "actions": [action.to_dict() for action in self.actions],
        }


RetryHandler = Callable[[ReviewItem], Awaitable[None]]
"""Runs an item's work again, for one origin. Returns when the work was accepted again;
raises to leave the item open (the error is recorded on the item)."""


class ReviewStateError(ValidationError):
    """The item's state does not allow the action: it is no longer open, or another
    retry of it is running."""

    def __init__(self, item_id: str, status: str, message: str) -> None:
        self.item_id = item_id
        self.status = status
        super().__init__([Problem(message, field="status")])


def check_origin(origin: str) -> Origin:
    """``origin`` if it is one of :data:`ORIGINS`; else :class:`ValidationError`."""
    for known in ORIGINS:
        if origin == known:
            return known
    raise ValidationError(
        [Problem(f"unknown origin {origin!r}; use one of {', '.join(ORIGINS)}", field="origin")]
    )


def check_status(status: str) -> Status:
    """``status`` if it is one of :data:`STATUSES`; else :class:`ValidationError`."""
    for known in STATUSES:
        if status == known:
            return known
    raise ValidationError(
        [Problem(f"unknown status {status!r}; use one of {', '.join(STATUSES)}", field="status")]
    )


__all__ = [
    "ORIGINS",
    "STATUSES",
    "ActionKind",
    "Origin",
    "RetryHandler",
    "ReviewAction",
    "ReviewItem",
    "ReviewStateError",
    "Status",
    "check_origin",
    "check_status",
]
