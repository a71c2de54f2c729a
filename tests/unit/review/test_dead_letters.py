"""The dead-letter retry handler: which dead letter it replays, and when it refuses."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from hybridmesh.core.errors import ValidationError
from hybridmesh.events.backend import DeadLetter
from hybridmesh.review import ReviewItem, dead_letter_retry

AT = datetime(2026, 1, 1, tzinfo=UTC)


class Replays:
    """Records the dead letters it is asked to replay."""

    def __init__(self) -> None:
        self.replayed: list[str] = []

    async def replay(self, dead_letter_id: str) -> DeadLetter:
        self.replayed.append(dead_letter_id)
        return DeadLetter(dead_letter_id, "mailer", "poison", 1, AT, b"{}", replayed_at=AT)


def dlq_item(origin_ref: str | None) -> ReviewItem:
    return ReviewItem("item-1", "dlq", origin_ref, "poison", {}, "open", AT, AT)


async def test_the_handler_replays_the_dead_letter_the_item_names() -> None:
    replays = Replays()
    await dead_letter_retry(replays)(dlq_item("dl-7"))
    assert replays.replayed == ["dl-7"]


async def test_an_item_without_a_dead_letter_id_is_refused() -> None:
    replays = Replays()
    with pytest.raises(ValidationError, match="names no dead letter"):
        await dead_letter_retry(replays)(dlq_item(None))
    assert replays.replayed == []
