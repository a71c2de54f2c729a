"""Load service definitions from YAML, with errors that name the file, the line and the field.

A path is a file or a folder (every ``*.yaml`` / ``*.yml`` in it, recursively, in name
order), read within the limits of :mod:`hybridmesh.core.yaml_source`. A file holds one
service (a mapping), several (a list, a ``services:`` list, or several YAML documents), or
nothing: an empty file or document among others is fine, but a path that defines no
service at all is an error.

Errors stop the load: bad YAML (or YAML past a limit, a key given twice), an unknown
architecture or pattern type, a missing required field, an unknown key, a malformed URL, a
duplicate name, a dependency or consumer that is not registered. Warnings do not: a
dependency that the other side does not list as a consumer (and the reverse), and cycles
of synchronous dependencies.

Every step is linear in the input: lookups go through dictionaries, never through lists.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydantic

from hybridmesh.core.errors import Problem, ValidationError
from hybridmesh.core.yaml_source import (
    DEFAULT_LIMITS,
    Lines,
    Location,
    YamlDocument,
    YamlLimits,
    YamlReader,
)
from hybridmesh.registry.models import ALL_SERVICES, DependencyType, ServiceDefinition


@dataclass(frozen=True)
class LoadedService:
    """A definition and where it was written."""

    definition: ServiceDefinition
    file: str
    line: int
    lines: Lines | None = field(default=None, compare=False, repr=False)

    def line_of(self, *loc: str | int) -> int:
        """The line of a field inside this definition (the service's line if unknown)."""
        return self.line if self.lines is None else self.lines.line_of(loc)


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
    document: Any, lines: Lines, file: str, errors: list[Problem]
) -> Iterator[tuple[Any, Location]]:
    """The service mappings of one YAML document, each with its location prefix."""
    if document is None:
        return
    if isinstance(document, dict) and "services" in document and "name" not in document:
        items = document["services"]
        if not isinstance(items, list):
            errors.append(
                Problem("'services' must be a list", file, lines.line_of(("services",)), "services")
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


def _parse_file(
    path: Path, documents: list[YamlDocument], result: RegistryLoad
) -> list[LoadedService]:
    file = str(path)
    found: list[LoadedService] = []
    for document in documents:
        for entry, prefix in _entries(document.data, document.lines, file, result.errors):
            lines = document.lines.under(prefix) or Lines(document.lines.line_of(prefix))
            start = lines.line
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
                            lines.line_of(loc),
                            _field(loc) or None,
                        )
                    )
                continue
            found.append(LoadedService(definition, file, start, lines))
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

    consumers_of = {
        name: {c.service for c in item.definition.consumers} for name, item in by_name.items()
    }
    dependencies_of = {
        name: {x.service for x in item.definition.dependencies} for name, item in by_name.items()
    }
    for item in result.services:
        d = item.definition
        for index, dep in enumerate(d.dependencies):
            consumers = consumers_of.get(dep.service)
            if consumers is None:
                continue
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
            dependencies = dependencies_of.get(consumer.service)
            if dependencies is None:
                continue
            if d.name not in dependencies:
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
    """One cycle of synchronous dependencies for each group of services that reach one
    another synchronously, starting at the group's smallest name, in name order.

    A shortest cycle through that name stands for its group: listing every cycle could take
    time exponential in the number of services (ten that all call one another have
    hundreds of thousands), while this takes time linear in services and dependencies.
    """
    graph = {
        d.name: sorted({x.service for x in d.dependencies if x.type is DependencyType.SYNC})
        for d in definitions
    }
    cycles: list[list[str]] = []
    for group in _strongly_connected(graph):
        start = min(group)
        cycle = _shortest_cycle(graph, start, group)
        if cycle is not None:
            cycles.append(cycle)
    return sorted(cycles)


def _strongly_connected(graph: dict[str, list[str]]) -> list[set[str]]:
    """The strongly connected components of ``graph`` (Tarjan's algorithm, with a stack of
    its own rather than recursion, so no chain of services is too long for it)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    groups: list[set[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(root, iter(graph[root]))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            for nxt in edges:
                if nxt not in graph:
                    continue
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(graph[nxt])))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    group: set[str] = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        group.add(member)
                        if member == node:
                            break
                    groups.append(group)
    return groups


def _shortest_cycle(graph: dict[str, list[str]], start: str, group: set[str]) -> list[str] | None:
    """A shortest cycle from ``start`` back to itself inside ``group``, or None (a single
    service that does not depend on itself)."""
    came_from: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following: list[str] = []
        for node in frontier:
            for nxt in graph[node]:
                if nxt not in group:
                    continue
                if nxt == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(came_from[path[-1]])
                    return path[::-1]
                if nxt not in came_from:
                    came_from[nxt] = node
                    following.append(nxt)
        frontier = following
    return None


def inspect_definitions(path: str | Path, *, limits: YamlLimits = DEFAULT_LIMITS) -> RegistryLoad:
    """Parse and check every definition under ``path``; never raises for bad input."""
    root = Path(path)
    result = RegistryLoad()
    services: list[LoadedService] = []
    for file, documents in YamlReader(limits).documents(root, result.errors):
        services.extend(_parse_file(file, documents, result))
    if not services and not result.errors:
        result.errors.append(Problem("no service definitions found", str(root)))
    _cross_check(services, result)
    return result


def inspect_text(
    data: bytes | str, file: str, *, limits: YamlLimits = DEFAULT_LIMITS
) -> RegistryLoad:
    """As :func:`inspect_definitions`, for the content of one file that arrived without a
    path (an HTTP request's body, say): YAML, or JSON, which YAML reads too. ``file`` is
    the name its problems are reported under."""
    result = RegistryLoad()
    try:
        documents = YamlReader(limits).parse(data, file)
    except ValidationError as unreadable:
        result.errors.extend(unreadable.problems)
        return result
    services = _parse_file(Path(file), documents, result)
    if not services and not result.errors:
        result.errors.append(Problem("no service definitions found", file))
    _cross_check(services, result)
    return result


def load_definitions(path: str | Path, *, limits: YamlLimits = DEFAULT_LIMITS) -> RegistryLoad:
    """Load every definition under ``path``.

    Raises :class:`~hybridmesh.core.errors.ValidationError` listing every error (file, line,
    field) when any definition is invalid; warnings are returned in the result.
    """
    result = inspect_definitions(path, limits=limits)
    if result.errors:
        raise ValidationError(result.errors)
    return result


__all__ = [
    "LoadedService",
    "RegistryLoad",
    "inspect_definitions",
    "inspect_text",
    "load_definitions",
    "sync_cycles",
]
