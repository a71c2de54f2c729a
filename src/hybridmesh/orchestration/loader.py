"""Load saga and workflow definitions from YAML, with errors that name the file, the line and
the field.

A path is a file or a folder (every ``*.yaml`` / ``*.yml`` in it, recursively, in name
order), read within the limits of :mod:`hybridmesh.core.yaml_source`. A file holds one
definition (a mapping), several (a list, ``sagas:`` and ``workflows:`` lists, or several
YAML documents), or nothing: an empty file or document among others is fine, but a path
that defines nothing at all is an error. A mapping with ``saga_type`` is a saga; one with
``workflow_id`` is a workflow.

Keys are the fields of :mod:`hybridmesh.orchestration.definitions`, in snake_case or in the
integration guide's camelCase (``stepId``, ``retryPolicy``, ``maxAttempts``): the
definitions' pydantic models read both. Keys inside payloads are left as written. A field
without a default is required; an unknown key is an error.

Errors: bad YAML (or YAML past a limit, a key given twice), a missing or unknown field, a
value of the wrong type, everything :func:`~hybridmesh.orchestration.definitions.validate`
finds, and a saga type or workflow id defined twice. Errors and warnings name the field as
the file spells it. Reading is linear in the input: lookups go through dictionaries and the
lines of each definition are found without scanning those of the others.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints

import pydantic

from hybridmesh.core.errors import Problem, ValidationError
from hybridmesh.core.limits import describe, location
from hybridmesh.core.yaml_source import DEFAULT_LIMITS, Lines, Location, YamlLimits, YamlReader
from hybridmesh.orchestration.definitions import (
    DEFINITION_READER,
    Definition,
    SagaDefinition,
    WorkflowDefinition,
    definition_key,
    validate,
)
from hybridmesh.orchestration.plan import Kind
from hybridmesh.registry import ServiceRegistry

_KINDS: dict[str, Kind] = {"saga_type": Kind.SAGA, "workflow_id": Kind.WORKFLOW}
_LISTS: dict[str, Kind] = {"sagas": Kind.SAGA, "workflows": Kind.WORKFLOW}
_CLASSES: dict[Kind, type[Any]] = {Kind.SAGA: SagaDefinition, Kind.WORKFLOW: WorkflowDefinition}


@dataclass(frozen=True)
class LoadedDefinition:
    """A valid definition and where it was written."""

    definition: Definition
    file: str
    line: int
    lines: Lines | None = field(default=None, compare=False, repr=False)

    @property
    def kind(self) -> Kind:
        return definition_key(self.definition)[0]

    @property
    def name(self) -> str:
        """The saga type or the workflow id."""
        return definition_key(self.definition)[1]

    @property
    def source(self) -> str:
        """``file:line``, as the catalog records it."""
        return f"{self.file}:{self.line}"

    def line_of(self, *loc: str | int) -> int:
        """The line of a field (``"steps", 1, "timeout"``); the definition's line if unknown."""
        return self.line if self.lines is None else self.lines.line_of(loc, _snake)


@dataclass
class DefinitionLoad:
    """What a load found: the valid definitions, the errors and the warnings."""

    definitions: list[LoadedDefinition] = field(default_factory=list)
    errors: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def raise_for_errors(self) -> DefinitionLoad:
        """Raise :class:`~hybridmesh.core.errors.ValidationError` listing every error, if any;
        return the load otherwise."""
        if self.errors:
            raise ValidationError(self.errors)
        return self


def load_definitions(
    path: str | Path,
    *,
    registry: ServiceRegistry | None = None,
    limits: YamlLimits = DEFAULT_LIMITS,
) -> DefinitionLoad:
    """Parse and check every definition under ``path``; never raises for bad input.

    With a ``registry``, every service a step names must be registered in it. Call
    :meth:`DefinitionLoad.raise_for_errors` to turn errors into an exception.
    """
    root = Path(path)
    result = DefinitionLoad()
    seen: dict[tuple[Kind, str], LoadedDefinition] = {}
    found_any = False
    for file, documents in YamlReader(limits).documents(root, result.errors):
        for document in documents:
            where = _Where.of(str(file), document.lines)
            for entry, prefix, kind in _entries(document.data, where, result):
                found_any = True
                _load_entry(entry, where.inside(prefix), kind, registry, result, seen)
    if not found_any and not result.errors:
        result.errors.append(Problem("no saga or workflow definitions found", str(root)))
    return result


