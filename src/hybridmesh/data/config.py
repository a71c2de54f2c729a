"""Replication and event-bridge definitions, as written in YAML and checked on load.

A file holds ``replications:`` and ``bridges:`` (either may be missing)::

    replications:
      - name: erp-customers
        source: {url: "sqlite:///legacy-erp.db", system: legacy-erp}
        target: {url: "postgresql://app@db/users"}
        tables:
          - source: customers
            target: users
            columns: {name: full_name, fax: null}        # rename; null drops
            transform: {email: "myapp.mapping:lower"}    # source column -> callable(value)
            computed: {display: "myapp.mapping:display"} # target column -> callable(row)
        conflicts: last_writer_wins                      # or source_wins
        reconcile: {truth: source, every: 10m}
    bridges:
      - name: erp-events
        source: {url: "sqlite:///legacy-erp.db", system: legacy-erp}
        prefix: erp
        tables: [customers, orders]

Callables are named ``module:attribute`` and imported when the file is loaded, so a typo is
an error at its line, not a failure mid-replication. Every problem names file, line and field.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import pydantic
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from hybridmesh.core.errors import ConfigurationError, Problem, ValidationError
from hybridmesh.core.limits import describe, location
from hybridmesh.core.names import name_problem
from hybridmesh.core.yaml_source import DEFAULT_LIMITS, Lines, YamlLimits, YamlReader
from hybridmesh.data.mapping import TableMapping
from hybridmesh.gateway.stats import parse_duration
from hybridmesh.store.urls import parse_database_url


def _seconds(value: Any) -> Any:
    return parse_duration(value) if isinstance(value, str) else value


Seconds = Annotated[float, BeforeValidator(_seconds), Field(gt=0, le=30 * 86_400)]
Identifier = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_name(value: str) -> str:
    problem = name_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


class Database(_Strict):
    """A database the data side reads or writes: the legacy one or a new service's."""

    url: str
    #: The system that owns it, as CloudEvents' ``source`` names it (``legacy-erp``).
    system: str | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        try:
            parse_database_url(value)
        except ConfigurationError as bad:
            raise ValueError(str(bad).removeprefix("error: ")) from None
        return value


def resolve_callable(path: str) -> Callable[..., Any]:
    """The callable named ``module:attribute``; ValueError saying what is wrong."""
    module_name, sep, attribute = path.partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(f"{path!r} must name a callable as module:attribute")
    try:
        found: Any = importlib.import_module(module_name)
    except ImportError as error:
        raise ValueError(f"cannot import module {module_name!r}: {error}") from None
    for part in attribute.split("."):
        found = getattr(found, part, None)
        if found is None:
            raise ValueError(f"module {module_name!r} has no {attribute!r}")
    if not callable(found):
        raise ValueError(f"{path!r} is not callable")
    return found  # type: ignore[no-any-return]


Dotted = Annotated[str, Field(min_length=3)]


class TableSpec(_Strict):
    """One legacy table and how the new service's table takes it."""

    source: Identifier
    target: Identifier | None = None
    #: The key columns; by default the source table's primary key.
    key: list[Identifier] | None = None
    #: Source column -> target name; null drops the column.
    columns: dict[Identifier, Identifier | None] = {}
    transform: dict[Identifier, Dotted] = {}
    reverse_transform: dict[Identifier, Dotted] = {}
    computed: dict[Identifier, Dotted] = {}

    @field_validator("transform", "reverse_transform", "computed")
    @classmethod
    def _callables(cls, value: dict[str, str]) -> dict[str, str]:
        for path in value.values():
            resolve_callable(path)
        return value

    def mapping(self, key: Sequence[str]) -> TableMapping:
        """The runtime mapping, with ``key`` (this spec's, or the table's primary key)."""
        key = tuple(self.key or key)
        for column in key:
            if column in self.transform or self.columns.get(column, column) is None:
                raise ValueError(f"key column {column!r} cannot be dropped or transformed")
        return TableMapping(
            source=self.source,
            target=self.target or self.source,
            key=key,
            rename={s: t for s, t in self.columns.items() if t is not None},
            drop=frozenset(s for s, t in self.columns.items() if t is None),
            transform={c: resolve_callable(p) for c, p in self.transform.items()},
            reverse_transform={c: resolve_callable(p) for c, p in self.reverse_transform.items()},
            computed={c: resolve_callable(p) for c, p in self.computed.items()},
        )


class ReconcileSpec(_Strict):
    """How a replication's two sides are compared and repaired."""

    #: The side that is right when they differ: the source (legacy) or the target.
    truth: Literal["source", "target"] = "source"
    #: Run a reconciliation this often while the replicator runs (unset: only on demand).
    every: Seconds | None = None
    #: Segments of at most this many rows are compared row by row.
    segment_rows: int = Field(default=64, ge=1, le=100_000)
    #: Repair what a scheduled run finds.
    repair: bool = True


