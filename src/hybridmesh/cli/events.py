"""``hybridmesh events`` and ``hybridmesh dlq``: publish, tail, and look after dead letters."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from hybridmesh.cli._common import COUNT, console, emit_json, err_console, get_ctx, json_option, run
from hybridmesh.core.errors import ValidationError
from hybridmesh.core.ids import new_id
from hybridmesh.core.serialization import dumps, loads


@click.group()
def events() -> None:
    """Publish and watch CloudEvents on the bus (HYBRIDMESH_EVENTS_URL, else the SQL log)."""


@events.command()
@click.argument("event_type", metavar="TYPE")
@click.option("--source", "-s", required=True, help="The event's source, e.g. /user-service.")
@click.option("--data", "-d", default=None, help="The data, as JSON.")
@click.option("--subject", default=None, help="The event's subject.")
@click.option("--key", "partition_key", default=None, help="Partition key (ordering).")
@click.option("--id", "event_id", default=None, help="The event id (default: a new UUID).")
@json_option
def publish(
    event_type: str,
    source: str,
    data: str | None,
    subject: str | None,
    partition_key: str | None,
    event_id: str | None,
    as_json: bool,
) -> None:
    """Publish one event of TYPE (e.g. user.registered)."""
    from hybridmesh.events import CloudEvent, open_bus, validate_subject

    try:
        payload: Any = loads(data) if data is not None else None
    except ValueError as error:
        raise ValidationError(f"--data is not valid JSON: {error}") from None
    validate_subject(event_type)
    event = CloudEvent.create(
        event_type, source, payload, id=event_id, subject=subject, partition_key=partition_key
    )

    async def send() -> CloudEvent:
        bus = await open_bus(get_ctx().settings)
        try:
            return await bus.publish(event)
        finally:
            await bus.close()

    published = run(send())
    if as_json:
        emit_json(published.to_dict())
    else:
        console.print(f"published {published.type} {published.id}", highlight=False)


@events.command()
@click.argument("pattern", default=">")
@click.option(
    "--from",
    "start",
    type=click.Choice(["latest", "earliest"]),
    default="latest",
    show_default=True,
    help="Start after the newest event, or at the oldest retained one.",
)
@click.option("--group", default=None, help="Consumer group (default: a new one for this tail).")
@click.option("--count", type=COUNT, default=None, help="Stop after this many events.")
@json_option
def tail(pattern: str, start: str, group: str | None, count: int | None, as_json: bool) -> None:
    """Print events matching PATTERN (NATS rules: user.*, order.>) as they arrive."""
    from hybridmesh.events import CloudEvent, open_bus, validate_pattern

    validate_pattern(pattern)
    seen = 0
    done = asyncio.Event()

    async def show(event: CloudEvent) -> None:
        nonlocal seen
        if as_json:
            click.echo(dumps(event.to_dict()))
        else:
            data = dumps(event.data) if event.data is not None else ""
            console.print(
                f"[dim]{event.time.isoformat() if event.time else ''}[/dim] "
                f"[bold]{escape(event.type)}[/bold] {escape(event.source)} {escape(event.id)} "
                f"{escape(data[:200])}",
                highlight=False,
            )
        seen += 1
        if count is not None and seen >= count:
            done.set()

    async def follow() -> None:
        bus = await open_bus(get_ctx().settings)
        bus.poll_wait = 0.2
        bus.subscribe(
            pattern,
            show,
            group=group or f"tail-{new_id()[:12]}",
            start="latest" if start == "latest" else "earliest",
            ephemeral=group is None,
        )
        async with bus:
            if not as_json:
                err_console.print(f"tailing {pattern} (Ctrl-C to stop)", highlight=False)
            await done.wait()

    with contextlib.suppress(KeyboardInterrupt):
        run(follow())


@click.group()
def dlq() -> None:
    """Dead letters: events that could not be handled, kept for review and replay."""


def _letter_json(letter: Any) -> dict[str, Any]:
    return {
        "id": letter.id,
        "group": letter.group,
        "reason": letter.reason,
        "attempts": letter.attempts,
        "failed_at": letter.failed_at.isoformat(),
        "replayed_at": letter.replayed_at.isoformat() if letter.replayed_at else None,
        "event": letter.event.to_dict() if letter.event else None,
        "body": None if letter.event else letter.body.decode("utf-8", "replace"),
    }


async def _with_bus(action: Any, *, create: bool = True) -> Any:
    """Run ``action`` on a bus from the CLI's settings. Commands that only read pass
    ``create=False``: the SQL log's database is then never created (a missing one is empty)."""
    from hybridmesh.events import open_bus
    from hybridmesh.store import open_store

    settings = get_ctx().settings
    store = None
    if settings.events_url is None:  # the SQL log, in the state store
        store = await open_store(settings.database_url, create=create)
    try:
        if store is not None:
            await store.upgrade()
        bus = await open_bus(settings, store=store)
        try:
            return await action(bus)
        finally:
            await bus.close()
    finally:
        if store is not None:
            await store.close()


@dlq.command("list")
@click.option("--group", default=None, help="Only this consumer group.")
@click.option("--limit", type=COUNT, default=100, show_default=True)
@json_option
def list_letters(group: str | None, limit: int, as_json: bool) -> None:
    """The dead letters, newest first."""
    letters = run(_with_bus(lambda bus: bus.dead_letters(group=group, limit=limit), create=False))
    if as_json:
        emit_json([_letter_json(x) for x in letters])
        return
    table = Table("id", "group", "type", "event id", "attempts", "failed at", "replayed", "reason")
    for x in letters:
        table.add_row(
            x.id,
            x.group,
            x.type or "?",
            x.event_id or "?",
            str(x.attempts),
            x.failed_at.strftime("%Y-%m-%d %H:%M:%S"),
            "yes" if x.replayed_at else "",
            escape(x.reason),
        )
    console.print(table)
    if not letters:
        err_console.print("no dead letters")


@dlq.command()
@click.argument("letter_id", metavar="ID")
@json_option
def show(letter_id: str, as_json: bool) -> None:
    """One dead letter, with its event."""
    letter = run(_with_bus(lambda bus: bus.dead_letter(letter_id), create=False))
    data = _letter_json(letter)
    if as_json:
        emit_json(data)
        return
    for key in ("id", "group", "attempts", "failed_at", "replayed_at", "reason"):
        console.print(f"[bold]{key}[/bold]: {escape(str(data[key]))}", highlight=False)
    console.print_json(dumps(data["event"] or data["body"]))


@dlq.command()
@click.argument("letter_id", metavar="ID")
def replay(letter_id: str) -> None:
    """Deliver a dead letter's event again, to its own consumer group."""
    letter = run(_with_bus(lambda bus: bus.replay(letter_id)))
    console.print(f"replayed {letter.id} to group {letter.group}", highlight=False)


@dlq.command()
@click.option("--group", default=None, help="Only this consumer group's dead letters.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def purge(group: str | None, yes: bool) -> None:
    """Delete dead letters for good."""
    if not yes:
        click.confirm(
            f"Delete every dead letter{f' of group {group}' if group else ''}?", abort=True
        )
    count = run(_with_bus(lambda bus: bus.purge(group=group)))
    console.print(f"purged {count} dead letter(s)", highlight=False)


__all__ = ["dlq", "events"]
