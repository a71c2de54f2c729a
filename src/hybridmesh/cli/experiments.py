"""``hybridmesh experiments``: boundary experiments, a candidate tried on a route's live
traffic before anyone commits to it (:mod:`hybridmesh.migration.boundary`).

``run`` mirrors the route to the candidate for a while (clients still get only the
primary's answers), puts the route back, and judges the candidate's error rate, p95 and
mismatch rate against the thresholds given; ``show`` and ``list`` read the stored results.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn
from rich.table import Table

from hybridmesh.cli._common import COUNT, console, emit_json, err_console, get_ctx, json_option, run
from hybridmesh.core.errors import Problem, ValidationError
from hybridmesh.core.names import is_name
from hybridmesh.migration.boundary import (
    BoundaryExperiment,
    ExperimentResult,
    ExperimentStore,
    Figures,
    ProgressCallback,
    Status,
    Verdict,
    parse_spec,
    run_boundary_experiment,
)
from hybridmesh.store import Store, open_ready_store

T = TypeVar("T")

#: The option each field of the spec comes from, to name it in an error.
_OPTIONS = {
    "id": "--id",
    "route": "--route",
    "candidate": "--candidate-service/--candidate-url",
    "candidate.service": "--candidate-service",
    "candidate.url": "--candidate-url",
    "duration": "--duration",
    "percent": "--percent",
    "hypothesis.max_error_rate": "--max-error-rate",
    "hypothesis.max_p95_ms": "--max-p95-ms",
    "hypothesis.max_mismatch_rate": "--max-mismatch-rate",
    "hypothesis.min_requests": "--min-requests",
    "hypothesis.min_compared": "--min-compared",
}

_VERDICT_STYLE = {
    Verdict.CONFIRMED: "green",
    Verdict.REJECTED: "red",
    Verdict.INCONCLUSIVE: "yellow",
}


async def _with_store(action: Callable[[Store], Awaitable[T]], *, create: bool = True) -> T:
    async with await open_ready_store(get_ctx().database_url, create=create) as store:
        return await action(store)


def _as_options(error: ValidationError) -> ValidationError:
    """``error`` with each field named as the option it came from."""
    return ValidationError(
        [
            Problem(
                p.message,
                p.file,
                p.line,
                _OPTIONS.get(p.field or "", p.field) if p.field else None,
            )
            for p in error.problems
        ]
    )


def _default_id(route: str) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    stem = route[:47].rstrip("-") if is_name(route) else "experiment"
    return f"{stem}-{stamp}"


@click.group()
def experiments() -> None:
    """Boundary experiments: a candidate tried on a route's live traffic (mirrored, the
    clients never see its answers) before anyone commits to it."""


@experiments.command("run")
@click.option("--route", required=True, help="The gateway route whose traffic is mirrored.")
@click.option("--candidate-service", default=None, help="The candidate: a registry service.")
@click.option("--candidate-url", default=None, help="The candidate: a base URL.")
@click.option("--duration", required=True, help="How long to mirror: 30s, 5m (under 1h).")
@click.option("--id", "experiment_id", default=None, help="Its id (default: ROUTE-date-time).")
@click.option("--max-error-rate", type=float, default=None, help="Most errors, 0-1 [0.01].")
@click.option("--max-p95-ms", type=float, default=None, help="Highest p95 in ms [500].")
@click.option(
    "--max-mismatch-rate", type=float, default=None, help="Most answers that differ [0.005]."
)
@click.option("--min-requests", type=int, default=None, help="Fewest copies to judge [20].")
@click.option("--min-compared", type=int, default=None, help="Fewest comparisons to judge [20].")
@click.option(
    "--ignore",
    multiple=True,
    metavar="PATH",
    help="A JSON path whose value may differ (a.b, items.*.id); repeatable.",
)
@click.option("--percent", type=float, default=None, help="Share of requests copied [100].")
@json_option
def experiments_run(
    route: str,
    candidate_service: str | None,
    candidate_url: str | None,
    duration: str,
    experiment_id: str | None,
    max_error_rate: float | None,
    max_p95_ms: float | None,
    max_mismatch_rate: float | None,
    min_requests: int | None,
    min_compared: int | None,
    ignore: tuple[str, ...],
    percent: float | None,
    as_json: bool,
) -> None:
    """Mirror ROUTE's GET and HEAD requests to a candidate for DURATION, put the route
    back, and judge the candidate: confirmed (every threshold met), rejected (each
    threshold missed named with the value measured) or inconclusive (too little traffic).

    Exits 0 when the experiment ran, whatever its verdict; 2 for bad input (a malformed
    option, no such route, an unknown service, an id taken); 1 when it failed while
    running or the route could not be put back."""
    hypothesis = {
        name: value
        for name, value in {
            "max_error_rate": max_error_rate,
            "max_p95_ms": max_p95_ms,
            "max_mismatch_rate": max_mismatch_rate,
            "min_requests": min_requests,
            "min_compared": min_compared,
        }.items()
        if value is not None
    }
    data: dict[str, Any] = {
        "id": experiment_id if experiment_id is not None else _default_id(route),
        "route": route,
        "candidate": {
            key: value
            for key, value in (("service", candidate_service), ("url", candidate_url))
            if value is not None
        },
        "duration": duration,
        "hypothesis": hypothesis,
    }
    if ignore:
        data["compare"] = {"ignore": list(ignore)}
    if percent is not None:
        data["percent"] = percent
    try:
        spec = parse_spec(data)
    except ValidationError as invalid:
        raise _as_options(invalid) from None
    result = _run_with_progress(spec, show=not as_json)
    if as_json:
        emit_json(result.to_dict())
    else:
        _print_result(result)
    if result.restore is not None and not result.restore.ok:
        err_console.print(
            f"route {escape(result.route)} was not put back: {escape(result.restore.detail)}",
            style="red",
            highlight=False,
        )
        raise SystemExit(1)


def _run_with_progress(spec: BoundaryExperiment, *, show: bool) -> ExperimentResult:
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:.0f}/{task.total:.0f} s"),
        console=err_console,
        transient=True,
        disable=not show,
    ) as bar:
        task = bar.add_task(
            f"mirroring {escape(spec.route)} to {escape(spec.candidate.describe())}",
            total=spec.duration,
        )

        def progress(elapsed: float, duration: float) -> None:
            bar.update(task, completed=elapsed)
            if elapsed >= duration:
                bar.update(task, description="route put back; reading the windows")

        callback: ProgressCallback = progress
        return run(
            _with_store(lambda store: run_boundary_experiment(store, spec, progress=callback))
        )


@experiments.command("show")
@click.argument("experiment_id", metavar="ID")
@json_option
def experiments_show(experiment_id: str, as_json: bool) -> None:
    """One experiment's result: its verdict and reasons, the candidate's and the primary's
    figures, and how the route was put back. Exits 1 when there is no such experiment."""
    result = run(_with_store(lambda s: ExperimentStore(s).get(experiment_id), create=False))
    if as_json:
        emit_json(result.to_dict())
        return
    _print_result(result)


@experiments.command("list")
@click.option("--route", default=None, help="Only this route's experiments.")
@click.option("--limit", type=COUNT, default=100, show_default=True, help="How many, newest first.")
@json_option
def experiments_list(route: str | None, limit: int, as_json: bool) -> None:
    """The experiments, newest first."""
    found = run(
        _with_store(lambda s: ExperimentStore(s).list(route=route, limit=limit), create=False)
    )
    if as_json:
        emit_json([result.to_dict() for result in found])
        return
    table = Table("id", "route", "candidate", "started", "duration", "status", "verdict")
    for result in found:
        table.add_row(
            escape(result.id),
            escape(result.route),
            escape(result.spec.candidate.describe()),
            _when(result.started_at),
            f"{result.spec.duration:g} s",
            result.status.value,
            _verdict(result),
        )
    console.print(table)


# -- showing a result ------------------------------------------------------------------------


def _when(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))


def _verdict(result: ExperimentResult) -> str:
    if result.verdict is None:
        return "-"
    return f"[{_VERDICT_STYLE[result.verdict]}]{result.verdict.value}[/]"


def _print_result(result: ExperimentResult) -> None:
    spec = result.spec
    console.print(
        f"[bold]{escape(result.id)}[/bold]: route {escape(result.route)} mirrored to "
        f"{escape(spec.candidate.describe())} for {spec.duration:g} s, started "
        f"{_when(result.started_at)}",
        highlight=False,
    )
    console.print(f"status: {result.status.value}, verdict: {_verdict(result)}", highlight=False)
    for reason in result.reasons:
        console.print(f"  - {escape(reason)}", highlight=False)
    if result.error:
        console.print(f"error: {escape(result.error)}", style="red", highlight=False)
    if result.status is Status.COMPLETED:
        console.print(_figures_table(result))
    if result.restore is not None:
        console.print(
            f"route: {result.restore.outcome.value} ({escape(result.restore.detail)})",
            highlight=False,
        )
    for note in result.notes:
        console.print(f"note: {escape(note)}", highlight=False)


def _figures_table(result: ExperimentResult) -> Table:
    h = result.spec.hypothesis
    c, p = result.candidate, result.primary
    table = Table("", "candidate (mirrored)", "primary", "threshold")
    table.add_row("requests", str(c.requests), str(p.requests), f">= {h.min_requests}")
    table.add_row(
        "error rate", _rate(c, c.error_rate), _rate(p, p.error_rate), f"<= {h.max_error_rate:.2%}"
    )
    table.add_row("p95 ms", _ms(c.p95_ms), _ms(p.p95_ms), f"<= {h.max_p95_ms:g}")
    table.add_row("compared", str(c.compared), "", f">= {h.min_compared}")
    table.add_row(
        "mismatch rate",
        f"{c.mismatch_rate:.2%}" if c.compared else "-",
        "",
        f"<= {h.max_mismatch_rate:.2%}",
    )
    return table


def _rate(figures: Figures, rate: float) -> str:
    return f"{rate:.2%}" if figures.requests else "-"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


__all__ = ["experiments"]
