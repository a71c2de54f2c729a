"""YAML files as the loaders read them: the data of each document and the line of every key.

Both the service registry and the saga/workflow loaders report errors at ``file:line`` and
field; this module is what they share. A location is the path to a key or an item inside a
document (``("steps", 1, "timeout")``); :func:`line_of` answers with the line of the
nearest enclosing location that has one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from hybridmesh.core.errors import Problem, ValidationError

#: Where a value sits inside a document: keys and list indexes, outermost first.
Location = tuple[str | int, ...]


@dataclass(frozen=True)
class YamlDocument:
    """One document of a YAML file: its data and the 1-based line of every location."""

    data: Any
    lines: dict[Location, int]


def yaml_files(path: Path) -> list[Path]:
    """``path`` itself, or every ``*.yaml`` / ``*.yml`` file under the folder ``path``,
    recursively, in name order."""
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())
    return [path]


def read_yaml(path: Path) -> list[YamlDocument]:
    """Every document of the YAML file ``path``, with its lines.

    Raises :class:`~hybridmesh.core.errors.ValidationError` with one problem at the file
    (and the line, for bad YAML) when the file cannot be read or parsed.
    """
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ValidationError([Problem(f"cannot read: {error.strerror or error}", file)]) from None
    try:
        nodes = list(yaml.compose_all(text, Loader=yaml.SafeLoader))
        documents = list(yaml.safe_load_all(text))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        reason = getattr(error, "problem", None) or str(error)
        raise ValidationError([Problem(f"invalid YAML: {reason}", file, line)]) from None
    found: list[YamlDocument] = []
    for node, data in zip(nodes, documents, strict=True):
        lines: dict[Location, int] = {}
        if node is not None:
            _record_lines(node, (), lines)
        found.append(YamlDocument(data, lines))
    return found


def _record_lines(node: yaml.Node, prefix: Location, into: dict[Location, int]) -> None:
    """Record the 1-based line of every key and item under ``node``."""
    into.setdefault(prefix, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            where = (*prefix, str(key.value))
            into[where] = key.start_mark.line + 1
            _record_lines(value, where, into)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _record_lines(item, (*prefix, index), into)


def line_of(lines: dict[Location, int], loc: Location) -> int | None:
    """The line of ``loc``, else of the nearest location that encloses it (None: none)."""
    for end in range(len(loc), -1, -1):
        line = lines.get(loc[:end])
        if line is not None:
            return line
    return None


def lines_under(lines: dict[Location, int], prefix: Location) -> dict[Location, int]:
    """The lines inside ``prefix``, located from it."""
    size = len(prefix)
    return {loc[size:]: line for loc, line in lines.items() if loc[:size] == prefix}


__all__ = ["Location", "YamlDocument", "line_of", "lines_under", "read_yaml", "yaml_files"]
