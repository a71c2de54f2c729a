"""``hybridmesh chaos``: chaos experiments without the Chaos Toolkit, and the fault proxy.

``run`` reads an experiment in the toolkit's format (:mod:`hybridmesh.chaos.experiment`),
runs it with a live view and always runs its rollbacks; it exits 0 when the steady-state
hypothesis held, 1 when it did not (or an activity failed), 2 for a malformed file.
``proxy`` runs a TCP fault proxy (:mod:`hybridmesh.chaos.proxy`) until interrupted.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from pathlib import Path

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
@json_option
def chaos_run(path: Path, report: Path | None, as_json: bool) -> None:
    """Run the experiment in PATH (JSON or YAML): the steady state before, the method, the
    steady state after, then the rollbacks, always. Exits 1 when the hypothesis did not
    hold, 2 when the file is malformed."""
    loaded = load_experiment(path)
    if as_json or not console.is_terminal:
        journal = Runner(loaded.experiment).run()
        if not as_json:
            console.print(_view(journal))
    else:
        with Live(console=console, refresh_per_second=4) as live:
            journal = Runner(loaded.experiment, listener=lambda j: live.update(_view(j))).run()
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
