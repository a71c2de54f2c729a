"""``hybridmesh slo``: the integration guide's success metrics as SLOs.

``report [--window 1h|24h|30d] [--json]`` measures every SLO over the window from the store
(the call rollup, executions, reconciliation runs); ``rules [--output FILE]`` writes the
Prometheus recording and alerting rules for them.
"""

from __future__ import annotations

from pathlib import Path

import click
from rich.markup import escape
from rich.table import Table

from hybridmesh.cli._common import console, emit_json, get_ctx, json_option, run
from hybridmesh.observability.slo import LATENCY, WINDOWS, Measurement, SloReport, slo_report
from hybridmesh.observability.slo_rules import rules_yaml
from hybridmesh.store import open_ready_store

_STATUS_STYLE = {"ok": "green", "burning": "yellow", "exhausted": "red", "no_data": "dim"}


@click.group("slo")
def slo() -> None:
    """Service level objectives: integration reliability, sync latency, workflow
    completion and data consistency (see docs/slo.md)."""


@slo.command("report")
@click.option(
    "--window",
    type=click.Choice(list(WINDOWS)),
    default="24h",
    show_default=True,
    help="The window measured, ending now.",
)
@json_option
def slo_report_command(window: str, as_json: bool) -> None:
    """Each SLO over the window, overall and per subject (pair of services, saga or
    workflow, replication): SLI, good and total events, error budget left, burn rate and
    status (ok, burning, exhausted, no_data)."""

    async def load() -> SloReport:
        async with await open_ready_store(get_ctx().database_url, create=False) as store:
            return await slo_report(store, window)

    report = run(load())
    if as_json:
        emit_json(report.to_json())
        return
    _print(report)


def _print(report: SloReport) -> None:
    """One table per SLO: overall first, then each subject."""
    for result in report.slos:
        latency = result.slo is LATENCY
        table = Table(
            box=None,
            header_style="bold",
            title_justify="left",
            title=f"[bold]{result.slo.name}[/]: objective {result.slo.objective:.1%} over the "
            f"last {report.window} ({escape(result.slo.source)})",
        )
        table.add_column("subject")
        for column in ("sli", "good/total", "budget left", "burn rate"):
            table.add_column(column, justify="right")
        if latency:
            table.add_column("p95", justify="right")
        table.add_column("status")
        for m in (result.overall, *result.subjects):
            cells = [
                _subject(m),
                _percent(m.sli),
                f"{m.good:,}/{m.total:,}",
                _percent(m.error_budget_remaining),
                "-" if m.burn_rate is None else f"{m.burn_rate:.2f}",
            ]
            if latency:
                cells.append("-" if m.p95_seconds is None else f"{m.p95_seconds * 1000:.1f} ms")
            table.add_row(*cells, _status(m))
        console.print(table)
        console.print()


def _subject(m: Measurement) -> str:
    labels = m.labels
    if not labels:
        return "overall"
    if "source" in labels:
        return (
            f"{escape(labels['source'])} → {escape(labels['target'])}\n"
            f"[dim]{escape(labels['source_architecture'])} → "
            f"{escape(labels['target_architecture'])}[/]"
        )
    return escape(" ".join(labels.values()))


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.3%}"


def _status(m: Measurement) -> str:
    return f"[{_STATUS_STYLE[m.status]}]{m.status}[/]"


@slo.command("rules")
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    default=None,
    help="Write the rules to FILE instead of standard output.",
)
def slo_rules(output: Path | None) -> None:
    """Prometheus recording rules (each SLI's error ratio over 5m to 3d) and
    multi-window, multi-burn-rate alerts (page: 14.4x over 1h and 5m, 6x over 6h and 30m;
    ticket: 3x over 1d and 2h, 1x over 3d and 6h), as a rules file for rule_files."""
    text = rules_yaml()
    if output is None:
        click.echo(text, nl=False)
        return
    output.write_text(text)
    console.print(f"wrote {escape(str(output))}", highlight=False)


__all__ = ["slo"]
