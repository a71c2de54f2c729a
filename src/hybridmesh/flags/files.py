"""Flags files: YAML read within the project's limits, each problem at file:line and field.

A file holds ``flags:``, a list of flags (or a single flag, or a bare list); a folder's
``*.yaml`` and ``*.yml`` files are read in name order. Keys are unique across everything
read in one load. See :mod:`hybridmesh.flags.model` for what a flag holds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydantic

from hybridmesh.core.errors import Problem, ValidationError
from hybridmesh.core.limits import describe, location
from hybridmesh.core.yaml_source import (
    DEFAULT_LIMITS,
    Lines,
    YamlLimits,
    YamlReader,
    document_entries,
)
from hybridmesh.flags.model import Flag, flag_problems


@dataclass(frozen=True)
class LoadedFlag:
    """A flag and where it was written."""

    flag: Flag
    file: str
    line: int
    lines: Lines | None = field(default=None, compare=False, repr=False)

    def line_of(self, *loc: str | int) -> int:
        return self.line if self.lines is None else self.lines.line_of(loc)


def parse_flags(
    data: bytes | str, file: str, limits: YamlLimits = DEFAULT_LIMITS
) -> list[LoadedFlag]:
    """The flags of one YAML text; :class:`ValidationError` lists every problem with its
    file, line and field."""
    return _unique(_flags(YamlReader(limits).parse(data, file), file))


def load_flags(path: Path, limits: YamlLimits = DEFAULT_LIMITS) -> list[LoadedFlag]:
    """The flags of a file, or of every YAML file in a folder."""
    reader = YamlReader(limits)
    found: list[LoadedFlag] = []
    problems: list[Problem] = []
    for file, documents in reader.documents(path, problems):
        try:
            found += _flags(documents, str(file))
        except ValidationError as invalid:
            problems += invalid.problems
    if problems:
        raise ValidationError(problems)
    if not found:
        raise ValidationError([Problem("defines no flag", str(path))])
    return _unique(found)


def _describe(error: Any) -> str:
    kind, ctx = error["type"], error.get("ctx", {})
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "too_short":
        return f"must have at least {ctx['min_length']} item(s)"
    if kind == "too_long":
        return f"may have at most {ctx['max_length']} item(s)"
    if kind == "greater_than_equal":
        return f"must be at least {ctx['ge']}"
    if kind == "less_than_equal":
        return f"must be at most {ctx['le']}"
    return describe(error)


def _errors(invalid: pydantic.ValidationError) -> list[Any]:
    """The errors worth reporting: a list whose items failed is also said to be too
    short (its valid items are fewer than its minimum), which only repeats them."""
    return [
        error
        for error in invalid.errors()
        if not (
            error["type"] == "too_short"
            and isinstance(error["input"], list | tuple)
            and len(error["input"]) >= error.get("ctx", {}).get("min_length", 0)
        )
    ]


def _key_location(error: Any) -> tuple[str | int, ...]:
    """Where an error is; for a mapping key that is wrong (a YAML boolean, say), the
    mapping itself, since the key as written cannot be told from its value."""
    raw = tuple(error["loc"])
    if "[key]" in raw:
        return tuple(raw[: raw.index("[key]") - 1])
    return location(error)


def _dotted(loc: tuple[Any, ...]) -> str | None:
    return ".".join(str(part) for part in loc) or None


def _flags(documents: list[Any], file: str) -> list[LoadedFlag]:
    found: list[LoadedFlag] = []
    problems: list[Problem] = []
    for document in documents:
        for entry, prefix in document_entries(document.data, "flags", "key"):
            lines = document.lines.under(prefix) or Lines(document.lines.line_of(prefix))
            if not isinstance(entry, dict):
                what = (
                    "'flags' must be a list" if prefix == ("flags",) else "a flag must be a mapping"
                )
                problems.append(Problem(what, file, lines.line, _dotted(prefix)))
                continue
            try:
                flag = Flag.model_validate(entry, context={"defer_checks": True})
            except pydantic.ValidationError as invalid:
                for error in _errors(invalid):
                    loc = _key_location(error)
                    problems.append(
                        Problem(_describe(error), file, lines.line_of(loc), _dotted(loc))
                    )
                continue
            checks = flag_problems(flag)
            problems += [
                Problem(message, file, lines.line_of(loc), _dotted(loc)) for loc, message in checks
            ]
            if not checks:
                found.append(LoadedFlag(flag, file, lines.line, lines))
    if problems:
        raise ValidationError(problems)
    return found


def validation_error(invalid: pydantic.ValidationError) -> ValidationError:
    """A pydantic error about a flag built from options (no file), field by field."""
    return ValidationError(
        [
            Problem(_describe(error), field=_dotted(_key_location(error)))
            for error in _errors(invalid)
        ]
    )


def _unique(flags: list[LoadedFlag]) -> list[LoadedFlag]:
    seen: dict[str, LoadedFlag] = {}
    problems: list[Problem] = []
    for item in flags:
        first = seen.get(item.flag.key)
        if first is not None:
            problems.append(
                Problem(
                    f"duplicate flag {item.flag.key!r}; first defined at {first.file}:{first.line}",
                    item.file,
                    item.line_of("key"),
                    "key",
                )
            )
        seen.setdefault(item.flag.key, item)
    if problems:
        raise ValidationError(problems)
    return flags


__all__ = ["LoadedFlag", "load_flags", "parse_flags", "validation_error"]