class ReplicationSpec(_Strict):
    """A legacy database's tables replicated into a new service's database."""

    name: Annotated[str, BeforeValidator(_check_name)]
    source: Database
    target: Database
    tables: list[TableSpec] = Field(min_length=1)
    #: Rows per backfill chunk. By default 50,000 for a table whose rows are copied as the
    #: source stores them, 10,000 for one whose rows go through JSON (a transform or a
    #: computed column, another kind of database, other column types): either way enough
    #: rows to outweigh the round trips each chunk costs (its watermarks among them).
    chunk_size: int | None = Field(default=None, ge=1, le=100_000)
    #: Changes applied per target transaction while streaming.
    batch_size: int = Field(default=500, ge=1, le=100_000)
    #: During the reverse-sync window: who wins when both sides changed a row.
    conflicts: Literal["last_writer_wins", "source_wins"] = "last_writer_wins"
    reconcile: ReconcileSpec = ReconcileSpec()


class BridgeSpec(_Strict):
    """A legacy database's changes published as CloudEvents on the bus."""

    name: Annotated[str, BeforeValidator(_check_name)]
    source: Database
    #: Event types are ``<prefix>.<table>.created|updated|deleted``.
    prefix: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]*(\.[a-z0-9][a-z0-9_-]*)*$")]
    tables: list[Identifier] = Field(min_length=1)

    @field_validator("source")
    @classmethod
    def _system(cls, value: Database) -> Database:
        if not value.system:
            raise ValueError("a bridge's source needs a system: the CloudEvents source")
        return value


class DataFile(_Strict):
    replications: list[ReplicationSpec] = []
    bridges: list[BridgeSpec] = []


@dataclass(frozen=True)
class DataDefinitions:
    """What one load found, with the file and line of each definition."""

    replications: dict[str, ReplicationSpec] = field(default_factory=dict)
    bridges: dict[str, BridgeSpec] = field(default_factory=dict)
    lines: dict[str, tuple[str, int]] = field(default_factory=dict)


def parse_data(
    data: bytes | str, file: str, limits: YamlLimits = DEFAULT_LIMITS
) -> DataDefinitions:
    """The replications and bridges of one YAML text; :class:`ValidationError` lists every
    problem with its file, line and field."""
    problems: list[Problem] = []
    found = DataDefinitions()
    for document in YamlReader(limits).parse(data, file):
        _read_document(document.data, document.lines, file, found, problems)
    if not found.replications and not found.bridges and not problems:
        problems.append(Problem("defines no replication and no bridge", file))
    if problems:
        raise ValidationError(problems)
    return found


def load_data(path: Path, limits: YamlLimits = DEFAULT_LIMITS) -> DataDefinitions:
    """The definitions of a YAML file."""
    reader = YamlReader(limits)
    return parse_data(reader.read_bytes(path), str(path), limits)


def _read_document(
    data: Any, lines: Lines, file: str, found: DataDefinitions, problems: list[Problem]
) -> None:
    if data is None:
        return
    try:
        parsed = DataFile.model_validate(data)
    except pydantic.ValidationError as invalid:
        for error in invalid.errors():
            loc = tuple(location(error))
            dotted = ".".join(str(part) for part in loc) or None
            problems.append(Problem(describe(error), file, lines.line_of(loc), dotted))
        return
    for index, replication in enumerate(parsed.replications):
        if _first(replication.name, "replications", index, lines, file, found, problems):
            found.replications[replication.name] = replication
    for index, bridge in enumerate(parsed.bridges):
        if _first(bridge.name, "bridges", index, lines, file, found, problems):
            found.bridges[bridge.name] = bridge


def _first(
    name: str,
    kind: str,
    index: int,
    lines: Lines,
    file: str,
    found: DataDefinitions,
    problems: list[Problem],
) -> bool:
    """Whether ``name`` is new in this load (recording where it is); a problem if not."""
    line = lines.line_of((kind, index))
    if name in found.lines:
        first_file, first_line = found.lines[name]
        problems.append(
            Problem(
                f"{name!r} is defined twice (first at {first_file}:{first_line})",
                file,
                line,
                f"{kind}.{index}.name",
            )
        )
        return False
    found.lines[name] = (file, line)
    return True


__all__ = [
    "BridgeSpec",
    "DataDefinitions",
    "Database",
    "ReconcileSpec",
    "ReplicationSpec",
    "TableSpec",
    "load_data",
    "parse_data",
    "resolve_callable",
]
