"""``hybridmesh replicate``: replications out of a legacy database, and event bridges.

``apply`` stores the definitions of a YAML file; ``start`` runs one in the foreground (a
backfill first, with progress, then streaming) until it is stopped; ``pause``, ``resume``
and ``stop`` ask the process running it, wherever it runs, through the store; ``status``
and ``list`` read what it last reported.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Group
from rich.live import Live
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn
from rich.table import Table

from hybridmesh.cli._common import console, emit_json, get_ctx, json_option, run
from hybridmesh.data.config import load_data
from hybridmesh.data.control import DataControl, DataRecord, Desired
from hybridmesh.data.runner import run_stored
from hybridmesh.data.status import replication_status, replication_statuses
from hybridmesh.store import Store, open_ready_store

T = TypeVar("T")


async def _with_store(action: Callable[[Store], Awaitable[T]], *, create: bool = True) -> T:
    async with await open_ready_store(get_ctx().database_url, create=create) as store:
        return await action(store)


@click.group()
def replicate() -> None:
    """Replicate a legacy database's tables into a new service's database (backfill by
    watermarks while writes go on, then streaming), or publish its changes as events."""


file_argument = click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))


@replicate.command("apply")
@file_argument
@click.option("--prune", is_flag=True, help="Delete stored definitions the file lacks.")
@json_option
def replicate_apply(file: Path, prune: bool, as_json: bool) -> None:
    """Store the replications and bridges FILE defines (new ones stay stopped)."""
    definitions = load_data(file)
    result = run(_with_store(lambda s: DataControl(s).apply(definitions, prune=prune)))
    if as_json:
        emit_json(result.to_dict())
        return
    for verb, names in result.to_dict().items():
        for name in names:
            console.print(f"{verb}: {escape(name)}", highlight=False)


@replicate.command("list")
@json_option
def replicate_list(as_json: bool) -> None:
    """The stored replications and bridges, with what they last reported (and, with
    --json, each replication's latest reconciliation run)."""
    if as_json:
        emit_json(run(_with_store(replication_statuses, create=False)))
        return
    records = run(_with_store(lambda s: DataControl(s).list(), create=False))
    now = time.time()
    table = Table("name", "kind", "asked", "running", "phase", "lag", "applied")
    for r in records:
        status = r.status or {}
        table.add_row(
            r.name,
            r.kind,
            r.desired + (" +reverse" if r.reverse else ""),
            "yes" if r.running_now(now) else "no",
            str(status.get("phase", "-")),
            _lag_text(status),
            str(status.get("applied", status.get("published", "-"))),
        )
    console.print(table)


def _lag_text(status: dict[str, Any]) -> str:
    if "lag_changes" not in status:
        return "-"
    seconds = status.get("lag_seconds")
    return f"{status['lag_changes']} changes" + (
        f", {seconds:.1f} s" if isinstance(seconds, int | float) else ""
    )


@replicate.command("status")
@click.argument("name")
@json_option
def replicate_status(name: str, as_json: bool) -> None:
    """Where NAME stands: each table's backfill, the position, lag and conflicts (and,
    with --json, its latest reconciliation run)."""
    if as_json:
        emit_json(run(_with_store(lambda s: replication_status(s, name), create=False)))
        return
    record = run(_with_store(lambda s: DataControl(s).get(name), create=False))
    console.print(_status_view(record, record.status or {}))


def _status_view(record: DataRecord, status: dict[str, Any]) -> Group:
    running = "running" if record.running_now() else "not running"
    head = (
        f"[bold]{escape(record.name)}[/] ({record.kind}): asked {record.desired}"
        f"{' with reverse sync' if record.reverse else ''}; {running}"
    )
    parts: list[Any] = [head]
    if not status:
        parts.append("no status reported yet: run `hybridmesh replicate start NAME`")
        return Group(*parts)
    parts.append(
        f"position {status.get('position')} of {status.get('head')}, lag {_lag_text(status)}"
        + (f", applied {status['applied']}" if "applied" in status else "")
        + (f", published {status['published']}" if "published" in status else "")
        + (f", conflicts {status['conflicts']}" if status.get("conflicts") else "")
    )
    tables = status.get("tables") or []
    if tables:
        grid = Table("table", "phase", "copied", "of", "done")
        for t in tables:
            total = max(int(t["rows_total"]), 1)
            done = (
                100.0 if t["phase"] == "streaming" else min(100.0, 100 * t["rows_copied"] / total)
            )
            grid.add_row(
                f"{t['source']} -> {t['target']}",
                t["phase"],
                str(t["rows_copied"]),
                str(t["rows_total"]),
                f"{done:.0f} %",
            )
        parts.append(grid)
    reverse = status.get("reverse")
    if isinstance(reverse, dict):
        parts.append(
            f"reverse sync {escape(str(reverse.get('name')))}: position "
            f"{reverse.get('position')} of {reverse.get('head')}, lag {_lag_text(reverse)}, "
            f"conflicts {reverse.get('conflicts', 0)}"
        )
    return Group(*parts)


def _desired_command(verb: str, desired: Desired, help_text: str) -> None:
    @replicate.command(verb, help=help_text)
    @click.argument("name")
    @json_option
    def command(name: str, as_json: bool) -> None:
        record = run(_with_store(lambda s: DataControl(s).set_desired(name, desired)))
        if as_json:
            emit_json(record.to_dict())
            return
        console.print(f"{escape(name)}: asked to be {desired}", highlight=False)


_desired_command("pause", "paused", "Hold NAME where it is (its source keeps the changes).")
_desired_command("resume", "running", "Go on with a paused NAME.")
_desired_command("stop", "stopped", "Stop NAME; `replicate start` takes it up where it left.")


@replicate.command("start")
@click.argument("name")
@click.option(
    "--file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Apply this definitions file first.",
)
@click.option(
    "--until-caught-up",
    is_flag=True,
    help="End once the backfill is done and every change so far is applied.",
)
@json_option
def replicate_start(name: str, file: Path | None, until_caught_up: bool, as_json: bool) -> None:
    """Run NAME here, in the foreground, until it is stopped (`replicate stop`, Ctrl-C or
    SIGTERM; it takes up where it left when started again). A replication backfills first,
    with progress, then streams; a bridge publishes to the event bus the settings name."""
    definitions = load_data(file) if file is not None else None

    async def go(store: Store) -> dict[str, Any]:
        control = DataControl(store)
        if definitions is not None:
            await control.apply(definitions)
        record = await control.set_desired(name, "running")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(RuntimeError, NotImplementedError, ValueError):
                loop.add_signal_handler(sig, stop.set)
        bus = None
        if record.kind == "bridge":
            from hybridmesh.events import open_bus

            bus = await open_bus(get_ctx().settings, store=store)
        progress = _progress()
        try:
            with Live(progress, console=console, transient=True, refresh_per_second=4) as live:

                async def show(status: dict[str, Any]) -> None:
                    _update(progress, status)
                    live.update(Group(progress, _lag_line(status)))

                return await run_stored(
                    store,
                    name,
                    bus=bus,
                    until_caught_up=until_caught_up,
                    stop=stop,
                    on_status=show,
                )
        finally:
            if bus is not None:
                await bus.close()

    status = run(_with_store(go))
    if as_json:
        emit_json(status)
        return
    console.print(
        f"{escape(name)}: position {status.get('position')} of {status.get('head')}, "
        f"lag {_lag_text(status)}",
        highlight=False,
    )


@replicate.command("run")
def replicate_run() -> None:
    """Run every stored replication and bridge that is asked to run and that no other
    process runs, until interrupted (any number of these share the work; one that dies is
    replaced within five seconds). Bridges publish to the event bus the settings name."""

    async def serve(store: Store) -> None:
        from hybridmesh.data.runner import DataSupervisor
        from hybridmesh.events import open_bus

        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(RuntimeError, NotImplementedError, ValueError):
                loop.add_signal_handler(sig, stop.set)
        bus = await open_bus(get_ctx().settings, store=store)
        try:
            with console.status("running replications and bridges (Ctrl-C stops)"):
                await DataSupervisor(store, bus=bus).run(stop)
        finally:
            await bus.close()

    run(_with_store(serve))


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:,.0f}/{task.total:,.0f} rows"),
        console=console,
    )


def _update(progress: Progress, status: dict[str, Any]) -> None:
    known = {task.description: task.id for task in progress.tasks}
    for table in status.get("tables") or []:
        label = f"{table['source']} -> {table['target']}"
        total = max(int(table["rows_total"]), int(table["rows_copied"]), 1)
        completed = total if table["phase"] == "streaming" else int(table["rows_copied"])
        if label not in known:
            known[label] = progress.add_task(label, total=total)
        progress.update(known[label], total=total, completed=completed)


def _lag_line(status: dict[str, Any]) -> str:
    text = f"position {status.get('position')} of {status.get('head')}, lag {_lag_text(status)}"
    if status.get("published") is not None:
        text += f", published {status['published']}"
    return text


__all__ = ["replicate"]
