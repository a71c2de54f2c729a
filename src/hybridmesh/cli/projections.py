"""``hybridmesh projections``: read models kept by consuming events.

``list`` shows the projections registered in the state store; ``rebuild NAME`` empties a
projection's table and applies again every event the bus's log still holds. A rebuild
refuses (exit 1, nothing changed) when the log has lost events the projection applied,
unless ``--allow-gap``.
"""

from __future__ import annotations

import os
import sys
from datetime import datetime

import click
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn
from rich.table import Table

from hybridmesh.cli._common import console, emit_json, err_console, get_ctx, json_option, run
from hybridmesh.core.errors import ConfigurationError
from hybridmesh.data.projections import (
    ProgressCallback,
    Projection,
    ProjectionGapError,
    ProjectionInfo,
    RebuildProgress,
    RebuildResult,
    get_projection,
    list_projections,
    load_projection,
)
from hybridmesh.store import Store, open_ready_store


@click.group()
def projections() -> None:
    """Read models (CQRS projections): list them, rebuild one from the event log."""


@projections.command("list")
@json_option
def projections_list(as_json: bool) -> None:
    """The registered projections: pattern, status, checkpoint (the highest log position
    applied), events applied, the newest event's time and the table's database."""

    async def read() -> list[ProjectionInfo]:
        # Only reads: a database that is not there yet reads as empty.
        async with await open_ready_store(get_ctx().database_url, create=False) as store:
            return await list_projections(store)

    found = run(read())
    if as_json:
        emit_json([info.to_dict() for info in found])
        return
    table = Table()
    widest = max((len(info.name) for info in found), default=10)
    table.add_column("projection", no_wrap=True, min_width=widest)
    for title in ("pattern", "status", "checkpoint", "applied", "last event", "database"):
        table.add_column(title)
    for info in found:
        table.add_row(
            escape(info.name),
            escape(info.pattern),
            _status(info),
            "" if info.checkpoint is None else str(info.checkpoint),
            str(info.events_applied),
            _when(info.last_event_at),
            escape(info.target),
        )
    console.print(table)
    for info in found:
        if info.partial:
            _say_partial(info.name, info.missing_events, info.missing_upto)
        if info.last_error and info.status != "running":
            err_console.print(
                f"{info.name}: {info.last_error}", style="red", markup=False, highlight=False
            )


def _status(info: ProjectionInfo) -> str:
    colour = {"running": "green", "failing": "red", "rebuild-failed": "red"}.get(info.status)
    text = f"[{colour}]{info.status}[/{colour}]" if colour else info.status
    return f"{text}, [yellow]partial[/yellow]" if info.partial else text


def _say_partial(name: str, missing: int, upto: int | None) -> None:
    err_console.print(
        f"{name} is partial: {missing} event(s) the log had lost when it was rebuilt are "
        f"missing from its table (positions up to {upto})",
        style="yellow",
        markup=False,
        highlight=False,
    )


def _when(moment: datetime | None) -> str:
    return "" if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S")


@projections.command("rebuild")
@click.argument("name")
@click.option(
    "--module",
    "module_path",
    metavar="MODULE:ATTR",
    default=None,
    help="Where the projection is defined (default: the import path it registered). The "
    "current folder is searched first.",
)
@click.option(
    "--allow-gap",
    is_flag=True,
    help="Rebuild even when the log has lost events the projection applied: what remains is "
    "applied, and the projection is recorded as partial.",
)
@json_option
def projections_rebuild(name: str, module_path: str | None, allow_gap: bool, as_json: bool) -> None:
    """Empty projection NAME's table and apply again, in log order, every matching event
    the bus's log still holds (HYBRIDMESH_EVENTS_URL, else the SQL log in the state store).
    The projection's consumers wait meanwhile.

    Exits 1, changing nothing, when the bus's retention removed events the projection had
    applied (it says how many, and which positions), unless --allow-gap.
    """
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("position {task.fields[position]}"),
        console=err_console,
        transient=True,
        disable=as_json,
    ) as bar:
        task = bar.add_task(f"rebuilding {escape(name)}", total=None, position="-")

        def progress(at: RebuildProgress) -> None:
            total = None
            if at.first is not None and at.last is not None:
                total = at.last - at.first + 1
            done = 0 if at.position is None or at.first is None else at.position - at.first + 1
            bar.update(
                task,
                total=total,
                completed=done,
                position=at.position if at.position is not None else "-",
                description=f"rebuilding {escape(name)}: {at.applied} applied",
            )

        try:
            result = run(_rebuild(name, module_path, allow_gap, progress))
        except ProjectionGapError as refused:
            if not as_json:
                raise
            emit_json(
                {
                    "projection": name,
                    "rebuilt": False,
                    "error": str(refused),
                    "lost": refused.gap.to_dict(),
                }
            )
            raise SystemExit(1) from None
    if as_json:
        emit_json(result.to_dict())
        return
    _print_result(result)


async def _rebuild(
    name: str,
    module_path: str | None,
    allow_gap: bool,
    progress: ProgressCallback,
) -> RebuildResult:
    from hybridmesh.events import open_bus

    settings = get_ctx().settings
    async with await open_ready_store(settings.database_url) as store:
        projection = await _projection(store, name, module_path)
        bus = await open_bus(settings, store=store)
        try:
            await projection.open(store)
            try:
                return await projection.rebuild(bus, allow_gap=allow_gap, progress=progress)
            finally:
                await projection.close()
        finally:
            await bus.close()


async def _projection(store: Store, name: str, module_path: str | None) -> Projection:
    """Projection ``name`` as defined at ``module_path``, else where it registered."""
    path = module_path
    if path is None:
        path = (await get_projection(store, name)).import_path  # NotFoundError: exit 1
        if path is None:
            raise click.UsageError(
                f"projection {name!r} registered no import path (it was made in a function or "
                "a script): give --module MODULE:ATTR"
            )
    # A console script does not search the current folder; `python -m` does.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        projection = load_projection(path)
    except ConfigurationError as error:
        if module_path is None:
            raise ConfigurationError(f"projection {name!r} registered {error}") from None
        raise click.BadParameter(str(error), param_hint="--module") from None
    if projection.name != name:
        raise click.UsageError(f"{path} is projection {projection.name!r}, not {name!r}")
    return projection


def _print_result(result: RebuildResult) -> None:
    checkpoint = "none" if result.checkpoint is None else str(result.checkpoint)
    skipped = f" ({result.skipped} skipped)" if result.skipped else ""
    console.print(
        f"rebuilt {escape(result.name)}: {result.applied} event(s) applied{skipped}, "
        f"checkpoint {checkpoint}",
        highlight=False,
    )
    if result.partial:
        if result.lost is not None:
            err_console.print(
                f"warning: {result.name}: {result.lost.describe()}; they are left out",
                style="yellow",
                markup=False,
                highlight=False,
            )
        _say_partial(result.name, result.missing_events, result.missing_upto)


__all__ = ["projections"]
