"""``hybridmesh reconcile``: compare a replication's source and target tables, repair them,
and read the runs and repairs recorded.

``run NAME [--file FILE]`` compares (``--repair``: and repairs) the tables of replication
NAME, as FILE defines it or as ``replicate apply`` stored it; it exits 0 when they agree or
were fully repaired, 1 when differences remain, 2 for a bad file, name or table.
``history NAME`` lists the recorded runs (``--repairs``: the rows repairs wrote).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TextColumn
from rich.table import Table

from hybridmesh.cli._common import COUNT, console, emit_json, err_console, get_ctx, json_option, run
from hybridmesh.data.config import ReplicationSpec, load_data
from hybridmesh.data.reconcile import ReconcileReport, TableReport, reconcile, table_specs
from hybridmesh.data.reconcile_records import ReconcileHistory
from hybridmesh.data.reconcile_report import jsonable
from hybridmesh.store import open_ready_store

#: Sample keys printed per kind of difference (``--json`` has the report's whole sample).
_SHOWN = 10


class _RunByDefault(click.Group):
    """``hybridmesh reconcile NAME ...`` is ``hybridmesh reconcile run NAME ...``."""

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        if args and not args[0].startswith("-") and args[0] not in self.commands:
            args = ["run", *args]
        return super().resolve_command(ctx, args)


@click.group("reconcile", cls=_RunByDefault)
def reconcile_group() -> None:
    """Compare a replication's source and target tables by checksums, and repair them.

    `hybridmesh reconcile NAME [--repair] [--json]` is short for `reconcile run NAME`."""


def _replication(file: Path, name: str) -> ReplicationSpec:
    """Replication ``name`` of ``file``; exits 2 naming the known ones when there is none."""
    definitions = load_data(file)
    spec = definitions.replications.get(name)
    if spec is None:
        known = ", ".join(sorted(definitions.replications)) or "no replication"
        raise click.BadParameter(
            f"{file} has no replication {name!r}; it defines: {known}", param_hint="NAME"
        )
    return spec


async def _stored_replication(name: str) -> ReplicationSpec:
    """Replication ``name`` as ``replicate apply`` stored it; exits 2 naming the known ones."""
    from hybridmesh.data.control import DataControl

    async with await open_ready_store(get_ctx().database_url, create=False) as store:
        records = {r.name: r for r in await DataControl(store).list()}
    record = records.get(name)
    if record is None or not isinstance(record.spec, ReplicationSpec):
        known = ", ".join(n for n, r in sorted(records.items()) if r.kind == "replication")
        raise click.BadParameter(
            f"the store has no replication {name!r} (it has: {known or 'none'}); "
            "store it with `hybridmesh replicate apply FILE` or pass --file",
            param_hint="NAME",
        )
    return record.spec


@reconcile_group.command("run")
@click.argument("name")
@click.option(
    "--file",
    "file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="The YAML file that defines the replication (default: the one stored by "
    "`replicate apply`).",
)
@click.option("--repair", is_flag=True, help="Repair what differs, from reconcile.truth's side.")
@click.option(
    "--table",
    "tables",
    multiple=True,
    help="Only this table (its source or target name; repeatable).",
)
@json_option
def reconcile_run(
    name: str, file: Path | None, repair: bool, tables: tuple[str, ...], as_json: bool
) -> None:
    """Compare replication NAME's source and target tables and report the rows missing
    from the target, extra in it and different; with --repair, write the side that is
    not the truth (reconcile.truth in FILE) and check again. The run and every repaired
    row are recorded in the hybridmesh store (see `reconcile history`).

    Exits 0 when the tables agree (or were fully repaired), 1 when differences remain."""
    spec = _replication(file, name) if file is not None else run(_stored_replication(name))
    table_specs(spec, tables)  # an unknown --table exits 2 before anything is opened

    async def go() -> ReconcileReport:
        async with await open_ready_store(get_ctx().database_url) as store:
            with _progress(show=not as_json) as progress:
                return await reconcile(
                    spec, store=store, repair=repair, tables=tables, progress=progress
                )

    report = run(go())
    if as_json:
        emit_json(report.to_dict())
    else:
        _print_report(report)
    if not report.consistent:
        raise SystemExit(1)


@contextmanager
def _progress(*, show: bool) -> Iterator[Any]:
    """A progress callback drawing a line per table while its checksums are compared."""
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        console=err_console,
        transient=True,
        disable=not show,
    ) as bar:
        tasks: dict[str, Any] = {}

        def progress(table: str, stage: str, done: int, total: int) -> None:
            if table not in tasks:
                tasks[table] = bar.add_task("", total=None)
            what = {
                "checksums": f"{done} segment checksums compared",
                "rows": f"rows of {done}/{total} differing segments compared",
                "repair": f"repairing {total} rows",
                "recheck": f"checking {done}/{total} repaired segments again",
            }.get(stage, stage)
            bar.update(tasks[table], description=f"{escape(table)}: {what}")

        yield progress


def _print_report(report: ReconcileReport) -> None:
    seconds = (report.finished_at - report.started_at).total_seconds()
    table = Table(box=None, header_style="bold")
    for column in ("table", "source rows", "target rows", "missing", "extra", "different"):
        table.add_column(column, justify="left" if column == "table" else "right")
    table.add_column("rate", justify="right")
    if report.repair:
        table.add_column("repaired", justify="right")
        table.add_column("remaining", justify="right")
    for t in report.tables:
        cells = [
            escape(t.source if t.source == t.target else f"{t.source} → {t.target}"),
            f"{t.source_rows:,}",
            f"{t.target_rows:,}",
            _count(t.missing),
            _count(t.extra),
            _count(t.different),
            f"{t.inconsistency_rate:.4%}",
        ]
        if report.repair:
            cells += [f"{t.repaired:,}", _count(t.remaining or 0)]
        table.add_row(*cells)
    console.print(table)
    for t in report.tables:
        _print_samples(t)
    colour = "red" if report.status == "inconsistent" else "green"
    repaired = f"; {report.repaired:,} repaired, {report.remaining:,} remaining"
    console.print(
        f"replication {escape(report.replication)}: [{colour}]{report.status}[/{colour}] "
        f"({report.inconsistent:,} differing rows, {report.inconsistency_rate:.4%}"
        f"{repaired if report.repair else ''}; {seconds:.2f} s, run {report.run_id})",
        highlight=False,
    )


def _count(value: int) -> str:
    return f"[red]{value:,}[/red]" if value else "0"


def _key_text(key: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in jsonable(key).items())


def _print_samples(t: TableReport) -> None:
    name = escape(t.target)
    for kind, keys, count in (
        ("missing from the target", t.missing_keys, t.missing),
        ("extra in the target", t.extra_keys, t.extra),
    ):
        if count:
            shown = "; ".join(escape(_key_text(k)) for k in keys[:_SHOWN])
            more = f" (and {count - min(len(keys), _SHOWN):,} more)" if count > _SHOWN else ""
            console.print(f"{name}: {kind}: {shown}{more}", highlight=False, soft_wrap=True)
    for difference in t.differences[:_SHOWN]:
        columns = "; ".join(
            f"{c}: {jsonable(a)!r} ≠ {jsonable(b)!r}" for c, (a, b) in difference.columns.items()
        )
        console.print(
            f"{name}: different at {escape(_key_text(difference.key))}: {escape(columns)}",
            highlight=False,
            soft_wrap=True,
        )
    if t.different > _SHOWN:
        console.print(f"{name}: (and {t.different - _SHOWN:,} more different rows)")


@reconcile_group.command("history")
@click.argument("name")
@click.option("--limit", type=COUNT, default=20, show_default=True, help="How many to list.")
@click.option("--repairs", is_flag=True, help="List the rows repairs wrote instead of runs.")
@click.option("--run", "run_id", default=None, help="With --repairs: only this run's.")
@json_option
def reconcile_history(
    name: str, limit: int, repairs: bool, run_id: str | None, as_json: bool
) -> None:
    """The recorded reconciliation runs of replication NAME, newest first (with
    --repairs: the rows their repairs wrote)."""

    async def load() -> list[Any]:
        async with await open_ready_store(get_ctx().database_url, create=False) as store:
            history = ReconcileHistory(store)
            if repairs:
                return await history.repairs(name, run_id=run_id, limit=limit)
            return await history.runs(name, limit)

    records = run(load())
    if as_json:
        emit_json([r.to_dict() for r in records])
        return
    if not records:
        console.print(f"no reconciliation {'repairs' if repairs else 'runs'} of {escape(name)}")
        return
    table = Table(box=None, header_style="bold")
    if repairs:
        for column in ("when", "run", "side", "table", "action", "key"):
            table.add_column(column, no_wrap=column == "run")
        for r in records:
            table.add_row(
                _when(r.at), r.run_id, r.side, escape(r.table), r.action, escape(_key_text(r.key))
            )
    else:
        table.add_column("started")
        table.add_column("run", no_wrap=True)
        table.add_column("status")
        for column in ("rows", "missing/extra/different", "rate", "repaired", "remaining"):
            table.add_column(column, justify="right")
        for r in records:
            table.add_row(
                _when(r.started_at),
                r.id,
                r.status + (f": {escape(r.error)}" if r.error else ""),
                f"{r.source_rows:,}",
                f"{r.missing:,}/{r.extra:,}/{r.different:,}",
                f"{r.rate:.4%}",
                f"{r.repaired:,}",
                "" if r.remaining is None else f"{r.remaining:,}",
            )
    console.print(table)


def _when(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))


__all__ = ["reconcile_group"]
