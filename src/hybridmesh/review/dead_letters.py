"""Dead letters in the review queue: file one as an item, and retry it by replaying it."""

from __future__ import annotations

from typing import Any, Protocol

from hybridmesh.core.errors import Problem, ValidationError
from hybridmesh.events.backend import DeadLetter
from hybridmesh.review.items import RetryHandler, ReviewItem
from hybridmesh.review.queue import ReviewQueue


class Replayer(Protocol):
    """What replays a dead letter: an :class:`~hybridmesh.events.EventBackend` or an
    :class:`~hybridmesh.events.EventBus`."""

    async def replay(self, dead_letter_id: str) -> DeadLetter: ...


def dead_letter_retry(backend: Replayer) -> RetryHandler:
    """A retry handler for ``dlq`` items: replays the dead letter named by the item's
    ``origin_ref`` to its own consumer group.

    Register it with ``queue.register_retry("dlq", dead_letter_retry(backend))``. The
    handler raises :class:`ValidationError` for an item without a dead letter id, and
    whatever ``replay`` raises (``NotFoundError`` for a dead letter that was purged).
    """

    async def replay(item: ReviewItem) -> None:
        if not item.origin_ref:
            raise ValidationError(
                [Problem(f"review item {item.id} names no dead letter", field="origin_ref")]
            )
        await backend.replay(item.origin_ref)

    return replay


async def review_dead_letter(queue: ReviewQueue, dead_letter: DeadLetter) -> ReviewItem:
    """File ``dead_letter`` for review: origin ``dlq``, ``origin_ref`` the dead letter's id,
    the payload its event (or, when it never parsed, ``{"body": <the raw text>}``).

    Filing the same dead letter again returns the item filed first instead of a second one
    (unless both calls run at the same moment).
    """
    filed = await queue.list(status=None, origin="dlq", origin_ref=dead_letter.id, limit=1)
    if filed:
        return filed[0]
    payload: dict[str, Any] = (
        dead_letter.event.to_dict()
        if dead_letter.event is not None
        else {"body": dead_letter.body.decode("utf-8", "replace")}
    )
    reason = (
        f"dead-lettered in group {dead_letter.group} after {dead_letter.attempts} "
        f"attempt(s): {dead_letter.reason}"
    )
    return await queue.add("dlq", reason, payload, origin_ref=dead_letter.id)


__all__ = ["Replayer", "dead_letter_retry", "review_dead_letter"]