def definition_from_dict(
    data: Mapping[str, Any], *, registry: ServiceRegistry | None = None
) -> Definition:
    """A saga or workflow from plain data, keys in snake_case or camelCase, validated.

    Raises :class:`~hybridmesh.core.errors.ValidationError` naming each bad field; warnings
    are not raised (call :func:`~hybridmesh.orchestration.definitions.validate` for them).
    """
    problems: list[Problem] = []
    definition = _read(data, None, problems)
    if definition is None:
        raise ValidationError(problems)
    errors = [p for p in validate(definition, registry=registry) if p.severity == "error"]
    if errors:
        raise ValidationError(errors)
    return definition


# ------------------------------------------------------------------------------ files


def _entries(
    document: Any, where: _Where, result: DefinitionLoad
) -> Iterator[tuple[Any, Location, Kind | None]]:
    """The definitions of one YAML document: each with its location and, inside ``sagas:`` or
    ``workflows:``, its kind."""
    if document is None:
        return
    if isinstance(document, list):
        for index, item in enumerate(document):
            yield item, (index,), None
        return
    if isinstance(document, dict) and not _has_kind(document) and set(document) & set(_LISTS):
        for key, value in document.items():
            kind = _LISTS.get(key)
            if kind is None:
                message = "unknown field; a file of several definitions has sagas: and workflows:"
                result.errors.append(where.problem(Problem(message, field=str(key))))
            elif not isinstance(value, list):
                result.errors.append(where.problem(Problem("must be a list", field=key)))
            else:
                for index, item in enumerate(value):
                    yield item, (key, index), kind
        return
    yield document, (), None


def _has_kind(data: Mapping[Any, Any]) -> bool:
    return any(isinstance(key, str) and _snake(key) in _KINDS for key in data)


def _load_entry(
    entry: Any,
    where: _Where,
    kind: Kind | None,
    registry: ServiceRegistry | None,
    result: DefinitionLoad,
    seen: dict[tuple[Kind, str], LoadedDefinition],
) -> None:
    problems: list[Problem] = []
    definition = _read(entry, kind, problems)
    found = problems if definition is None else validate(definition, registry=registry)
    located = sorted((where.problem(p) for p in found), key=lambda p: p.line or 0)
    for problem in located:
        (result.errors if problem.severity == "error" else result.warnings).append(problem)
    if definition is None or any(p.severity == "error" for p in found):
        return
    loaded = LoadedDefinition(definition, where.file, where.lines.line, where.lines)
    earlier = seen.setdefault((loaded.kind, loaded.name), loaded)
    if earlier is not loaded:
        name_field = "saga_type" if loaded.kind is Kind.SAGA else "workflow_id"
        message = (
            f"duplicate {loaded.kind.value} {loaded.name!r}; first defined at {earlier.source}"
        )
        result.errors.append(where.problem(Problem(message, field=name_field)))
        return
    result.definitions.append(loaded)


# --------------------------------------------------------------------------- locations


