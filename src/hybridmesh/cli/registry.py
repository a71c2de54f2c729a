"""``hybridmesh registry``: validate, load, list, show, recommend, graph and export services."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from hybridmesh.cli._common import console, emit_json, err_console, get_ctx, json_option, run
from hybridmesh.core.errors import Problem
from hybridmesh.core.serialization import dumps
from hybridmesh.registry import (
    Architecture,
    RegistryCatalog,
    RegistryLoad,
    ServiceDefinition,
    ServiceRegistry,
    graph_json,
    inspect_definitions,
    problem_json,
    recommend,
    service_detail,
    to_backstage,
    to_dot,
    to_mermaid,
)
from hybridmesh.store import open_ready_store

_ARCHITECTURES = click.Choice([a.value for a in Architecture])
_path_argument = click.argument(
    "path", type=click.Path(exists=True, path_type=Path), metavar="PATH"
)
_from_option = click.option(
    "--from",
    "from_path",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="Read definitions from this YAML file or folder instead of the store.",
)


@click.group()
def registry() -> None:
    """Service definitions: validate YAML, load it into the store, inspect, export."""


async def _stored() -> list[ServiceDefinition]:
    # Only reads: nothing is written to the database, and one without the schema (or that
    # does not exist yet) holds no services.
    async with await open_ready_store(get_ctx().database_url, create=False) as store:
        return await RegistryCatalog(store).list()


def _definitions(from_path: Path | None) -> list[ServiceDefinition]:
    if from_path is not None:
        return _checked(from_path).definitions()
    return run(_stored())


@registry.command()
@_path_argument
@json_option
def validate(path: Path, as_json: bool) -> None:
    """Check the definitions under PATH. Exits 2 and names file:line and field when invalid,
    when PATH defines no service, and when its YAML passes a reading limit (file size,
    depth, aliases: see the README)."""
    result = inspect_definitions(path)
    if as_json:
        emit_json(
            {
                "valid": result.ok,
                "services": [s.definition.name for s in result.services],
                "errors": [problem_json(p) for p in result.errors],
                "warnings": [problem_json(p) for p in result.warnings],
            }
        )
    else:
        _print_problems(result.warnings, "yellow")
    if result.errors:
        if not as_json:
            _print_problems(result.errors, "red")
        raise SystemExit(2)
    if not as_json:
        console.print(
            f"[green]valid[/green]: {len(result.services)} service(s), "
            f"{len(result.warnings)} warning(s)",
            highlight=False,
        )


def _print_problems(problems: list[Problem], style: str) -> None:
    # As plain text, one per line: a field such as ``[version]`` is not rich markup, and
    # ``file:line`` must stay whole for editors that jump to it.
    for problem in problems:
        err_console.print(str(problem), style=style, markup=False, highlight=False, soft_wrap=True)


def _checked(path: Path) -> RegistryLoad:
    """The definitions under ``path``; prints every problem and exits 2 when any is an error."""
    result = inspect_definitions(path)
    _print_problems(result.warnings, "yellow")
    if result.errors:
        _print_problems(result.errors, "red")
        raise SystemExit(2)
    return result


@registry.command()
@_path_argument
@click.option("--replace", is_flag=True, help="Remove stored services that PATH does not define.")
def load(path: Path, replace: bool) -> None:
    """Validate the definitions under PATH and save them in the store (exit 2, saving
    nothing, when any is invalid or PATH defines no service)."""
    result = _checked(path)

    async def save() -> int:
        async with await open_ready_store(get_ctx().database_url) as store:
            return await RegistryCatalog(store).save(
                result.definitions(), source=str(path), replace=replace
            )

    count = run(save())
    console.print(f"loaded {count} service(s) from {path}", highlight=False)


@registry.command("list")
@click.option("--architecture", type=_ARCHITECTURES, default=None, help="Only this architecture.")
@json_option
def list_services(architecture: str | None, as_json: bool) -> None:
    """The services in the store."""
    services = [
        d for d in run(_stored()) if architecture is None or d.architecture.value == architecture
    ]
    if as_json:
        emit_json([d.model_dump(mode="json") for d in services])
        return
    table = Table("name", "architecture", "version", "owner", "lifecycle", "patterns", "base url")
    for d in services:
        table.add_row(
            d.name,
            d.architecture.value,
            d.version,
            d.owner_name,
            d.lifecycle,
            ", ".join(p.value for p in d.pattern_types()),
            d.base_url,
        )
    console.print(table)
    if not services:
        err_console.print("no services stored; run `hybridmesh registry load PATH`")


@registry.command()
@click.argument("name")
@json_option
def show(name: str, as_json: bool) -> None:
    """One service's definition, and the patterns each of its dependencies uses."""
    reg = ServiceRegistry(run(_stored()))
    detail = service_detail(reg, name)
    if as_json:
        emit_json(detail)
        return
    d = reg.get(name)
    links: list[dict[str, Any]] = detail["links"]
    console.print(f"[bold]{d.name}[/bold] ({d.architecture.value}, {d.version}) {d.base_url}")
    if d.description:
        console.print(d.description, markup=False, highlight=False)
    console.print(
        f"owner: {d.owner_name}   lifecycle: {d.lifecycle}", markup=False, highlight=False
    )
    caps = [k for k, v in d.capabilities.model_dump().items() if v]
    console.print(f"capabilities: {', '.join(caps) or '-'}", highlight=False)
    patterns = Table("pattern", "description", "use cases", title="integration patterns")
    for p in d.integration_patterns:
        patterns.add_row(p.type.value, escape(p.description), escape("; ".join(p.use_cases)))
    console.print(patterns)
    deps = Table("depends on", "type", "purpose", "patterns", title="dependencies")
    for link in links:
        deps.add_row(
            str(link["service"]),
            str(link["type"]),
            escape(str(link["purpose"])),
            ", ".join(link["patterns"]),
        )
    console.print(deps)
    consumers = Table("consumer", "type", "purpose", title="consumers")
    for c in d.consumers:
        consumers.add_row(c.service, c.type.value, escape(c.purpose))
    console.print(consumers)
    if d.resilience is not None:
        console.print(f"resilience overrides: {d.resilience.model_dump(exclude_none=True)}")


