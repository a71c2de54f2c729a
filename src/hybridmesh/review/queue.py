"""The manual review queue, kept in the state store (tables ``review_items`` and
``review_actions``, migration 5).

An item is added ``open``, and leaves that state once, by one of three actions: ``retry``
(the origin's handler runs the work again), ``resolve`` (a person dealt with it) or
``discard`` (it needs nothing more). Every action, a failed retry included, is appended to
the item's timeline with its actor and note.

Status changes are safe across processes: each is an ``UPDATE … WHERE status = 'open'`` whose
row count says whether it won. A retry first takes a lease on the item, so two retries of
one item never run its work together, and a retry that dies leaves the item open once the
lease runs out.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Literal, NamedTuple

from hybridmesh.core.clock import SYSTEM_CLOCK, Clock
from hybridmesh.core.errors import ConfigurationError, NotFoundError, Problem, ValidationError
from hybridmesh.core.ids import uuid7
from hybridmesh.core.serialization import dumps, loads
from hybridmesh.review.items import (
    STATUSES,
    ActionKind,
    Origin,
    RetryHandler,
    ReviewAction,
    ReviewItem,
    ReviewStateError,
    check_origin,
    check_status,
)
from hybridmesh.store import Statement, Store, Transaction

#: How long a retry holds its item before another may try (seconds), unless told otherwise.
DEFAULT_RETRY_LEASE = 300.0

_COLUMNS = "id, origin, origin_ref, reason, payload, status, created_at, updated_at"

_INSERT_ITEM = (
    "INSERT INTO review_items (id, origin, origin_ref, reason, payload, status, action_seq, "
    "created_at, updated_at) VALUES (?, ?, ?, ?, ?, 'open', 1, ?, ?)"
)

# Appends an action as the item's next seq: run it right after an UPDATE that raised
# action_seq, in the same transaction (the UPDATE's row lock keeps the seq ours).
_APPEND_ACTION = (
    "INSERT INTO review_actions (item_id, seq, action, actor, note, at) "
    "SELECT id, action_seq, ?, ?, ?, ? FROM review_items WHERE id = ?"
)

# Closes an open item that no running retry holds.
_CLOSE = (
    "UPDATE review_items SET status = ?, action_seq = action_seq + 1, updated_at = ? "
    "WHERE id = ? AND status = 'open' AND (retry_until IS NULL OR retry_until <= ?)"
)

_CLAIM = (
    "UPDATE review_items SET retry_until = ? "
    "WHERE id = ? AND status = 'open' AND (retry_until IS NULL OR retry_until <= ?)"
)

# Ends a retry that worked: the retry holds the lease, so only the status is checked.
_RETRIED = (
    "UPDATE review_items SET status = 'retried', retry_until = NULL, "
    "action_seq = action_seq + 1, updated_at = ? WHERE id = ? AND status = 'open'"
)

# Releases the lease and makes room for one more action, leaving the status as it is.
_RELEASE = (
    "UPDATE review_items SET retry_until = NULL, action_seq = action_seq + 1, updated_at = ? "
    "WHERE id = ?"
)


class ReviewPosition(NamedTuple):
    """Where a page of :meth:`ReviewQueue.page` ended: the last item's stored creation
    time (epoch seconds, exactly as stored) and id."""

    created_at: float
    id: str


class ReviewQueue:
    """Items that need a person, on a :class:`~hybridmesh.store.Store`.

    ``actor`` is recorded on actions when a call names none (``None``: unknown).
    ``retry_lease`` (default 300 s) is how long a retry holds its item: if the process dies
    mid-retry, the item can be retried again after that. ``clock`` and ``new_id`` stamp
    and name items and actions. Raises :class:`~hybridmesh.core.errors.StoreError` when the
    database fails.
    """

    def __init__(
        self,
        store: Store,
        *,
        clock: Clock = SYSTEM_CLOCK,
        actor: str | None = None,
        retry_lease: float = DEFAULT_RETRY_LEASE,
        new_id: Callable[[], str] = uuid7,
    ) -> None:
        if retry_lease <= 0:
            raise ConfigurationError("retry_lease must be more than 0 seconds")
        self.store = store
        self.clock = clock
        self.actor = actor
        self.retry_lease = retry_lease
        self._new_id = new_id
        self._handlers: dict[str, RetryHandler] = {}

    # -- adding ----------------------------------------------------------------------------

    async def add(
        self,
        origin: Origin,
        reason: str,
        payload: Mapping[str, Any],
        *,
        origin_ref: str | None = None,
        tx: Transaction | None = None,
    ) -> ReviewItem:
        """File an ``open`` item, with a ``created`` action.

        With ``tx``, both rows are written in the caller's transaction, so the item exists
        if and only if the caller's own change commits; without it, in a transaction of
        their own. Raises :class:`ValidationError` for an unknown origin, an empty reason or
        a payload that is not a JSON object.
        """
        item, statements = self.filing(origin, reason, payload, origin_ref=origin_ref)
        if tx is not None:
            await _run(tx, statements)
        else:
            async with self.store.transaction() as own:
                await _run(own, statements)
        return item

    def filing(
        self,
        origin: Origin,
        reason: str,
        payload: Mapping[str, Any],
        *,
        origin_ref: str | None = None,
    ) -> tuple[ReviewItem, list[Statement]]:
        """The item :meth:`add` would file, and the inserts that file it, for a writer that
        batches them with its own change (:meth:`Store.batch`). Validates as :meth:`add`."""
        origin = check_origin(origin)
        if not reason.strip():
            raise ValidationError([Problem("a review item needs a reason", field="reason")])
        if not isinstance(payload, Mapping):
            raise ValidationError([Problem("the payload must be a mapping", field="payload")])
        try:
            body = dumps(payload)
        except TypeError as error:
            raise ValidationError([Problem(f"not JSON: {error}", field="payload")]) from None
        item_id = self._new_id()
        now = self._now()
        statements = [
            # action_seq 1: the created action
            Statement(_INSERT_ITEM, rows=[(item_id, origin, origin_ref, reason, body, now, now)]),
            Statement(_APPEND_ACTION, rows=[("created", self.actor, None, now, item_id)]),
        ]
        at = _datetime(now)
        item = ReviewItem(
            id=item_id,
            origin=origin,
            origin_ref=origin_ref,
            reason=reason,
            payload=loads(body),
            status="open",
            created_at=at,
            updated_at=at,
            actions=(ReviewAction("created", self.actor, None, at),),
        )
        return item, statements

    # -- reading ---------------------------------------------------------------------------

    async def list(
        self,
        *,
        status: str | None = "open",
        origin: str | None = None,
        origin_ref: str | None = None,
        limit: int = 100,
    ) -> builtins.list[ReviewItem]:
        """Items, newest first, without their actions: ``open`` ones by default, every
        status with ``status=None``; optionally only of one origin (and ``origin_ref``).
        Raises :class:`ValidationError` for an unknown status or origin, or a limit below 1.
        """
        where, args = _filters(status, origin, origin_ref)
        if limit < 1:
            raise ValidationError([Problem("limit must be at least 1", field="limit")])
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        rows = await self.store.fetch_all(
            f"SELECT {_COLUMNS} FROM review_items{clause} "
            "ORDER BY created_at DESC, id DESC LIMIT ?",
            *args,
            limit,
        )
        return [_item(row) for row in rows]

    async def page(
        self,
        *,
        status: str | None = "open",
        origin: str | None = None,
        limit: int = 100,
        after: ReviewPosition | None = None,
    ) -> tuple[builtins.list[ReviewItem], ReviewPosition | None]:
        """A page of :meth:`list` (same order and filters), and where the next page starts,
        None on the last. ``after``, a position a previous page gave, starts this page right
        after it, so a walk sees each item once even while new ones are filed (they are
        newer: they would come before the first page). The index on ``(status,
        created_at)`` serves the order with a status filter."""
        where, args = _filters(status, origin, None)
        if after is not None:
            where.append("(created_at < ? OR (created_at = ? AND id < ?))")
            args += [after.created_at, after.created_at, after.id]
        if limit < 1:
            raise ValidationError([Problem("limit must be at least 1", field="limit")])
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        # One row more than the page tells whether another page follows.
        rows = await self.store.fetch_all(
            f"SELECT {_COLUMNS} FROM review_items{clause} "
            "ORDER BY created_at DESC, id DESC LIMIT ?",
            *args,
            limit + 1,
        )
        rows, more = rows[:limit], len(rows) > limit
        following = ReviewPosition(float(rows[-1]["created_at"]), rows[-1]["id"]) if more else None
        return [_item(row) for row in rows], following

    async def get(self, item_id: str) -> ReviewItem:
        """One item with its timeline, oldest action first; raises
        :class:`~hybridmesh.core.errors.NotFoundError` when there is none."""
        row = await self.store.fetch_one(
            f"SELECT {_COLUMNS} FROM review_items WHERE id = ?", item_id
        )
        if row is None:
            raise NotFoundError(f"no review item {item_id!r}")
        actions = await self.store.fetch_all(
            "SELECT action, actor, note, at FROM review_actions WHERE item_id = ? ORDER BY seq",
            item_id,
        )
        return _item(row, tuple(_action(a) for a in actions))

    async def counts(self) -> dict[str, int]:
        """How many items are in each status (every status is a key, zero included)."""
        rows = await self.store.fetch_all(
            "SELECT status, COUNT(*) AS n FROM review_items GROUP BY status"
        )
        counts: dict[str, int] = dict.fromkeys(STATUSES, 0)
        for row in rows:
            counts[str(row["status"])] = int(row["n"])
        return counts

    # -- acting ----------------------------------------------------------------------------

    def register_retry(self, origin: Origin, handler: RetryHandler) -> None:
        """Have :meth:`retry` run ``handler`` for items of ``origin`` (replacing any
        handler registered before)."""
        self._handlers[check_origin(origin)] = handler

    async def retry(
        self, item_id: str, *, actor: str | None = None, note: str | None = None
    ) -> ReviewItem:
        """Run an open item's work again through its origin's handler.

        When the handler returns, the item becomes ``retried`` (a ``retried`` action). When
        it raises, the item stays open, a ``retry_failed`` action records the error, and the
        error propagates. If the work fails again later, its origin files a new item.

        Raises :class:`NotFoundError`, :class:`ReviewStateError` when the item is not open
        or another retry of it is running, and :class:`ConfigurationError` when no handler
        is registered for its origin.
        """
        item = await self.get(item_id)
        if item.status != "open":
            raise _not_open(item_id, item.status, "retried")
        handler = self._handlers.get(item.origin)
        if handler is None:
            raise ConfigurationError(
                f"no retry handler for origin {item.origin!r}: review item {item_id} cannot be "
                "retried here (register one with ReviewQueue.register_retry)"
            )
        now = self._now()
        if not await self.store.execute(_CLAIM, now + self.retry_lease, item_id, now):
            raise await self._refusal(item_id, "retried")
        who = actor or self.actor
        try:
            await handler(item)
        except Exception as error:
            failure = f"{type(error).__name__}: {error}"
            text = f"{note} ({failure})" if note else failure
            async with self.store.transaction() as tx:  # also ends the lease
                await _append(tx, item_id, "retry_failed", who, text, self._now(), bump=True)
            raise
        except BaseException:
            # Cancelled: give the item back now rather than when the lease runs out.
            with contextlib.suppress(Exception):
                await asyncio.shield(self._release(item_id))
            raise
        async with self.store.transaction() as tx:
            now = self._now()
            won = await tx.execute(_RETRIED, now, item_id)
            # A retry that outlived its lease may find the item closed by someone else;
            # its work did run, so the timeline still says so.
            await _append(tx, item_id, "retried", who, note, now, bump=not won)
        return await self.get(item_id)

    async def resolve(
        self, item_id: str, *, actor: str | None = None, note: str | None = None
    ) -> ReviewItem:
        """Mark an open item ``resolved``: a person dealt with it. Raises
        :class:`NotFoundError`, and :class:`ReviewStateError` unless it is open and no retry
        of it is running."""
        return await self._close(item_id, "resolved", actor, note)

    async def discard(
        self, item_id: str, *, actor: str | None = None, note: str | None = None
    ) -> ReviewItem:
        """Mark an open item ``discarded``: nothing more is to be done. Raises like
        :meth:`resolve`."""
        return await self._close(item_id, "discarded", actor, note)

    async def _close(
        self,
        item_id: str,
        status: Literal["resolved", "discarded"],
        actor: str | None,
        note: str | None,
    ) -> ReviewItem:
        async with self.store.transaction() as tx:
            now = self._now()
            won = await tx.execute(_CLOSE, status, now, item_id, now)
            if won:
                await _append(tx, item_id, status, actor or self.actor, note, now, bump=False)
        if not won:
            raise await self._refusal(item_id, status)
        return await self.get(item_id)

    async def _release(self, item_id: str) -> None:
        await self.store.execute(
            "UPDATE review_items SET retry_until = NULL WHERE id = ? AND status = 'open'", item_id
        )

    async def _refusal(self, item_id: str, verb: str) -> Exception:
        """Why a conditional update changed nothing: the item is gone, closed or held."""
        row = await self.store.fetch_one(
            "SELECT status, retry_until FROM review_items WHERE id = ?", item_id
        )
        if row is None:
            return NotFoundError(f"no review item {item_id!r}")
        if row["status"] != "open":
            return _not_open(item_id, str(row["status"]), verb)
        until = _datetime(float(row["retry_until"])).isoformat() if row["retry_until"] else "?"
        return ReviewStateError(
            item_id,
            "open",
            f"review item {item_id} is being retried; it cannot be {verb} until that retry "
            f"ends (its lease runs until {until})",
        )

    def _now(self) -> float:
        return self.clock.now().timestamp()

    def __repr__(self) -> str:
        return f"<ReviewQueue {self.store.display_url}>"


def _filters(
    status: str | None, origin: str | None, origin_ref: str | None
) -> tuple[list[str], list[Any]]:
    """The conditions (and their arguments) of a listing's filters, validated."""
    where: list[str] = []
    args: list[Any] = []
    if status is not None:
        where.append("status = ?")
        args.append(check_status(status))
    if origin is not None:
        where.append("origin = ?")
        args.append(check_origin(origin))
    if origin_ref is not None:
        where.append("origin_ref = ?")
        args.append(origin_ref)
    return where, args


