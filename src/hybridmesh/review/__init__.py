"""The manual review queue: work that stopped and needs a person.

Sagas, workflows, batch integration and the dead letters file an item when they give up,
with the reason, the payload and where it came from. Nothing accepted is lost: it ends done,
compensated, dead-lettered, or here. A person then lists the items and retries, resolves or
discards each one; every action is recorded on the item's timeline::

    queue = ReviewQueue(store, actor="ops")
    queue.register_retry("dlq", dead_letter_retry(bus))
    for item in await queue.list():
        await queue.retry(item.id, note="template fixed")

Callers that change their own state when they file an item pass their transaction
(``queue.add(..., tx=tx)``), so the item is written if and only if their change is.
"""

from hybridmesh.review.dead_letters import Replayer, dead_letter_retry, review_dead_letter
from hybridmesh.review.items import (
    ORIGINS,
    STATUSES,
    ActionKind,
    Origin,
    RetryHandler,
    ReviewAction,
    ReviewItem,
    ReviewStateError,
    Status,
)
from hybridmesh.review.queue import DEFAULT_RETRY_LEASE, ReviewPosition, ReviewQueue

__all__ = [
    "DEFAULT_RETRY_LEASE",
    "ORIGINS",
    "STATUSES",
    "ActionKind",
    "Origin",
    "Replayer",
    "RetryHandler",
    "ReviewAction",
    "ReviewItem",
    "ReviewPosition",
    "ReviewQueue",
    "ReviewStateError",
    "Status",
    "dead_letter_retry",
    "review_dead_letter",
]