_FIELD_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def _field(loc: Location) -> str:
    """``("steps", 1, "dependencies", 0)`` as ``steps[1].dependencies[0]``."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else part
    return text


def _location(field_name: str) -> Location:
    """The reverse of :func:`_field`."""
    return tuple(int(index) if index else name for name, index in _FIELD_PART.findall(field_name))


class _Where:
    """The lines of one definition's fields, found by their canonical (snake_case) names or as
    the file spells them, and the spelling of a field as the file writes it."""

    def __init__(self, file: str, lines: Lines, camel: bool) -> None:
        self.file = file
        self.lines = lines
        #: Whether the file writes keys in camelCase: fields it lacks are named the same way.
        self.camel = camel

    @classmethod
    def of(cls, file: str, lines: Lines) -> _Where:
        """The whole document whose lines are ``lines``."""
        return cls(file, lines, _writes_camel(lines))

    def inside(self, prefix: Location) -> _Where:
        """The same file, seen from the definition at ``prefix``."""
        lines = self.lines.under(prefix) or Lines(self.lines.line_of(prefix))
        return _Where(self.file, lines, self.camel)

    def line(self, loc: Location) -> int:
        return self.lines.line_of(loc, _snake)

    def spelled(self, loc: Location) -> Location:
        """``loc`` spelled as in the file, as far as the file has it."""
        found = self.lines.follow(loc, _snake)
        rest = loc[len(found) :]
        if self.camel:
            rest = tuple(_camel(part) if isinstance(part, str) else part for part in rest)
        return (*(part for part, _ in found), *rest)

    def problem(self, problem: Problem) -> Problem:
        loc = _location(problem.field) if problem.field else ()
        return Problem(
            problem.message,
            self.file,
            self.line(loc),
            _field(self.spelled(loc)) or None,
            problem.severity,
        )


def _writes_camel(lines: Lines) -> bool:
    """Whether any key under ``lines`` is written in camelCase."""
    pending = [lines]
    while pending:
        here = pending.pop()
        for part, inner in here.children():
            if isinstance(part, str) and _snake(part) != part:
                return True
            pending.append(inner)
    return False


# ----------------------------------------------------------------------------- reading

_CAMEL = re.compile(r"[a-z][a-z0-9]*(?:[A-Z][a-z0-9]*)+")


def _snake(key: str) -> str:
    """``maxAttempts`` as ``max_attempts``; any other key unchanged."""
    if not _CAMEL.fullmatch(key):
        return key
    return re.sub(r"([A-Z])", r"_\1", key).lower()


def _camel(name: str) -> str:
    """``max_attempts`` as ``maxAttempts``."""
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _read(data: Any, kind: Kind | None, problems: list[Problem]) -> Definition | None:
    """The definition in ``data`` (of ``kind``, else of the kind its keys say), or None with
    each problem noted at its field."""
    if not isinstance(data, Mapping):
        problems.append(Problem("a definition must be a mapping"))
        return None
    if kind is None:
        kinds = {_KINDS[k] for k in map(_snake, filter(_is_str, data)) if k in _KINDS}
        if len(kinds) != 1:
            problems.append(
                Problem(
                    "a definition is a saga (with saga_type) or a workflow (with workflow_id)"
                    + (", not both" if kinds else "")
                )
            )
            return None
        (kind,) = kinds
    try:
        definition: Definition = DEFINITION_READER[kind].validate_python(dict(data))
    except pydantic.ValidationError as invalid:
        problems.extend(_problems(invalid, _CLASSES[kind], data))
        return None
    return definition


_UNKNOWN_KEY = ("unexpected_keyword_argument", "extra_forbidden")


def _problems(invalid: pydantic.ValidationError, cls: type[Any], data: Any) -> list[Problem]:
    """pydantic's errors as problems at the fields as written (snake_case locations)."""
    problems: list[Problem] = []
    twice: set[Location] = set()
    spellings: dict[Location, dict[str, list[str]]] = {}  # by parent, once each
    for error in invalid.errors():
        written: Location = location(error)
        loc = tuple(_snake(part) if isinstance(part, str) else part for part in written)
        kind = error["type"]
        if kind in _UNKNOWN_KEY and loc and isinstance(written[-1], str):
            names = _names_at(cls, loc[:-1])
            parent = written[:-1]
            if parent not in spellings:
                spellings[parent] = _spellings(data, parent)
            keys = spellings[parent].get(_snake(written[-1]), [])
            if len(keys) > 1:
                if loc in twice:
                    continue
                twice.add(loc)
                first, second = keys[:2]
                problems.append(
                    Problem(
                        f"given twice, as {first!r} and {second!r}",
                        field=_field((*loc[:-1], second)),
                    )
                )
                continue
            message = _unknown(written[-1], names)
            loc = (*loc[:-1], written[-1])  # an unknown key is named as written
        else:
            message = describe(error)
        problems.append(Problem(message, field=_field(loc) or None))
    return problems


def _spellings(data: Any, parent: Location) -> dict[str, list[str]]:
    """The keys of the mapping at ``parent`` in ``data``, by the field each spells."""
    for part in parent:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return {}
    if not isinstance(data, Mapping):
        return {}
    found: dict[str, list[str]] = {}
    for key in data:
        if isinstance(key, str):
            found.setdefault(_snake(key), []).append(key)
    return found


def _names_at(cls: type[Any], loc: Location) -> list[str]:
    """The field names of the definition class found at ``loc`` inside ``cls``."""
    hint: Any = cls
    for part in loc:
        hint = _unwrap(hint)
        if isinstance(part, int):
            hint = next(iter(get_args(hint)), Any)
        elif dataclasses.is_dataclass(hint):
            hint = get_type_hints(hint).get(part, Any)
        else:
            return []
    hint = _unwrap(hint)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return [item.name for item in dataclasses.fields(hint)]
    return []


def _unwrap(hint: Any) -> Any:
    """``X`` for ``X | None``."""
    if get_origin(hint) in (Union, types.UnionType):
        options = [option for option in get_args(hint) if option is not type(None)]
        return options[0] if len(options) == 1 else Any
    return hint


def _is_str(key: object) -> bool:
    return isinstance(key, str)


def _unknown(written: str, names: list[str]) -> str:
    """An unknown key's message, suggesting the closest field in the key's own style."""
    close = difflib.get_close_matches(_snake(written), names, n=1)
    if not close:
        return "unknown field"
    name = _camel(close[0]) if _snake(written) != written else close[0]
    return f"unknown field; did you mean {name!r}?"


__all__ = [
    "DefinitionLoad",
    "LoadedDefinition",
    "definition_from_dict",
    "load_definitions",
]
