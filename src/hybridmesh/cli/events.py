"""``hybridmesh events`` and ``hybridmesh dlq``: publish, tail, and look after dead letters."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Literal

import click
from rich.markup import escape
from rich.table import Table

from hybridmesh.cli._common import COUNT, console, emit_json, err_console, get_ctx, json_option, run
from hybridmesh.core.errors import Problem, ValidationError
from hybridmesh.core.serialization import JSONNumberError, dumps, loads_input

if TYPE_CHECKING:
    from hybridmesh.events import CloudEvent, Delivery, EventBus, GroupSpec


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
        payload: Any = loads_input(data) if data is not None else None
    except JSONNumberError as error:
        raise ValidationError(
            [
                Problem(f"{at}: {what}" if at else what, field="--data")
                for at, what in error.problems
            ]
        ) from None
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


#: How many events a tail asks for at once, and how long each ask waits.
TAIL_BATCH = 100
TAIL_WAIT = 0.5


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
@click.option(
    "--group",
    default=None,
    help="Consume as this consumer group (durable): acknowledge the events printed, so the "
    "group's next consumer goes on after them. Without it, read with no group at all.",
)
@click.option("--count", type=COUNT, default=None, help="Stop after this many events.")
@json_option
def tail(pattern: str, start: str, group: str | None, count: int | None, as_json: bool) -> None:
    """Print events matching PATTERN (NATS rules: user.*, order.>) as they arrive.

    Without --group the tail keeps its place in memory: it creates no consumer group,
    acknowledges nothing and leaves nothing behind, however it ends (on NATS its
    ephemeral consumer is deleted when it stops, or by the server 30 s after its process
    died). Ctrl-C or SIGTERM stops it cleanly.
    """
    from hybridmesh.events import GroupSpec, open_bus, validate_pattern

    validate_pattern(pattern)
    begin: Literal["earliest", "latest"] = "earliest" if start == "earliest" else "latest"

    def show(event: CloudEvent) -> None:
        if as_json:
            click.echo(dumps(event.to_dict()))
            return
        data = dumps(event.data) if event.data is not None else ""
        console.print(
            f"[dim]{event.time.isoformat() if event.time else ''}[/dim] "
            f"[bold]{escape(event.type)}[/bold] {escape(event.source)} {escape(event.id)} "
            f"{escape(data[:200])}",
            highlight=False,
        )

    async def follow() -> None:
        bus = await open_bus(get_ctx().settings)
        try:
            await bus.backend.start()
            if not as_json:
                err_console.print(f"tailing {pattern} (Ctrl-C to stop)", highlight=False)
            if group is None:
                await _read(bus, pattern, begin, count, show)
            else:
                await _consume(bus, GroupSpec(group, pattern, begin), count, show)
        finally:
            await bus.close()

    _run_until_stopped(follow())


def _wanted(left: int | None) -> int:
    return TAIL_BATCH if left is None else min(left, TAIL_BATCH)


async def _read(
    bus: EventBus,
    pattern: str,
    start: Literal["earliest", "latest"],
    count: int | None,
    show: Callable[[CloudEvent], None],
) -> None:
    """Print ``count`` events (or go on) read with no consumer group."""
    reader = await bus.open_reader(pattern, start=start)
    try:
        left = count
        while left is None or left > 0:
            for delivery in await reader.read(_wanted(left), TAIL_WAIT):
                if delivery.event is None:
                    _malformed(delivery, "skipped")
                    continue
                show(delivery.event)
                left = None if left is None else left - 1
    finally:
        await reader.close()


async def _consume(
    bus: EventBus, spec: GroupSpec, count: int | None, show: Callable[[CloudEvent], None]
) -> None:
    """Print ``count`` events (or go on) consumed as group ``spec``, acknowledging exactly
    those printed: a fetch asks for no more than are left to print, and whatever a stop
    interrupts is given back untouched."""
    from hybridmesh.events import Settlement

    backend = bus.backend
    await backend.ensure_group(spec)
    left = count
    while left is None or left > 0:
        pending = await backend.fetch(spec, bus.consumer, max_events=_wanted(left), wait=TAIL_WAIT)
        try:
            while pending:
                batch = pending[0]
                shown, settlement = 0, None
                for delivery in batch.deliveries:
                    if delivery.event is None:
                        _malformed(delivery, f"moved to the dead letters of {spec.name}")
                        settlement = Settlement(
                            shown, dead_letter=f"malformed event: {delivery.error}"
                        )
                        break
                    show(delivery.event)
                    shown += 1
                left = None if left is None else left - shown
                pending.pop(0)
                # What was printed is acknowledged even when a signal stops the tail now.
                await asyncio.shield(backend.settle(batch, settlement or Settlement(shown)))
        finally:
            for batch in pending:  # not printed: they come again, as they were
                with contextlib.suppress(Exception):
                    await asyncio.shield(backend.settle(batch, Settlement(0)))


def _malformed(delivery: Delivery, what: str) -> None:
    err_console.print(
        f"{what}: an event that is not a CloudEvent ({escape(delivery.error or '')})",
        highlight=False,
    )


def _run_until_stopped(main: Coroutine[Any, Any, None]) -> None:
    """Run ``main``; the first SIGINT or SIGTERM cancels it, so its clean-up runs and the
    command exits 0 (a second signal is not caught)."""

    async def guarded() -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        stopped = False

        def stop() -> None:
            nonlocal stopped
            stopped = True
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)
            task.cancel()

        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop)
        try:
            await main
        except asyncio.CancelledError:
            if not stopped:
                raise
        finally:
            if not stopped:
                for signum in (signal.SIGINT, signal.SIGTERM):
                    loop.remove_signal_handler(signum)

    run(guarded())


@click.group()
def dlq() -> None:
    """Dead letters: events that could not be handled, kept for review and replay."""


async def _with_bus(action: Any, *, create: bool = True) -> Any:
    """Run ``action`` on a bus from the CLI's settings. Commands that only read pass
    ``create=False``: nothing is then written to the SQL log's database (a missing one, or
    one without the schema, is empty; see :func:`~hybridmesh.store.open_ready_store`)."""
    from hybridmesh.events import open_bus
    from hybridmesh.store import open_ready_store

    settings = get_ctx().settings
    store = None
    if settings.events_url is None:  # the SQL log, in the state store
        store = await open_ready_store(settings.database_url, create=create)
    try:
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
        emit_json([x.to_dict() for x in letters])
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
    data = letter.to_dict()
    if as_json:
        emit_json(data)
        return
    for key in ("id", "group", "attempts", "failed_at", "replayed_at", "reason"):
        console.print(f"[bold]{key}[/bold]: {escape(str(data[key]))}", highlight=False)
    console.print_json(dumps(data["event"] or data["body"]))


@dlq.command()
@click.argument("letter_id", metavar="ID")
@json_option
def replay(letter_id: str, as_json: bool) -> None:
    """Deliver a dead letter's event again, to its own consumer group."""
    letter = run(_with_bus(lambda bus: bus.replay(letter_id)))
    if as_json:
        emit_json(letter.to_dict())
        return
    console.print(f"replayed {letter.id} to group {letter.group}", highlight=False)


@dlq.command()
@click.option("--group", default=None, help="Only this consumer group's dead letters.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@json_option
def purge(group: str | None, yes: bool, as_json: bool) -> None:
    """Delete dead letters for good."""
    if not yes:
        click.confirm(
            f"Delete every dead letter{f' of group {group}' if group else ''}?", abort=True
        )
    count = run(_with_bus(lambda bus: bus.purge(group=group)))
    if as_json:
        emit_json({"purged": count, "group": group})
        return
    console.print(f"purged {count} dead letter(s)", highlight=False)


__all__ = ["dlq", "events"]
