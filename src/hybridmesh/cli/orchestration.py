"""``hybridmesh definitions|saga|workflow|executions|worker``: durable sagas and workflows.

``saga start`` and ``workflow start`` record an execution and, unless ``--detach``, drive it
to its end in this process (the embedded mode has no separate worker). ``worker`` runs the
engine, the batch scheduler and the function triggers until SIGTERM or Ctrl-C, then lets the
steps in flight finish and releases what it holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.markup import escape
from rich.table import Table

from hybridmesh.cli._common import (
    COUNT,
    GRACE_SECONDS,
    SECONDS,
    VERSION,
    WAIT_SECONDS,
    console,
    emit_json,
    err_console,
    get_ctx,
    json_option,
    run,
)
from hybridmesh.core.errors import NotFoundError, Problem, ValidationError
from hybridmesh.core.serialization import JSONNumberError, json_problems, loads_input
from hybridmesh.core.yaml_source import YamlReader

T = TypeVar("T")

_STATUS_STYLE = {
    "running": "cyan",
    "compensating": "yellow",
    "completed": "green",
    "compensated": "yellow",
    "failed": "red",
    "compensation_failed": "bold red",
    "cancelled": "magenta",
}

_definitions_option = click.option(
    "--definitions",
    "definitions_path",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="Load (and register) saga and workflow definitions from this file or folder first.",
)

_services_option = click.option(
    "--services",
    "services_path",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="Read the service definitions from this file or folder instead of the registry "
    "stored by `hybridmesh registry load`.",
)

#: Said after "unknown service" errors when the services came from the stored registry.
SERVICES_HINT = (
    "the services are looked up in the registry stored by `hybridmesh registry load`: "
    "run `hybridmesh registry load PATH` first, or pass --services PATH"
)


def _hinted(problems: list[Problem]) -> list[Problem]:
    """``problems``, and how to name the services when a service was unknown."""
    if any(p.message.startswith("unknown service") for p in problems):
        return [*problems, Problem(SERVICES_HINT)]
    return problems


async def _load_definitions(runtime: Any, path: Path, services: Path | None) -> list[Any]:
    """Register the definitions at ``path``; unknown services say how to name them."""
    try:
        return list(await runtime.load_definitions(path))
    except ValidationError as invalid:
        if services is not None:
            raise
        raise ValidationError(_hinted(invalid.problems)) from None


def _registry_from(path: Path | None) -> Any:
    """The registry read from the service definitions at ``path``; None: the stored one."""
    if path is None:
        return None
    from hybridmesh.registry import ServiceRegistry

    return ServiceRegistry.from_path(path)


async def _with_runtime(
    work: Callable[[Any], Awaitable[T]],
    *,
    definitions: Path | None = None,
    events: bool = True,
    functions: str | None = None,
    services: Path | None = None,
    create: bool = True,
) -> T:
    """Run ``work`` on a runtime opened from the CLI's settings. Commands that only read pass
    ``create=False``: they write nothing to the database (a missing one, or one without the
    schema, reads as empty; see :func:`~hybridmesh.store.open_ready_store`)."""
    from hybridmesh.runtime import Runtime

    registry = _registry_from(services)
    runtime = await Runtime.open(
        get_ctx().settings, events=events, registry=registry, create=create
    )
    try:
        if functions is not None:
            runtime.use_functions(functions)
        if definitions is not None:
            await _load_definitions(runtime, definitions, services)
        return await work(runtime)
    finally:
        await runtime.close()


def _read_input(path: Path | None) -> dict[str, Any]:
    """The execution's input from a JSON or YAML file ('-': standard input), read within
    the limits of every YAML input (see :mod:`hybridmesh.core.yaml_source`)."""
    if path is None:
        return {}
    name = "<stdin>" if str(path) == "-" else str(path)
    reader = YamlReader()
    if name == "<stdin>":
        most = reader.limits.max_file_bytes
        raw = sys.stdin.buffer.read(most + 1)
        if len(raw) > most:
            raise ValidationError([Problem(f"more than {most} bytes: refused", file=name)])
    else:
        try:
            raw = reader.read_bytes(path)
        except ValidationError as unreadable:
            problems = unreadable.problems
            raise ValidationError(
                [
                    replace(p, message=p.message.replace("cannot read:", "cannot read the input:"))
                    for p in problems
                ]
            ) from None
    if raw.lstrip().startswith((b"{", b"[")):
        try:
            data = loads_input(raw)
        except JSONNumberError as error:
            problems = [
                Problem(what, file=name, field=where or None) for where, what in error.problems
            ]
            raise ValidationError(problems) from None
        except ValueError as error:
            raise ValidationError([Problem(f"not valid JSON: {error}", file=name)]) from None
    else:
        documents = reader.parse(raw, name)
        if len(documents) > 1:
            line = documents[1].lines.line
            raise ValidationError([Problem("expected one YAML document", file=name, line=line)])
        data = documents[0].data if documents else None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValidationError([Problem("the input must be a mapping (a JSON object)", file=name)])
    unfit = json_problems(data)
    if unfit:
        raise ValidationError([Problem(what, file=name, field=where) for where, what in unfit])
    return data


_functions_option = click.option(
    "--functions",
    "functions_spec",
    metavar="MODULE:CALLABLE",
    default=None,
    help="Call CALLABLE(functions, triggers) to register the serverless functions steps use.",
)

# -- definitions ---------------------------------------------------------------------------


@click.group()
def definitions() -> None:
    """Saga and workflow definitions: validate, register (versioned), list, retire."""


@definitions.command("validate")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@_services_option
@json_option
def validate_definitions(path: Path, services_path: Path | None, as_json: bool) -> None:
    """Check the definitions in PATH against the registry (the stored one, or the services
    read from --services, which writes nothing); exit 2 on errors, when PATH defines
    nothing, and when its YAML passes a reading limit (see the README)."""
    from hybridmesh.orchestration.loader import load_definitions

    async def check(runtime: Any) -> Any:
        return load_definitions(path, registry=runtime.registry)

    if services_path is not None:
        loaded = load_definitions(path, registry=_registry_from(services_path))
    else:
        loaded = run(_with_runtime(check, events=False, create=False))
        loaded.errors = _hinted(loaded.errors)
    if as_json:
        emit_json(
            {
                "ok": loaded.ok,
                "definitions": [
                    {"file": d.file, "line": d.line, "name": _name(d.definition)}
                    for d in loaded.definitions
                ],
                "errors": [_problem(p) for p in loaded.errors],
                "warnings": [_problem(p) for p in loaded.warnings],
            }
        )
        if not loaded.ok:
            raise SystemExit(2)
        return
    for warning in loaded.warnings:
        err_console.print(f"[yellow]{escape(str(warning))}[/yellow]")
    loaded.raise_for_errors()
    console.print(f"{len(loaded.definitions)} definitions are valid", highlight=False)


@definitions.command("load")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@json_option
def load_definitions_command(path: Path, as_json: bool) -> None:
    """Validate the definitions in PATH and register each as a version (a changed
    definition gets a new version; running executions keep theirs). Exit 2, registering
    nothing, when any is invalid or PATH defines nothing."""

    async def load(runtime: Any) -> list[Any]:
        return list(await runtime.load_definitions(path))

    plans = run(_with_runtime(load, events=False))
    if as_json:
        emit_json([{"kind": p.kind.value, "name": p.name, "version": p.version} for p in plans])
        return
    for plan in plans:
        console.print(f"{plan.kind.value} {plan.name} v{plan.version}", highlight=False)


@definitions.command("list")
@json_option
def list_definitions(as_json: bool) -> None:
    """Every registered version of every definition."""

    async def entries(runtime: Any) -> list[Any]:
        return list(await runtime.catalog.list())

    found = run(_with_runtime(entries, events=False, create=False))
    if as_json:
        emit_json([_entry(e) for e in found])
        return
    table = Table("kind", "name", "version", "registered", "source", "retired")
    for entry in found:
        data = _entry(entry)
        table.add_row(
            data["kind"],
            data["name"],
            str(data["version"]),
            data["created_at"],
            escape(data["source"]),
            data["retired_at"] or "",
        )
    console.print(table)


@definitions.command("retire")
@click.argument("name")
@click.option("--version", "version", type=VERSION, required=True, help="The version to retire.")
@click.option(
    "--kind",
    type=click.Choice(["saga", "workflow"]),
    default=None,
    help="Which, when NAME is both a saga type and a workflow id.",
)
@json_option
def retire_definition(name: str, version: int, kind: str | None, as_json: bool) -> None:
    """Retire version N of the saga type or workflow NAME: it starts no new executions, and
    new ones use the newest version that is not retired; executions under way finish on
    it. For a version that must not run any more, such as one an older release stored
    that cannot run. Retiring again changes nothing."""
    from hybridmesh.orchestration.plan import Kind

    async def retire(runtime: Any) -> tuple[Any, int | None]:
        catalog = runtime.catalog
        kinds = [Kind(kind)] if kind else [k for k in Kind if await catalog.versions(k, name)]
        if len(kinds) > 1:
            raise click.UsageError(
                f"{name!r} is both a saga type and a workflow id: say which with --kind"
            )
        if not kinds:
            raise NotFoundError(f"no saga or workflow {name!r} in the catalog")
        entry = await catalog.retire(kinds[0], name, version)
        live = [e.version for e in await catalog.versions(kinds[0], name) if not e.retired_at]
        return entry, max(live, default=None)

    entry, current = run(_with_runtime(retire, events=False))
    if as_json:
        emit_json({**_entry(entry), "current_version": current})
        return
    what = f"{entry.kind.value} {entry.name}"
    then = (
        f"new executions use v{current}"
        if current is not None
        else "no version is left to start: load a fixed definition"
    )
    console.print(f"retired {escape(what)} v{entry.version}; {then}", highlight=False)


def _entry(entry: Any) -> dict[str, Any]:
    created = getattr(entry, "created_at", None)
    retired = getattr(entry, "retired_at", None)
    return {
        "kind": str(getattr(entry.kind, "value", entry.kind)),
        "name": entry.name,
        "version": entry.version,
        "created_at": created.isoformat() if created is not None else "",
        "source": getattr(entry, "source", None) or "",
        "retired_at": retired.isoformat() if retired is not None else None,
    }


def _name(definition: Any) -> str:
    return str(getattr(definition, "saga_type", None) or getattr(definition, "workflow_id", ""))


def _problem(problem: Problem) -> dict[str, Any]:
    return {
        "file": problem.file,
        "line": problem.line,
        "field": problem.field,
        "message": problem.message,
    }


# -- starting ------------------------------------------------------------------------------


def _start_options(function: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(
        [
            click.option(
                "--input",
                "input_path",
                type=click.Path(allow_dash=True, path_type=Path),
                default=None,
                help="The execution's input: a JSON or YAML file, '-' for standard input.",
            ),
            click.option("--id", "execution_id", default=None, help="The execution id."),
            click.option(
                "--version",
                type=VERSION,
                default=None,
                help="Definition version (default: the newest that is not retired).",
            ),
            click.option(
                "--detach",
                is_flag=True,
                help="Only record the execution; a `hybridmesh worker` runs it.",
            ),
            click.option(
                "--timeout",
                type=WAIT_SECONDS,
                default=600.0,
                show_default=True,
                help="Seconds to wait for the end (without --detach).",
            ),
            _definitions_option,
            _services_option,
            _functions_option,
            json_option,
        ]
    ):
        function = option(function)
    return function


@click.group()
def saga() -> None:
    """Start sagas (steps in order; compensation in reverse on failure)."""


@saga.command("start")
@click.argument("saga_type", metavar="TYPE")
@_start_options
def start_saga(saga_type: str, **options: Any) -> None:
    """Start a saga of TYPE; print its id and, unless --detach, how it ended."""
    _start("saga", saga_type, **options)


@click.group()
def workflow() -> None:
    """Start workflows (DAG steps, run as their dependencies complete)."""


@workflow.command("start")
@click.argument("workflow_id", metavar="ID")
@_start_options
def start_workflow(workflow_id: str, **options: Any) -> None:
    """Start the workflow ID; print its id and, unless --detach, how it ended."""
    _start("workflow", workflow_id, **options)


def _start(
    kind: str,
    name: str,
    *,
    input_path: Path | None,
    execution_id: str | None,
    version: int | None,
    detach: bool,
    timeout: float,
    definitions_path: Path | None,
    services_path: Path | None,
    functions_spec: str | None,
    as_json: bool,
) -> None:
    data = _read_input(input_path)

    async def go(runtime: Any) -> Any:
        engine = runtime.engine
        if detach:
            return await engine.start(kind, name, data, execution_id=execution_id, version=version)
        await engine.start_worker()
        started = await engine.start(kind, name, data, execution_id=execution_id, version=version)
        if as_json:
            return await engine.wait(started, timeout=timeout)
        with console.status(f"{kind} {name}: {started}", spinner="dots") as status:
            waiting = asyncio.ensure_future(engine.wait(started, timeout=timeout))
            while not waiting.done():
                execution = await engine.get(started)
                done = sum(1 for s in execution.steps if s.status == "completed")
                status.update(
                    f"{kind} {name} {started}: {execution.status.value}, "
                    f"{done}/{len(execution.steps)} steps completed"
                )
                await asyncio.wait([waiting], timeout=0.2)
            return waiting.result()

    try:
        result = run(
            _with_runtime(
                go, definitions=definitions_path, functions=functions_spec, services=services_path
            )
        )
    except TimeoutError:
        raise click.ClickException(
            f"the {kind} did not end within {timeout:g} s; it goes on in any worker"
        ) from None
    if isinstance(result, str):
        if as_json:
            emit_json({"id": result, "status": "running"})
        else:
            console.print(f"started {kind} {name}: {result}", highlight=False)
        return
    if as_json:
        emit_json(result.to_dict())
    else:
        _print_execution(result)
    if result.status.value not in ("completed",):
        raise SystemExit(1)


# -- executions ----------------------------------------------------------------------------


@click.group()
def executions() -> None:
    """List, inspect and cancel saga and workflow executions."""


@executions.command("list")
@click.option(
    "--status",
    type=click.Choice(list(_STATUS_STYLE)),
    default=None,
    help="Only executions in this status.",
)
@click.option("--kind", type=click.Choice(["saga", "workflow"]), default=None)
@click.option("--name", default=None, help="Only executions of this definition.")
@click.option("--limit", type=COUNT, default=50, show_default=True)
@json_option
def list_executions(
    status: str | None, kind: str | None, name: str | None, limit: int, as_json: bool
) -> None:
    """Executions, newest first."""

    async def fetch(runtime: Any) -> list[Any]:
        return list(
            await runtime.engine.executions(status=status, kind=kind, name=name, limit=limit)
        )

    found = run(_with_runtime(fetch, events=False, create=False))
    if as_json:
        emit_json([execution.to_dict() for execution in found])
        return
    table = Table("id", "kind", "definition", "status", "steps", "started", "error")
    for execution in found:
        done = sum(1 for s in execution.steps if s.status == "completed")
        style = _STATUS_STYLE.get(execution.status.value, "")
        table.add_row(
            execution.id,
            execution.kind,
            f"{execution.name} v{execution.version}",
            f"[{style}]{execution.status.value}[/{style}]" if style else execution.status.value,
            f"{done}/{len(execution.steps)}",
            execution.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            escape(execution.error or ""),
        )
    console.print(table)


@executions.command("show")
@click.argument("execution_id", metavar="ID")
@json_option
def show_execution(execution_id: str, as_json: bool) -> None:
    """One execution: its steps, then its history as a timeline."""

    async def fetch(runtime: Any) -> tuple[Any, list[Any]]:
        execution = await runtime.engine.get(execution_id)
        return execution, list(await runtime.engine.history(execution_id))

    execution, history = run(_with_runtime(fetch, events=False, create=False))
    if as_json:
        emit_json({**execution.to_dict(), "history": [h.to_dict() for h in history]})
        return
    _print_execution(execution)
    timeline = Table("#", "time", "event", "step", "attempt", "details", title="history")
    started = history[0].at if history else execution.created_at
    for event in history:
        offset = (event.at - started).total_seconds()
        timeline.add_row(
            str(event.seq),
            f"+{offset:.3f}s",
            event.type,
            event.step_id or "",
            "" if event.attempt is None else str(event.attempt),
            escape(_details(event.data)),
        )
    console.print(timeline)


@executions.command("cancel")
@click.argument("execution_id", metavar="ID")
@click.option("--reason", default="cancelled by request", show_default=True)
def cancel_execution(execution_id: str, reason: str) -> None:
    """Ask a running execution to stop (a saga compensates first); a worker applies it."""

    async def cancel(runtime: Any) -> Any:
        return await runtime.engine.cancel(execution_id, reason)

    run(_with_runtime(cancel, events=False))
    console.print(f"cancel requested for {execution_id}", highlight=False)


def _print_execution(execution: Any) -> None:
    style = _STATUS_STYLE.get(execution.status.value, "")
    console.print(
        f"{execution.kind} {escape(execution.name)} v{execution.version} {execution.id}: "
        f"[{style}]{execution.status.value}[/{style}]"
    )
    if execution.error:
        console.print(f"  error: {escape(execution.error)}", highlight=False)
    table = Table("step", "status", "attempts", "compensation", "error")
    for step in execution.steps:
        table.add_row(
            step.step_id,
            step.status,
            str(step.attempt),
            "" if step.compensation in (None, "none") else step.compensation,
            escape(step.compensation_error or step.error or ""),
        )
    console.print(table)


def _details(data: Any) -> str:
    if not data:
        return ""
    if isinstance(data, dict):
        parts = [f"{key}={value}" for key, value in data.items() if key != "input"]
        return ", ".join(parts)[:120]
    return str(data)[:120]


# -- the worker ----------------------------------------------------------------------------


@click.command()
@click.option(
    "--max-executions",
    type=COUNT,
    default=200,
    show_default=True,
    help="Executions this worker drives at once.",
)
@click.option(
    "--lease",
    type=SECONDS,
    default=30.0,
    show_default=True,
    help="Seconds an execution stays with this worker without renewal (after a crash, "
    "another worker takes it over then).",
)
@click.option(
    "--grace",
    type=GRACE_SECONDS,
    default=30.0,
    show_default=True,
    help="On SIGTERM, seconds to let steps in flight finish before releasing them.",
)
@click.option("--worker-id", default=None, help="This worker's name in leases and logs.")
@_functions_option
@click.option(
    "--batch-targets",
    "batch_targets_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    envvar="HYBRIDMESH_BATCH_TARGETS",
    default=None,
    help="YAML file of legacy batch targets: formats, cron schedules, limits, endpoints "
    "(env HYBRIDMESH_BATCH_TARGETS).",
)
@_definitions_option
@_services_option
def worker(
    max_executions: int,
    lease: float,
    grace: float,
    worker_id: str | None,
    functions_spec: str | None,
    batch_targets_path: Path | None,
    definitions_path: Path | None,
    services_path: Path | None,
) -> None:
    """Run sagas and workflows (shared with other workers through leases), flush legacy
    batches on their schedules, run function triggers, and publish the engine's events,
    until SIGTERM or Ctrl-C."""
    from hybridmesh.batch import load_batch_targets

    targets = load_batch_targets(batch_targets_path) if batch_targets_path else []
    run(
        _work(
            max_executions,
            lease,
            grace,
            worker_id,
            functions_spec,
            definitions_path,
            targets,
            services_path,
        )
    )


async def _work(
    max_executions: int,
    lease: float,
    grace: float,
    worker_id: str | None,
    functions_spec: str | None,
    definitions_path: Path | None,
    batch_targets: list[Any],
    services_path: Path | None,
) -> None:
    from hybridmesh.core.process import tune_gc
    from hybridmesh.observability import configure_logging, configure_tracing, shutdown_tracing
    from hybridmesh.runtime import Runtime

    settings = get_ctx().settings
    configure_logging(settings)
    configure_tracing(settings)
    runtime = await Runtime.open(
        settings,
        worker_id=worker_id,
        max_executions=max_executions,
        lease_seconds=lease,
        batch_targets=batch_targets,
        registry=_registry_from(services_path),
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        if definitions_path is not None:
            for plan in await _load_definitions(runtime, definitions_path, services_path):
                console.print(f"loaded {plan.kind.value} {plan.name} v{plan.version}")
        if functions_spec is not None:
            runtime.use_functions(functions_spec)
        if runtime.bus is not None:
            await runtime.bus.start()
        tune_gc()  # after start-up: what it loaded stays, and is frozen
        await runtime.engine.start_worker()
        await runtime.triggers.start()
        runtime.batch.start()
        console.print(
            f"worker {runtime.engine.worker_id} running (SIGTERM or Ctrl-C to stop)",
            highlight=False,
        )
        await stop.wait()
        console.print("stopping: finishing the steps in flight", highlight=False)
        await runtime.engine.stop(grace=grace)
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(signum)
        await runtime.close()
        shutdown_tracing()


__all__ = ["definitions", "executions", "saga", "worker", "workflow"]
