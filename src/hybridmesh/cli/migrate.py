"""``hybridmesh migrate``: boundary migration plans, their runs and a person's controls.

``plan`` makes (or re-versions) a plan from the command line or a YAML file; ``list``,
``show``, ``status`` and ``audit`` read; ``start``, ``approve``, ``pause``, ``resume`` and
``abort`` are a person's controls; ``run`` drives one plan in the foreground and ``runner``
every running plan, as long as it runs (any number of runners share the store, one at a
time acting on a plan).
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import os
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import click
import pydantic
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from hybridmesh.cli._common import console, emit_json, err_console, get_ctx, json_option, run
from hybridmesh.core.errors import Problem, ValidationError
from hybridmesh.core.limits import describe, location
from hybridmesh.gateway.state import GatewayState
from hybridmesh.migration.overview import plan_overview, plan_status
from hybridmesh.migration.plans import (
    DEFAULT_STEPS,
    Action,
    PlanSpec,
    PrepareRoute,
    RetireBackend,
    RollbackTo,
    SetFlagRollout,
    SetWeight,
    Strategy,
    build_plan,
    located,
    parse_plans,
)
from hybridmesh.migration.runner import PlanRunner
from hybridmesh.migration.state import MigrationState, PlanRecord, Status
from hybridmesh.store import Store, open_ready_store

T = TypeVar("T")


async def _with_store(action: Callable[[Store], Awaitable[T]], *, create: bool = True) -> T:
    async with await open_ready_store(get_ctx().database_url, create=create) as store:
        return await action(store)


def _actor(given: str | None) -> str:
    if given:
        return given
    with contextlib.suppress(Exception):
        return os.environ.get("HYBRIDMESH_ACTOR") or getpass.getuser()
    return "unknown"


def _problems(problems: list[Problem]) -> None:
    for p in problems:
        err_console.print(str(p), style="red", markup=False, highlight=False, soft_wrap=True)


by_option = click.option(
    "--by", "actor", default=None, help="Who acts (default: HYBRIDMESH_ACTOR or the OS user)."
)
reason_option = click.option("--reason", default=None, help="Why, for the audit.")


@click.group()
def migrate() -> None:
    """Boundary migration plans: strangler fig, branch by abstraction and database
    decomposition, in gated steps."""


# -- making plans ----------------------------------------------------------------------------


def _percents(text: str | None, option: str) -> list[float]:
    if not text:
        return []
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise click.BadParameter(
            f"{text!r}: percents separated by commas", param_hint=option
        ) from None


@migrate.command("plan")
@click.argument("source", required=False)
@click.option(
    "--strategy",
    type=click.Choice([s.value for s in Strategy]),
    default=Strategy.STRANGLER_FIG.value,
    show_default=True,
)
@click.option("--target", "targets", multiple=True, help="A service taking over (repeatable).")
@click.option("--name", default=None, help="The plan's name (default: <source>-migration).")
@click.option(
    "--steps",
    default=None,
    help=f"Percents traffic moves through (default {','.join(f'{p:g}' for p in DEFAULT_STEPS)}).",
)
@click.option("--approve-at", default=None, help="Percents that wait for `migrate approve`.")
@click.option(
    "--rollback",
    type=click.Choice([r.value for r in RollbackTo]),
    default=RollbackTo.PREVIOUS_STEP.value,
    show_default=True,
    help="Where a failed gate or an abort takes traffic.",
)
@click.option("--interval", default=None, help="Gate interval (30s, 1m; default 60s).")
@click.option("--window", default=None, help="Monitoring window per step (default 5m).")
@click.option("--max-error-rate", type=float, default=None, help="Default 0.01 (1 %).")
@click.option("--max-p95-ms", type=float, default=None, help="Default 500.")
@click.option("--min-requests", type=int, default=None, help="Default 20.")
@click.option(
    "--file",
    "file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="A YAML plan instead of the options.",
)
@click.option(
    "--replication",
    default=None,
    help="database_decomposition: the replication (`replicate apply`) moving the data.",
)
@click.option(
    "--flag",
    default=None,
    help="database_decomposition: switch writes by this flag's variant, not a route.",
)
@click.option("--start", is_flag=True, help="Start the plan at once (a runner then drives it).")
@by_option
@json_option
def migrate_plan(
    source: str | None,
    strategy: str,
    targets: tuple[str, ...],
    name: str | None,
    steps: str | None,
    approve_at: str | None,
    rollback: str,
    interval: str | None,
    window: str | None,
    max_error_rate: float | None,
    max_p95_ms: float | None,
    min_requests: int | None,
    file: Path | None,
    replication: str | None,
    flag: str | None,
    start: bool,
    actor: str | None,
    as_json: bool,
) -> None:
    """Make a plan moving SOURCE's traffic to the --target services (or read --file).

    Each target needs a gateway route (by default named after it) whose backends are the
    source's and the target's. The same plan again changes nothing; a changed one is stored
    as a new version, unless a run of it is under way.
    """
    if file is not None:
        if source or targets:
            raise click.UsageError("give either --file or SOURCE with --target, not both")
        loaded = _read_file(file)
    else:
        if not source or not targets:
            raise click.UsageError("give SOURCE and at least one --target (or --file)")
        criteria = {
            key: value
            for key, value in (
                ("interval", interval),
                ("window", window),
                ("max_error_rate", max_error_rate),
                ("max_p95_ms", max_p95_ms),
                ("min_requests", min_requests),
            )
            if value is not None
        }
        target: dict[str, Any] = {}
        if steps:
            target["steps"] = _percents(steps, "--steps")
        if approve_at:
            target["approve_at"] = _percents(approve_at, "--approve-at")
        if replication:
            target["replication"] = replication
        if flag:
            target["flag"] = flag
        data = {
            "name": name or f"{source}-migration",
            "source": source,
            "strategy": strategy,
            "rollback": rollback,
            "criteria": criteria,
            "targets": [{"service": t, **target} for t in targets],
        }
        try:
            loaded = [PlanSpec.model_validate(data)]
        except pydantic.ValidationError as invalid:
            raise ValidationError(
                [
                    Problem(describe(error), field=".".join(map(str, location(error))) or None)
                    for error in invalid.errors()
                ]
            ) from None

    async def save(store: Store) -> list[tuple[PlanRecord, bool]]:
        gateway, state = GatewayState(store), MigrationState(store)
        routes = {s.route.name: s.route for s in await gateway.routes()}
        saved = []
        for item in loaded:
            spec = item if isinstance(item, PlanSpec) else item.spec
            try:
                plan = build_plan(spec, routes)
            except ValidationError as invalid:
                if isinstance(item, PlanSpec):
                    raise
                raise located(invalid, item) from None
            record, changed = await state.save(plan, actor=_actor(actor))
            if start and record.status is Status.PENDING:
                record = await state.control(plan.name, "start", actor=_actor(actor), reason=None)
            saved.append((record, changed))
        return saved

    saved = run(_with_store(save))
    if as_json:
        emit_json([{**r.to_dict(), "changed": changed} for r, changed in saved])
        return
    for record, changed in saved:
        what = f"stored as version {record.version}" if changed else "unchanged"
        console.print(
            f"plan {escape(record.name)}: {what}, {len(record.plan.steps)} steps, "
            f"{record.status.value}",
            highlight=False,
        )
        _draw_steps(record)


def _read_file(path: Path) -> list[Any]:
    try:
        return list(parse_plans(path.read_bytes(), str(path)))
    except ValidationError as invalid:
        _problems(invalid.problems)
        raise SystemExit(2) from None


# -- reading ---------------------------------------------------------------------------------


def _mark(record: PlanRecord, index: int) -> str:
    if record.status is Status.COMPLETED or index < record.step:
        return "[green]✓[/green]"
    if index > record.step:
        return "·"
    return {
        Status.RUNNING: "[cyan]▶[/cyan]",
        Status.WAITING_APPROVAL: "[yellow]⏸ approve[/yellow]",
        Status.PAUSED: "[yellow]⏸[/yellow]",
        Status.ABORTING: "[red]↩[/red]",
        Status.ROLLED_BACK: "[red]✗ rolled back[/red]",
        Status.ABORTED: "[red]✗ aborted[/red]",
        Status.PENDING: "·",
    }.get(record.status, "·")


def _action_text(action: Action) -> str:
    if isinstance(action, SetWeight):
        return f"{action.backend} → {action.percent:g}%"
    if isinstance(action, PrepareRoute):
        return f"{action.target_backend} at 0% beside {action.source_backend}"
    if isinstance(action, RetireBackend):
        return f"remove {action.backend}"
    if isinstance(action, SetFlagRollout):
        return f"flag {action.flag}: {action.variant} → {action.percent:g}%"
    return "measure only"


def _draw_steps(record: PlanRecord) -> None:
    """A line per step: where the plan stands on it, what it does, what it waits for."""
    for index, step in enumerate(record.plan.steps):
        gate = step.gate
        parts = ["waits for approval"] if step.approval else []
        if gate is not None:
            parts.append(
                f"gate: errors < {gate.max_error_rate:.2%}, p95 < {gate.max_p95_ms:g} ms, "
                f"≥ {gate.min_requests} requests, {gate.window:g} s window every "
                f"{gate.interval:g} s"
            )
        console.print(
            f"{_mark(record, index)} {index + 1:>2}. [bold]{escape(step.name)}[/bold] "
            f"[dim]{step.type.value}[/dim]: {escape(_action_text(step.action))}"
            + (f"; {escape('; '.join(parts))}" if parts else ""),
            highlight=False,
            soft_wrap=True,
        )


def _print_status(view: dict[str, Any]) -> Table:
    table = Table(box=None, show_header=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("plan", f"{view['name']} (version {view['version']})")
    table.add_row("status", view["status"] + (f": {view['reason']}" if view["reason"] else ""))
    step_text = f"{min(view['step'] + 1, view['steps'])} of {view['steps']}"
    if view.get("step_name"):
        step_text += f" ({view['step_name']}, {view['phase']})"
    table.add_row("step", step_text)
    if "weights" in view:
        table.add_row(
            "weights",
            f"{view['route']}: " + ", ".join(f"{k} {v:g}%" for k, v in view["weights"].items()),
        )
    last = view.get("last_measurement") or {}
    thresholds = view.get("thresholds")
    if thresholds:
        if "error" in last:
            table.add_row("gate", f"could not measure: {last['error']}")
        elif last:
            p95 = last.get("p95_ms")
            table.add_row(
                "gate",
                f"error rate {last['error_rate']:.2%} (< {thresholds['max_error_rate']:.2%}), "
                f"p95 {'-' if p95 is None else f'{p95:.0f} ms'} "
                f"(< {thresholds['max_p95_ms']:g} ms), {last['requests']} requests "
                f"(≥ {thresholds['min_requests']}): {last['verdict']}",
            )
        else:
            table.add_row("gate", "no measurement yet")
        m = view["measurements"]
        table.add_row(
            "window",
            f"{m['taken']} measurements: {m['passed']} passed, {m['failed']} failed, "
            f"{m['inconclusive']} inconclusive"
            + (
                f"; {view['window_left_seconds']:g} s left" if "window_left_seconds" in view else ""
            ),
        )
    return table


async def _load_view(store: Store, name: str) -> dict[str, Any]:
    return await plan_status(store, name)


@migrate.command("list")
@json_option
def migrate_list(as_json: bool) -> None:
    """List the plans and where each stands."""
    records = run(_with_store(lambda s: MigrationState(s).plans(), create=False))
    if as_json:
        emit_json([r.to_dict() for r in records])
        return
    if not records:
        console.print("no migration plans")
        return
    table = Table(box=None, header_style="bold")
    table.add_column("plan", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("step", no_wrap=True, justify="right")
    table.add_column("at", overflow="fold")
    for r in records:
        steps = len(r.plan.steps)
        at = r.plan.steps[r.step].name if r.step < steps else "done"
        table.add_row(
            escape(r.name), r.status.value, f"{min(r.step + 1, steps)}/{steps}", escape(at)
        )
    console.print(table)


@migrate.command("show")
@click.argument("plan")
@json_option
def migrate_show(plan: str, as_json: bool) -> None:
    """Draw PLAN's steps and where it stands; with --json, also its history: each shift of
    traffic, each gate's verdicts and its backend's figures over time, and its audit."""
    if as_json:
        emit_json(run(_with_store(lambda s: plan_overview(s, plan), create=False)))
        return
    record = run(_with_store(lambda s: MigrationState(s).get(plan), create=False))
    spec = record.plan.spec
    console.print(
        f"[bold]{escape(record.name)}[/bold] (version {record.version}): "
        f"{escape(spec.source)} → {escape(', '.join(t.service for t in spec.targets) or '-')} "
        f"by {spec.strategy.value}, rollback to {spec.rollback.value.replace('_', ' ')}; "
        f"{record.status.value}" + (f": {escape(record.reason)}" if record.reason else ""),
        highlight=False,
    )
    _draw_steps(record)


@migrate.command("status")
@click.argument("plan")
@click.option("--watch", is_flag=True, help="Refresh every second until Ctrl-C or the end.")
@json_option
def migrate_status(plan: str, watch: bool, as_json: bool) -> None:
    """PLAN's current step, its weights, the gate against its thresholds, and the time
    left in its monitoring window."""
    if not watch:
        view = run(_with_store(lambda s: _load_view(s, plan), create=False))
        if as_json:
            emit_json(view)
        else:
            console.print(_print_status(view))
        return

    async def watching(store: Store) -> None:
        view = await _load_view(store, plan)
        with Live(_print_status(view), console=console, refresh_per_second=4) as live:
            while not Status(view["status"]).ended:
                await asyncio.sleep(1)
                view = await _load_view(store, plan)
                live.update(_print_status(view))
                if as_json:
                    emit_json(view)

    with contextlib.suppress(KeyboardInterrupt):
        run(_with_store(watching, create=False))


@migrate.command("audit")
@click.argument("plan")
@click.option("--limit", type=click.IntRange(1, 10_000), default=200, show_default=True)
@json_option
def migrate_audit(plan: str, limit: int, as_json: bool) -> None:
    """Every action on PLAN: who, what, when and why."""
    entries = run(_with_store(lambda s: MigrationState(s).audit(plan, limit), create=False))
    if as_json:
        emit_json([e.to_dict() for e in entries])
        return
    table = Table(box=None, header_style="bold")
    for column in ("when", "who", "what", "step", "why"):
        table.add_column(column)
    for e in entries:
        table.add_row(
            time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e.at)),
            escape(e.actor),
            escape(e.action),
            "" if e.step is None else str(e.step + 1),
            escape(e.reason or ""),
        )
    console.print(table)


# -- a person's controls ---------------------------------------------------------------------


def _control(action: str, help_text: str) -> None:
    @migrate.command(action, help=help_text)
    @click.argument("plan")
    @reason_option
    @by_option
    @json_option
    def command(plan: str, reason: str | None, actor: str | None, as_json: bool) -> None:
        record = run(
            _with_store(
                lambda s: MigrationState(s).control(
                    plan, action, actor=_actor(actor), reason=reason
                )
            )
        )
        if as_json:
            emit_json(record.to_dict())
            return
        console.print(
            f"plan {escape(plan)}: {record.status.value}"
            + (f" ({escape(record.reason)})" if record.reason else ""),
            highlight=False,
        )


_control("start", "Start PLAN: a runner (`migrate runner` or `migrate run`) then drives it.")
_control("approve", "Let PLAN's current step go ahead (a step that waits for a person).")
_control("pause", "Stop PLAN where it is, traffic as it stands, until `migrate resume`.")
_control("resume", "Go on with a paused PLAN (a step being monitored starts a new window).")
_control("abort", "Roll PLAN back as its rollback strategy says, and end it.")


# -- runners ---------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def _publishing(store: Store, stop: asyncio.Event) -> AsyncIterator[None]:
    """Publish the plans' audit events (queued in the outbox with each action) to the
    event bus the settings name, while the runner runs, and what is left at its end; and
    run the replications that data steps ask to run (unless another process runs them)."""
    from hybridmesh.data.runner import DataSupervisor
    from hybridmesh.events import OutboxRelay, open_bus

    bus = await open_bus(get_ctx().settings, store=store)
    relay = OutboxRelay(store, bus)
    task = asyncio.create_task(relay.run(stop), name="migration:events")
    data = asyncio.create_task(DataSupervisor(store, bus=bus).run(stop), name="migration:data")
    try:
        yield
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await task
        with contextlib.suppress(Exception):
            await data
        with contextlib.suppress(Exception):
            while await relay.relay_once():
                pass
        await bus.close()


def _on_signals(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    """Ctrl-C and SIGTERM stop the runner after its current tick (not possible, and not
    needed, when the command runs off the main thread, as in tests)."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(RuntimeError, NotImplementedError, ValueError):
            loop.add_signal_handler(sig, stop.set)


