"""``hybridmesh chaos``: chaos experiments without the Chaos Toolkit, and the fault proxy.

``run`` reads an experiment in the toolkit's format (:mod:`hybridmesh.chaos.experiment`),
runs it with a live view and always runs its rollbacks; it exits 0 when the steady-state
hypothesis held, 1 when it did not (or an activity failed), 2 for a malformed file.
``proxy`` runs a TCP fault proxy (:mod:`hybridmesh.chaos.proxy`) until interrupted.
``lab`` runs the reference system's experiments (``experiments/``), each in an environment
it starts (:mod:`hybridmesh.chaos.lab`), and writes their reports.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from pathlib import Path
from typing import Any

import click
from aiohttp import web
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from hybridmesh.chaos.experiment import load_experiment
from hybridmesh.chaos.proxy import FaultProxy, control_app, parse_address
from hybridmesh.chaos.runner import COMPLETED, Journal, Runner
from hybridmesh.cli._common import console, emit_json, err_console, json_option
from hybridmesh.core.serialization import dumps

_MARKS = {
    "running": "[yellow]…[/]",
    "succeeded": "[green]ok[/]",
    "failed": "[red]failed[/]",
}


@click.group()
def chaos() -> None:
    """Chaos experiments (the Chaos Toolkit's format) and a TCP fault proxy."""


def _view(journal: Journal) -> Table:
    table = Table(title=escape(journal.title), title_justify="left")
    for column in ("phase", "activity", "status", "tolerance", "output"):
        table.add_column(column)
    for run in journal.runs:
        met = {None: "", True: "[green]met[/]", False: "[red]not met[/]"}[run.tolerance_met]
        output = run.error if run.error else dumps(run.output)
        table.add_row(run.phase, escape(run.name), _MARKS[run.status], met, escape(output[:80]))
    table.caption = f"status: {journal.status}"
    return table


@chaos.command("run")
@click.argument("path", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--report",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Write the journal (JSON: status, whether the hypothesis held, every figure) here.",
)
@click.option(
    "--var",
    "variables",
    multiple=True,
    metavar="KEY=VALUE",
    callback=lambda _ctx, _param, values: _variables(values),
    help="Set configuration KEY of the experiment (repeatable), as `chaos run --var` does.",
)
@json_option
def chaos_run(path: Path, report: Path | None, variables: dict[str, Any], as_json: bool) -> None:
    """Run the experiment in PATH (JSON or YAML): the steady state before, the method, the
    steady state after, then the rollbacks, always. Exits 1 when the hypothesis did not
    hold, 2 when the file is malformed."""
    loaded = load_experiment(path)
    if as_json or not console.is_terminal:
        journal = Runner(loaded.experiment, variables=variables).run()
        if not as_json:
            console.print(_view(journal))
    else:
        with Live(console=console, refresh_per_second=4) as live:
            journal = Runner(
                loaded.experiment, listener=lambda j: live.update(_view(j)), variables=variables
            ).run()
    data = journal.to_json()
    if report is not None:
        report.write_text(dumps(data) + "\n")
    if as_json:
        emit_json(data)
    else:
        verdict = "held" if data["hypothesis_held"] else "did not hold"
        colour = "green" if data["hypothesis_held"] else "red"
        console.print(f"[{colour}]{journal.status}: the steady-state hypothesis {verdict}[/]")
    if journal.status != COMPLETED:
        sys.exit(1)


_VAR_TYPES: dict[str, Any] = {"str": str, "int": int, "float": float}


def _variables(values: tuple[str, ...]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs, or the toolkit's ``KEY:TYPE=VALUE`` (str, int or float); an
    untyped value that reads as a number is one."""
    found: dict[str, Any] = {}
    for value in values:
        key, sep, text = value.partition("=")
        key, colon, kind = key.partition(":")
        if not sep or not key.isidentifier() or (colon and kind not in _VAR_TYPES):
            raise click.BadParameter(
                f"{value!r} is not KEY=VALUE or KEY:TYPE=VALUE (str, int, float)",
                param_hint="--var",
            )
        if colon:
            try:
                found[key] = _VAR_TYPES[kind](text)
            except ValueError:
                raise click.BadParameter(f"{value!r}: not a {kind}", param_hint="--var") from None
            continue
        try:
            found[key] = int(text)
        except ValueError:
            try:
                found[key] = float(text)
            except ValueError:
                found[key] = text
    return found


@chaos.command("lab")
@click.argument("names", metavar="NAME...|all", nargs=-1, required=True)
@click.option("--quick", is_flag=True, help="Shorter faults, windows and load (for CI).")
@click.option(
    "--report-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path(".hybridmesh") / "chaos",
    show_default=True,
    help="Where each experiment's report goes (NAME.json and NAME.md).",
)
@click.option(
    "--experiments",
    "folder",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    default=None,
    help="The folder of the experiment files (default: the repository's experiments/).",
)
@click.option(
    "--expected",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    help="A JSON file of NAME -> whether its hypothesis held before: exit 1 when one that "
    "held no longer does (for CI).",
)
@click.option(
    "--toolkit",
    is_flag=True,
    help="Run the files with the Chaos Toolkit's `chaos run --rollback-strategy always` "
    "instead of hybridmesh's runner (pip install chaostoolkit).",
)
@click.option(
    "--postgres-url",
    envvar="HYBRIDMESH_CHAOS_POSTGRES_URL",
    default=None,
    help="An admin URL of the PostgreSQL server where broker-unreachable makes the event "
    "log's database for the run (env HYBRIDMESH_CHAOS_POSTGRES_URL; default "
    "postgresql://postgres@127.0.0.1:5432/postgres).",
)
@json_option
def chaos_lab(
    names: tuple[str, ...],
    quick: bool,
    report_dir: Path,
    folder: Path | None,
    expected: Path | None,
    postgres_url: str | None,
    toolkit: bool,
    as_json: bool,
) -> None:
    """Run the reference system's experiments NAME... (or `all` of them), each in an
    environment of its own: the reference services, a gateway, two workers and what else
    it needs, over a temporary store, under a steady load of order sagas and reads. Writes
    NAME.json and NAME.md to --report-dir. Exits 1 when a hypothesis did not hold (with
    --expected: when one that held before no longer does)."""
    from hybridmesh.chaos.lab import (
        DEFAULT_POSTGRES_URL,
        EXPERIMENTS,
        FULL,
        QUICK,
        experiments_folder,
        regressions,
        run_in_lab,
    )

    chosen = list(EXPERIMENTS) if names == ("all",) else list(dict.fromkeys(names))
    unknown = [n for n in chosen if n not in EXPERIMENTS]
    if unknown:
        raise click.BadParameter(
            f"no experiment {unknown[0]!r}; the lab runs {', '.join(EXPERIMENTS)} or all",
            param_hint="NAME",
        )
    folder = folder or experiments_folder()
    if not folder.is_dir():
        raise click.BadParameter(
            f"there is no {folder}: run the lab from a clone of the repository, or name the "
            "folder of the experiment files",
            param_hint="--experiments",
        )
    baseline = _expected(expected) if expected is not None else None
    profile = QUICK if quick else FULL
    reports = []
    for each in chosen:
        err_console.print(f"chaos lab: {each}{' (quick)' if quick else ''}", highlight=False)
        report = asyncio.run(
            run_in_lab(
                each,
                profile,
                report_dir,
                folder,
                postgres_url or DEFAULT_POSTGRES_URL,
                toolkit,
            )
        )
        reports.append(report)
        if not as_json:
            verdict = "held" if report["hypothesis_held"] else "did not hold"
            colour = "green" if report["hypothesis_held"] else "red"
            console.print(
                f"[{colour}]{each}: {report['status']}, the hypothesis {verdict}[/] "
                f"({report['lab_seconds']} s; {report_dir / (each + '.md')})",
                highlight=False,
                soft_wrap=True,
            )
    broken = regressions(reports, baseline)
    if as_json:
        emit_json({"reports": reports, "broken": broken})
    for each in broken:
        err_console.print(f"{each}: the hypothesis did not hold", style="red", highlight=False)
    if broken:
        sys.exit(1)


def _expected(path: Path) -> dict[str, bool]:
    """NAME -> held, from a committed JSON file."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise click.BadParameter(f"{path}: {error}", param_hint="--expected") from None
    if not isinstance(data, dict) or not all(isinstance(v, bool) for v in data.values()):
        raise click.BadParameter(
            f"{path}: an object of experiment name -> true/false", param_hint="--expected"
        )
    return data


@chaos.command("proxy")
@click.option("--listen", required=True, help="HOST:PORT the proxy listens on.")
@click.option("--upstream", required=True, help="HOST:PORT it forwards to.")
@click.option(
    "--control",
    default="127.0.0.1:8474",
    show_default=True,
    help="HOST:PORT of the control API (GET/POST /toxics, DELETE /toxics[/NAME]).",
)
def chaos_proxy(listen: str, upstream: str, control: str) -> None:
    """Forward TCP from --listen to --upstream with toxics switched on and off at runtime
    through the control API; every toxic expires after its duration."""
    listen_at = parse_address(listen, "--listen")
    upstream_at = parse_address(upstream, "--upstream")
    control_at = parse_address(control, "--control")
    asyncio.run(_serve_proxy(listen_at, upstream_at, control_at))


async def _serve_proxy(
    listen: tuple[str, int], upstream: tuple[str, int], control: tuple[str, int]
) -> None:
    proxy = FaultProxy(upstream)
    host, port = await proxy.start(*listen)
    runner = web.AppRunner(control_app(proxy), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, *control)
    await site.start()
    control_port = runner.addresses[0][1]
    err_console.print(
        f"chaos proxy: {host}:{port} -> {upstream[0]}:{upstream[1]}; "
        f"control http://{control[0]}:{control_port}/toxics"
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        with contextlib.suppress(Exception):
            await runner.cleanup()
        await proxy.close()


__all__ = ["chaos"]
