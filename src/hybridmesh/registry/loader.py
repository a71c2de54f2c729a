"""Load service definitions from YAML, with errors that name the file, the line and the field.

A path is a file or a folder (every ``*.yaml`` / ``*.yml`` in it, recursively, in name
order). A file holds one service (a mapping), several (a list, a ``services:`` list, or
several YAML documents), or nothing.

Errors stop the load: bad YAML, an unknown architecture or pattern type, a missing required
field, an unknown key, a malformed URL, a duplicate name, a dependency or consumer that is
not registered. Warnings do not: a dependency that the other side does not list as a
consumer (and the reverse), and cycles of synchronous dependencies.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydantic

from hybridmesh.core.errors import Problem, ValidationError
from hybridmesh.core.yaml_source import Location, line_of, lines_under, read_yaml, yaml_files
from hybridmesh.registry.models import ALL_SERVICES, DependencyType, ServiceDefinition


@dataclass(frozen=True)
class LoadedService:
    """A definition and where it was written."""

    definition: ServiceDefinition
    file: str
    line: int
    lines: dict[Location, int] = field(default_factory=dict, compare=False, repr=False)

    def line_of(self, *loc: str | int) -> int:
        """The line of a field inside this definition (the service's line if unknown)."""
        return line_of(self.lines, loc) or self.line


@dataclass
class RegistryLoad:
    """What a load found: the valid services, the errors and the consistency warnings."""

    services: list[LoadedService] = field(default_factory=list)
    errors: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def definitions(self) -> list[ServiceDefinition]:
        return [s.definition for s in self.services]


def _entries(
    document: Any, lines: dict[Location, int], file: str, errors: list[Problem]
) -> Iterator[tuple[Any, Location]]:
    """The service mappings of one YAML document, each with its location prefix."""
    if document is None:
        return
    if isinstance(document, dict) and "services" in document and "name" not in document:
        items = document["services"]
        if not isinstance(items, list):
            errors.append(
                Problem(
                    "'services' must be a list", file, line_of(lines, ("services",)), "services"
                )
            )
            return
        for index, item in enumerate(items):
            yield item, ("services", index)
    elif isinstance(document, list):
        for index, item in enumerate(document):
            yield item, (index,)
    else:
        yield document, ()


def _field(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc)


def _describe(error: Any) -> str:
    kind = error["type"]
    if kind == "missing":
        return "required field is missing"
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "enum":
        allowed = error.get("ctx", {}).get("expected", "")
        return f"{error['input']!r} is not one of {allowed}"
    message = str(error["msg"])
    return message.removeprefix("Value error, ")


def _parse_file(path: Path, result: RegistryLoad) -> list[LoadedService]:
    file = str(path)
    try:
        documents = read_yaml(path)
    except ValidationError as unreadable:
        result.errors.extend(unreadable.problems)
        return []
    found: list[LoadedService] = []
    for document in documents:
        lines = document.lines
        for entry, prefix in _entries(document.data, lines, file, result.errors):
            start = line_of(lines, prefix) or 1
            if not isinstance(entry, dict):
                result.errors.append(Problem("a service must be a mapping", file, start))
                continue
            try:
                definition = ServiceDefinition.model_validate(entry)
            except pydantic.ValidationError as invalid:
                for detail in invalid.errors():
                    loc = tuple(detail["loc"])
                    result.errors.append(
                        Problem(
                            _describe(detail),
                            file,
                            line_of(lines, (*prefix, *loc)) or start,
                            _field(loc) or None,
                        )
                    )
                continue
            found.append(LoadedService(definition, file, start, lines_under(lines, prefix)))
    return found


def _cross_check(services: list[LoadedService], result: RegistryLoad) -> None:
    by_name: dict[str, LoadedService] = {}
    for item in services:
        name = item.definition.name
        first = by_name.get(name)
        if first is not None:
            result.errors.append(
                Problem(
                    f"duplicate service {name!r}; first defined at {first.file}:{first.line}",
                    item.file,
                    item.line_of("name"),
                    "name",
                )
            )
            continue
        by_name[name] = item
    result.services = list(by_name.values())

    for item in result.services:
        d = item.definition
        links: list[tuple[str, int, str]] = [
            *(("dependencies", i, x.service) for i, x in enumerate(d.dependencies)),
            *(("consumers", i, x.service) for i, x in enumerate(d.consumers)),
        ]
        for kind, index, service in links:
            if service != ALL_SERVICES and service not in by_name:
                result.errors.append(
                    Problem(
                        f"{d.name} lists {service!r}, which is not a registered service",
                        item.file,
                        item.line_of(kind, index, "service"),
                        f"{kind}.{index}.service",
                    )
                )
    if result.errors:
        return

    for item in result.services:
        d = item.definition
        for index, dep in enumerate(d.dependencies):
            other = by_name.get(dep.service)
            if other is None:
                continue
            consumers = {c.service for c in other.definition.consumers}
            if d.name not in consumers and ALL_SERVICES not in consumers:
                result.warnings.append(
                    Problem(
                        f"{d.name} depends on {dep.service}, but {dep.service} does not list "
                        f"{d.name} as a consumer",
                        item.file,
                        item.line_of("dependencies", index),
                        f"dependencies.{index}",
                        severity="warning",
                    )
                )
        for index, consumer in enumerate(d.consumers):
            other = by_name.get(consumer.service)
            if other is None:
                continue
            if d.name not in {x.service for x in other.definition.dependencies}:
                result.warnings.append(
                    Problem(
                        f"{d.name} lists {consumer.service} as a consumer, but "
                        f"{consumer.service} does not list {d.name} as a dependency",
                        item.file,
                        item.line_of("consumers", index),
                        f"consumers.{index}",
                        severity="warning",
                    )
                )
    for cycle in sync_cycles([s.definition for s in result.services]):
        first = by_name[cycle[0]]
        result.warnings.append(
            Problem(
                "cycle of synchronous dependencies: " + " -> ".join([*cycle, cycle[0]]),
                first.file,
                first.line,
                "dependencies",
                severity="warning",
            )
        )


def sync_cycles(definitions: list[ServiceDefinition]) -> list[list[str]]:
    """Each cycle of synchronous dependencies once, starting at its smallest name."""
    graph = {
        d.name: sorted({x.service for x in d.dependencies if x.type is DependencyType.SYNC})
        for d in definitions
    }
    cycles: set[tuple[str, ...]] = set()

    def walk(node: str, path: list[str], on_path: set[str]) -> None:
        for nxt in graph.get(node, ()):
            if nxt in on_path:
                cycle = path[path.index(nxt) :]
                pivot = cycle.index(min(cycle))
                cycles.add(tuple(cycle[pivot:] + cycle[:pivot]))
            elif nxt in graph:
                walk(nxt, [*path, nxt], on_path | {nxt})

    for start in sorted(graph):
        walk(start, [start], {start})
    return [list(c) for c in sorted(cycles)]


def inspect_definitions(path: str | Path) -> RegistryLoad:
    """Parse and check every definition under ``path``; never raises for bad input."""
    root = Path(path)
    result = RegistryLoad()
    if not root.exists():
        result.errors.append(Problem("no such file or folder", str(root)))
        return result
    files = yaml_files(root)
    if not files:
        result.errors.append(Problem("no *.yaml or *.yml files found", str(root)))
        return result
    services: list[LoadedService] = []
    for file in files:
        services.extend(_parse_file(file, result))
    _cross_check(services, result)
    return result


def load_definitions(path: str | Path) -> RegistryLoad:
    """Load every definition under ``path``.

    Raises :class:`~hybridmesh.core.errors.ValidationError` listing every error (file, line,
    field) when any definition is invalid; warnings are returned in the result.
    """
    result = inspect_definitions(path)
    if result.errors:
        raise ValidationError(result.errors)
    return result


__all__ = [
    "LoadedService",
    "RegistryLoad",
    "inspect_definitions",
    "load_definitions",
    "sync_cycles",
]
