"""``hybridmesh review``: list the manual review queue, and retry, resolve or discard items."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import TYPE_CHECKING, TypeVar

import click
from rich.markup import escape
from rich.table import Table

from hybridmesh.cli._common import COUNT, console, emit_json, err_console, get_ctx, json_option, run
from hybridmesh.core.errors import ValidationError
from hybridmesh.core.serialization import dumps
from hybridmesh.core.settings import Settings
from hybridmesh.review import (
    ORIGINS,
    STATUSES,
    Origin,
    RetryHandler,
    ReviewItem,
    ReviewQueue,
    dead_letter_retry,
)
from hybridmesh.store import Store, open_ready_store

if TYPE_CHECKING:
    from hybridmesh.events import EventBackend

T = TypeVar("T")


@asynccontextmanager
async def retry_handlers(
    store: Store, settings: Settings
) -> AsyncIterator[dict[Origin, RetryHandler]]:
    """The retry handler of each origin the CLI can retry, keyed by origin.

    What a handler needs (the event backend, say) is opened on its first call and closed
    when the block ends, so retrying one origin never depends on another's services.
    """
    async with AsyncExitStack() as stack:
        backend: EventBackend | None = None

        async def replay_dead_letter(item: ReviewItem) -> None:
            nonlocal backend
            if backend is None:
                from hybridmesh.events import open_backend

                backend = await open_backend(settings)
                stack.push_async_callback(backend.close)
            await dead_letter_retry(backend)(item)

        async def reopen_compensations(item: ReviewItem) -> None:
            # Only the store is needed: a worker runs the reopened compensations.
            from hybridmesh.orchestration.engine import retry_compensations

            if not item.origin_ref:
                raise ValidationError(f"review item {item.id} names no execution")
            await retry_compensations(store, item.origin_ref)

        async def requeue_batch_record(item: ReviewItem) -> None:
            from hybridmesh.batch import (
                DEFAULT_EXCHANGE_DIR,
                BatchIntegration,
                review_retry_handler,
            )

            folder = os.environ.get("HYBRIDMESH_EXCHANGE_DIR") or DEFAULT_EXCHANGE_DIR
            await review_retry_handler(BatchIntegration(store, exchange_dir=folder))(item)

        handlers: dict[Origin, RetryHandler] = {
            "dlq": replay_dead_letter,
            "saga": reopen_compensations,
            "workflow": reopen_compensations,
            "batch": requeue_batch_record,
        }
        yield handlers


def _actor() -> str:
    return os.environ.get("USER") or "cli"


async def _with_queue(action: Callable[[ReviewQueue], Awaitable[T]], *, create: bool = True) -> T:
    """Run ``action`` on a queue over the settings' store, with the CLI's retry handlers.
    Commands that only read pass ``create=False``: nothing is written to the database (see
    :func:`~hybridmesh.store.open_ready_store`)."""
    settings = get_ctx().settings
    async with await open_ready_store(settings.database_url, create=create) as store:
        queue = ReviewQueue(store)
        async with retry_handlers(store, settings) as handlers:
            for origin, handler in handlers.items():
                queue.register_retry(origin, handler)
            return await action(queue)


@click.group()
def review() -> None:
    """The manual review queue: failed sagas, workflows, batch records and dead letters
    waiting for a person."""


@review.command("list")
@click.option(
    "--status",
    type=click.Choice([*STATUSES, "all"]),
    default="open",
    show_default=True,
    help="Only items in this status.",
)
@click.option("--origin", type=click.Choice(ORIGINS), default=None, help="Only this origin.")
@click.option("--limit", type=COUNT, default=100, show_default=True)
@json_option
def list_items(status: str, origin: str | None, limit: int, as_json: bool) -> None:
    """Items, newest first."""
    wanted = None if status == "all" else status
    items = run(
        _with_queue(lambda q: q.list(status=wanted, origin=origin, limit=limit), create=False)
    )
    if as_json:
        emit_json([item.to_dict() for item in items])
        return
    table = Table("id", "origin", "ref", "status", "created", "reason")
    for item in items:
        table.add_row(
            item.id,
            item.origin,
            escape(item.origin_ref or ""),
            item.status,
            item.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            escape(item.reason),
        )
    console.print(table)
    if not items:
        err_console.print(f"no {'' if wanted is None else wanted + ' '}review items")


@review.command()
@click.argument("item_id", metavar="ID")
@json_option
def show(item_id: str, as_json: bool) -> None:
    """One item, with its payload and the timeline of actions taken on it."""
    item = run(_with_queue(lambda q: q.get(item_id), create=False))
    if as_json:
        emit_json(item.to_dict())
        return
    data = item.to_dict()
    for key in ("id", "origin", "origin_ref", "status", "created_at", "updated_at", "reason"):
        console.print(f"[bold]{key}[/bold]: {escape(str(data[key]))}", highlight=False)
    console.print("[bold]payload[/bold]:")
    console.print_json(dumps(data["payload"]))
    timeline = Table("at", "action", "actor", "note", title="actions")
    for action in item.actions:
        timeline.add_row(
            action.at.strftime("%Y-%m-%d %H:%M:%S"),
            action.action,
            escape(action.actor or ""),
            escape(action.note or ""),
        )
    console.print(timeline)


_note_option = click.option("--note", default=None, help="Why; kept on the item's timeline.")
_actor_option = click.option(
    "--actor",
    default=_actor,
    show_default="$USER, else cli",
    help="Who acts; kept on the item's timeline.",
)


def _report(item: ReviewItem, done: str, as_json: bool) -> None:
    if as_json:
        emit_json(item.to_dict())
    else:
        console.print(f"{done} {item.id} ({item.origin})", highlight=False, markup=False)


@review.command()
@click.argument("item_id", metavar="ID")
@_note_option
@_actor_option
@json_option
def retry(item_id: str, note: str | None, actor: str, as_json: bool) -> None:
    """Run an open item's work again (replay a dead letter, …). On failure the item stays
    open and the error is recorded."""
    item = run(_with_queue(lambda q: q.retry(item_id, actor=actor, note=note)))
    _report(item, "retried", as_json)


@review.command()
@click.argument("item_id", metavar="ID")
@_note_option
@_actor_option
@json_option
def resolve(item_id: str, note: str | None, actor: str, as_json: bool) -> None:
    """Mark an open item resolved: it was dealt with by hand."""
    item = run(_with_queue(lambda q: q.resolve(item_id, actor=actor, note=note)))
    _report(item, "resolved", as_json)


@review.command()
@click.argument("item_id", metavar="ID")
@_note_option
@_actor_option
@json_option
def discard(item_id: str, note: str | None, actor: str, as_json: bool) -> None:
    """Mark an open item discarded: nothing more is to be done."""
    item = run(_with_queue(lambda q: q.discard(item_id, actor=actor, note=note)))
    _report(item, "discarded", as_json)


__all__ = ["retry_handlers", "review"]