async def _run(tx: Transaction, statements: list[Statement]) -> None:
    for statement in statements:
        await tx.executemany(statement.sql, statement.rows or ())


async def _append(
    tx: Transaction,
    item_id: str,
    action: ActionKind,
    actor: str | None,
    note: str | None,
    now: float,
    *,
    bump: bool,
) -> None:
    """Append an action to the item's timeline. With ``bump``, first take the next seq (and
    release any retry lease); without, the caller's UPDATE already took it."""
    if bump:
        await tx.execute(_RELEASE, now, item_id)
    await tx.execute(_APPEND_ACTION, action, actor, note, now, item_id)


def _not_open(item_id: str, status: str, verb: str) -> ReviewStateError:
    return ReviewStateError(
        item_id, status, f"review item {item_id} is {status}; only open items can be {verb}"
    )


def _datetime(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def _item(row: Mapping[str, Any], actions: tuple[ReviewAction, ...] = ()) -> ReviewItem:
    return ReviewItem(
        id=row["id"],
        origin=check_origin(row["origin"]),
        origin_ref=row["origin_ref"],
        reason=row["reason"],
        payload=loads(row["payload"]),
        status=check_status(row["status"]),
        created_at=_datetime(float(row["created_at"])),
        updated_at=_datetime(float(row["updated_at"])),
        actions=actions,
    )


def _action(row: Mapping[str, Any]) -> ReviewAction:
    return ReviewAction(
        action=row["action"], actor=row["actor"], note=row["note"], at=_datetime(float(row["at"]))
    )


__all__ = ["DEFAULT_RETRY_LEASE", "ReviewPosition", "ReviewQueue"]
