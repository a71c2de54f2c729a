"""Review items and actions: what they accept, and how they turn into JSON."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from hybridmesh.core.errors import ValidationError
from hybridmesh.review import ORIGINS, STATUSES, ReviewAction, ReviewItem, ReviewStateError

AT = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def item(**changes: Any) -> ReviewItem:
    fields: dict[str, Any] = {
        "id": "item-1",
        "origin": "saga",
        "origin_ref": "exec-1",
        "reason": "compensation of charge-card failed",
        "payload": {"order": 7},
        "status": "open",
        "created_at": AT,
        "updated_at": AT,
    }
    fields.update(changes)
    return ReviewItem(**fields)


def test_origins_and_statuses_are_the_documented_ones() -> None:
    assert ORIGINS == ("saga", "workflow", "batch", "dlq", "replication")
    assert STATUSES == ("open", "retried", "resolved", "discarded")


@pytest.mark.parametrize(("field", "value"), [("origin", "kafka"), ("status", "closed")])
def test_an_unknown_origin_or_status_is_rejected_naming_the_field(field: str, value: str) -> None:
    with pytest.raises(ValidationError) as raised:
        item(**{field: value})
    [problem] = raised.value.problems
    assert problem.field == field
    assert repr(value) in problem.message


def test_to_dict_is_json_with_iso_times_and_the_timeline() -> None:
    action = ReviewAction("resolved", "ana", "refunded by hand", AT)
    data = item(status="resolved", actions=(action,)).to_dict()
    assert json.loads(json.dumps(data)) == {
        "id": "item-1",
        "origin": "saga",
        "origin_ref": "exec-1",
        "reason": "compensation of charge-card failed",
        "payload": {"order": 7},
        "status": "resolved",
        "created_at": "2026-01-01T12:00:00+00:00",
        "updated_at": "2026-01-01T12:00:00+00:00",
        "actions": [
            {
                "action": "resolved",
                "actor": "ana",
                "note": "refunded by hand",
                "at": "2026-01-01T12:00:00+00:00",
            }
        ],
    }


def test_a_state_error_is_a_validation_error_on_the_status() -> None:
    error = ReviewStateError("item-1", "resolved", "review item item-1 is resolved")
    assert isinstance(error, ValidationError)
    assert (error.item_id, error.status) == ("item-1", "resolved")
    assert error.problems[0].field == "status"