@migrate.command("run")
@click.argument("plan")
@click.option("--lease", type=float, default=15.0, show_default=True, help="Lease seconds.")
@by_option
@json_option
def migrate_run(plan: str, lease: float, actor: str | None, as_json: bool) -> None:
    """Start PLAN if it is pending and drive it in the foreground until it ends or waits
    for a person (exit 1 when it was rolled back)."""

    async def drive(store: Store) -> PlanRecord:
        state = MigrationState(store)
        record = await state.get(plan)
        if record.status is Status.PENDING:
            await state.control(plan, "start", actor=_actor(actor), reason=None)
        runner = PlanRunner(store, lease_seconds=lease)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        _on_signals(loop, stop)
        task = asyncio.create_task(runner.run(stop, only=plan))
        async with _publishing(store, asyncio.Event()):
            with console.status(f"plan {plan}") as status:
                while not task.done():
                    await asyncio.wait({task}, timeout=0.5)
                    view = await _load_view(store, plan)
                    status.update(
                        f"plan {plan}: step {min(view['step'] + 1, view['steps'])}/"
                        f"{view['steps']} {view.get('step_name') or ''} ({view['status']})"
                    )
            task.result()
        return await state.get(plan)

    record = run(_with_store(drive))
    if as_json:
        emit_json(record.to_dict())
    else:
        console.print(
            f"plan {escape(plan)}: {record.status.value}"
            + (f" ({escape(record.reason)})" if record.reason else ""),
            highlight=False,
        )
    if record.status in (Status.ROLLED_BACK, Status.ABORTED):
        raise SystemExit(1)


@migrate.command("runner")
@click.option("--lease", type=float, default=15.0, show_default=True, help="Lease seconds.")
def migrate_runner(lease: float) -> None:
    """Drive every running plan until interrupted; any number of runners share the store,
    and one that dies is replaced by another within its lease. The plans' audit events are
    published to the event bus (HYBRIDMESH_EVENTS_URL, or the SQL log in the store), and
    the replications data steps ask for run here unless another process runs them."""

    async def serve(store: Store) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        _on_signals(loop, stop)
        runner = PlanRunner(store, lease_seconds=lease)
        console.print(f"migration runner {runner.owner} started", highlight=False)
        async with _publishing(store, asyncio.Event()):
            await runner.run(stop)

    run(_with_store(serve))


__all__ = ["migrate"]