@registry.command("recommend")
@click.argument("source_architecture", type=_ARCHITECTURES)
@click.argument("target_architecture", type=_ARCHITECTURES)
@click.option("--use-case", default=None, help="What the call is for, e.g. 'nightly report'.")
@json_option
def recommend_command(
    source_architecture: str, target_architecture: str, use_case: str | None, as_json: bool
) -> None:
    """The preferred integration patterns from one architecture to another, and why."""
    rec = recommend(source_architecture, target_architecture, use_case)
    if as_json:
        emit_json(rec.to_dict())
        return
    preferred = ", ".join(p.value for p in rec.preferred)
    console.print(
        f"{rec.source.value} -> {rec.target.value}: [bold]{preferred}[/bold]\n"
        f"{rec.rationale} (rule {rec.rule})",
        highlight=False,
    )
    if rec.for_use_case is not None:
        console.print(f"for {use_case!r}: {rec.for_use_case.value}", markup=False, highlight=False)


@registry.command()
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["mermaid", "dot", "json"]),
    default="mermaid",
    show_default=True,
)
@_from_option
@click.option("--output", "-o", type=click.Path(path_type=Path), default=None, help="Write here.")
def graph(fmt: str, from_path: Path | None, output: Path | None) -> None:
    """The dependency graph as Mermaid, Graphviz dot, or JSON nodes and edges."""
    definitions = _definitions(from_path)
    if fmt == "json":
        _write(dumps(graph_json(ServiceRegistry(definitions))) + "\n", output)
    else:
        _write(to_mermaid(definitions) if fmt == "mermaid" else to_dot(definitions), output)


@registry.command()
@click.option(
    "--format", "fmt", type=click.Choice(["backstage"]), default="backstage", show_default=True
)
@_from_option
@click.option("--output", "-o", type=click.Path(path_type=Path), default=None, help="Write here.")
def export(fmt: str, from_path: Path | None, output: Path | None) -> None:
    """The services as Backstage catalog-info entities (kind Component)."""
    _write(to_backstage(_definitions(from_path)), output)


def _write(text: str, output: Path | None) -> None:
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        err_console.print(f"wrote {output}", highlight=False)


__all__ = ["registry"]
