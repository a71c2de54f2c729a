"""Reconciliation: find the rows on which a replication's source and target disagree, and
repair them from the side that is right.

A table is compared by checksum bisection: its key space is cut into segments, each side
computes a checksum of every segment (its row count and the sum of its rows' hashes, see
:mod:`hybridmesh.data.checksums`) in one grouped query, and only segments whose checksums
differ are cut again, until they hold at most ``segment_rows`` rows; those are read from
both sides and compared row by row. Equal segments are never read, so two large tables
that differ in a few rows cost a scan on each side inside the databases and a few reads.

How the key space is cut depends on the key:

- **A single integer key** (the common case, and the fast one) is cut into numeric
  ranges between the smallest and largest key. The first level groups the whole table
  into ranges of ``segment_rows`` keys (fewer and wider ones on a sparse key, at most
  :data:`MAX_SEGMENTS`); ranges are found through the key's index on the levels after.
- **Any other key** (text, composite) is cut by the hash of its canonical text modulo a
  number of buckets, then modulo a multiple of it. Hash buckets need no order, so the
  two databases' collations cannot put a key into different segments; each level reads
  the table once.

When the rows' checksums cannot be computed in SQL (a column type whose text differs
between the two databases, or a mapping with Python transforms or computed columns), the
rows are read in chunks (in key order for integer keys, else by key-hash bucket), mapped
and hashed in Python, and a chunk's rows are compared only when its checksums differ.

Repairs write the side that is not the truth: with ``truth: source`` the source's mapped
rows are upserted into the target and the target's extra rows deleted; with ``truth:
target`` the target's rows go back through :meth:`TableMapping.unmap_row`. Each repair is
recorded, and the repaired segments are compared again (``remaining``).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeVar

from hybridmesh.core.clock import SYSTEM_CLOCK, Clock
from hybridmesh.core.errors import ConfigurationError, ValidationError
from hybridmesh.core.ids import uuid7
from hybridmesh.data.checksums import (
    canonical_text,
    checksum,
    checksum_sql,
    checksum_value,
    hash_sql,
    row_text_sql,
    same_text_in_sql,
    type_family,
    values_equal,
)
from hybridmesh.data.config import ReplicationSpec, TableSpec
from hybridmesh.data.databases import open_database, quote, table_shape
from hybridmesh.data.mapping import TableMapping
from hybridmesh.data.reconcile_records import ReconcileHistory, ReconcileMetrics
from hybridmesh.data.reconcile_report import (
    SAMPLE_LIMIT,
    Action,
    Difference,
    ReconcileReport,
    Repair,
    TableReport,
)
from hybridmesh.observability.logs import get_logger
from hybridmesh.store import Store

T = TypeVar("T")

_log = get_logger("hybridmesh.data.reconcile")

#: At most this many segments come back from one checksum query.
MAX_SEGMENTS = 100_000
#: A segment that is cut again is cut into at most this many.
MAX_FANOUT = 1_024
#: Rows read per side per chunk when rows are hashed in Python.
PYTHON_CHUNK_ROWS = 5_000
#: Rows (estimated) read per query when segments are compared row by row.
ROWS_PER_READ = 20_000
#: Ranges or buckets named in one query.
_PER_QUERY = 1_000
#: Queries one side runs at once.
_PARALLEL = 4

Kind = Literal["missing", "extra", "different"]


class Progress(Protocol):
    """Told how a table's comparison goes: ``stage`` (``checksums``, ``rows``,
    ``repair``, ``recheck``), with ``done`` of ``total`` steps of it."""

    def __call__(self, table: str, stage: str, done: int, total: int) -> None: ...


def _no_progress(table: str, stage: str, done: int, total: int) -> None:
    """The default :class:`Progress`: says nothing."""


# -- what is compared ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Side:
    """One table to compare: its database, its key and (when rows are hashed in SQL) its
    compared columns with their declared types, named as this side names them."""

    db: Store
    table: str
    key: tuple[tuple[str, str], ...]
    columns: tuple[tuple[str, str], ...]

    @property
    def dialect(self) -> str:
        return self.db.dialect

    @property
    def from_sql(self) -> str:
        return f"{quote(self.table)} AS t"

    @property
    def key_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.key)

    def ref(self, column: str) -> str:
        return f"t.{quote(column)}"

    @property
    def checksum_sql(self) -> str:
        return checksum_sql(self.dialect, row_text_sql(self.dialect, self.columns))

    @property
    def key_hash_sql(self) -> str:
        return hash_sql(self.dialect, row_text_sql(self.dialect, self.key))


@dataclass(frozen=True)
class _Plan:
    """How one table is compared: decided from the two tables' shapes and the mapping."""

    mapping: TableMapping
    source: _Side
    target: _Side
    #: The compared columns, as the target names them (the key among them).
    compared: tuple[str, ...]
    #: The columns a repair writes on each side.
    source_columns: frozenset[str]
    target_columns: frozenset[str]
    in_sql: bool
    cut: Literal["range", "hash", "keyset", "whole"]

    @property
    def method(self) -> str:
        return f"{'sql' if self.in_sql else 'python'}/{self.cut}"


async def _plan(source: Store, target: Store, mapping: TableMapping) -> _Plan:
    """The plan for comparing ``mapping``'s tables; :class:`ConfigurationError` when the
    mapping names columns the tables do not have."""
    source_shape, target_shape = await asyncio.gather(
        table_shape(source, mapping.source), table_shape(target, mapping.target)
    )
    for column in mapping.key:
        if column not in source_shape.columns:
            raise ConfigurationError(
                f"{source.display_url}: table {mapping.source!r} has no key column {column!r}"
            )
    compared = tuple(mapping.target_columns(source_shape.columns))
    absent = [c for c in compared if c not in target_shape.types]
    if absent:
        raise ConfigurationError(
            f"{target.display_url}: table {mapping.target!r} has no column "
            + ", ".join(repr(c) for c in absent)
            + f" (mapped from {mapping.source!r})"
        )
    dialects = (source.dialect, target.dialect)

    def pair(target_column: str) -> tuple[tuple[str, str], tuple[str, str]] | None:
        name = mapping.source_name(target_column)
        if name is None or name not in source_shape.types:
            return None
        return (name, source_shape.types[name]), (target_column, target_shape.types[target_column])

    pairs = [pair(c) for c in compared]
    key_pairs = [pair(c) for c in mapping.target_key]
    in_sql = mapping.plain and all(
        p is not None and same_text_in_sql(dialects, (p[0][1], p[1][1])) for p in pairs
    )
    key_in_sql = all(
        p is not None and same_text_in_sql(dialects, (p[0][1], p[1][1])) for p in key_pairs
    )
    integer_key = all(
        p is not None
        and type_family(source.dialect, p[0][1]) == "integer"
        and type_family(target.dialect, p[1][1]) == "integer"
        for p in key_pairs
    )
    cut: Literal["range", "hash", "keyset", "whole"]
    if in_sql:
        cut = "range" if integer_key and len(key_pairs) == 1 else "hash"
    elif integer_key:
        cut = "keyset"
    else:
        cut = "hash" if key_in_sql else "whole"
    known_pairs = [p for p in pairs if p is not None] if in_sql else []
    known_keys = [p for p in key_pairs if p is not None]
    return _Plan(
        mapping=mapping,
        source=_Side(
            source,
            mapping.source,
            tuple(p[0] for p in known_keys),
            tuple(p[0] for p in known_pairs),
        ),
        target=_Side(
            target,
            mapping.target,
            tuple(p[1] for p in known_keys),
            tuple(p[1] for p in known_pairs),
        ),
        compared=compared,
        source_columns=frozenset(source_shape.columns),
        target_columns=frozenset(target_shape.columns),
        in_sql=in_sql,
        cut=cut,
    )


# -- sets of rows ----------------------------------------------------------------------------


class _Rows(Protocol):
    """Rows of a table chosen by key, the same way on both sides."""

    def select(self, side: _Side) -> tuple[str, list[Any]]:
        """The query for these rows on ``side``, and its arguments."""
        ...


_RANGES = "hm_key_ranges"  # a name no application table is likely to have


@dataclass(frozen=True)
class _Ranges:
    """Rows whose integer key is within one of ``ranges`` (bounds included)."""

    ranges: tuple[tuple[int, int], ...]

    def select(self, side: _Side) -> tuple[str, list[Any]]:
        key = side.ref(side.key[0][0])
        if len(self.ranges) == 1:
            (lo, hi) = self.ranges[0]
            return f"SELECT * FROM {side.from_sql} WHERE {key} >= {lo} AND {key} <= {hi}", []
        values = ", ".join(f"({lo}, {hi})" for lo, hi in self.ranges)
        return (
            f"WITH {_RANGES} (lo, hi) AS (VALUES {values}) SELECT t.* FROM {_RANGES} "
            f"JOIN {side.from_sql} ON {key} >= {_RANGES}.lo AND {key} <= {_RANGES}.hi",
            [],
        )


@dataclass(frozen=True)
class _Buckets:
    """Rows whose key hash modulo ``modulus`` is one of ``buckets`` (all rows for
    ``modulus`` 1)."""

    modulus: int
    buckets: tuple[int, ...]

    def select(self, side: _Side) -> tuple[str, list[Any]]:
        return f"SELECT * FROM {side.from_sql}{self.where(side)}", []

    def where(self, side: _Side) -> str:
        if self.modulus == 1:
            return ""
        listed = ", ".join(str(b) for b in self.buckets)
        return f" WHERE {side.key_hash_sql} % {self.modulus} IN ({listed})"


@dataclass(frozen=True)
class _Between:
    """Rows whose (integer) key is after ``after`` and up to ``upto`` (None: unbounded)."""

    after: tuple[Any, ...] | None
    upto: tuple[Any, ...] | None

    def select(self, side: _Side) -> tuple[str, list[Any]]:
        conditions, args = [], []
        key = _key_sql(side)
        if self.after is not None:
            conditions.append(f"{key} > {_placeholders(len(self.after))}")
            args += list(self.after)
        if self.upto is not None:
            conditions.append(f"{key} <= {_placeholders(len(self.upto))}")
            args += list(self.upto)
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        return f"SELECT * FROM {side.from_sql}{where}", args


def _key_sql(side: _Side) -> str:
    """The key as one SQL value: the column, or a row value of the columns."""
    refs = [side.ref(name) for name in side.key_names]
    return refs[0] if len(refs) == 1 else f"({', '.join(refs)})"


def _placeholders(count: int) -> str:
    return "?" if count == 1 else f"({', '.join('?' * count)})"


# -- comparing one table ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Found:
    """A difference with its rows as read, for the repair."""

    kind: Kind
    key: dict[str, Any]
    source: dict[str, Any] | None
    mapped: dict[str, Any] | None
    target: dict[str, Any] | None


@dataclass
class _Tally:
    """What row-by-row comparisons found."""

    report: TableReport
    sample_limit: int
    keep: bool
    found: list[_Found] = field(default_factory=list)
    differing: int = 0

    def add(self, found: _Found, columns: dict[str, tuple[Any, Any]] | None = None) -> None:
        report = self.report
        self.differing += 1
        if found.kind == "missing":
            report.missing += 1
            if len(report.missing_keys) < self.sample_limit:
                report.missing_keys.append(found.key)
        elif found.kind == "extra":
            report.extra += 1
            if len(report.extra_keys) < self.sample_limit:
                report.extra_keys.append(found.key)
        else:
            report.different += 1
            if len(report.differences) < self.sample_limit:
                report.differences.append(Difference(found.key, columns or {}))
        if self.keep:
            self.found.append(found)


class _TableComparison:
    """Compares one table's two sides; :meth:`run` fills :attr:`report`."""

    def __init__(
        self,
        plan: _Plan,
        *,
        segment_rows: int,
        sample_limit: int,
        keep_found: bool,
        progress: Progress,
    ) -> None:
        self.plan = plan
        self.segment_rows = segment_rows
        self.progress = progress
        self.report = TableReport(plan.mapping.source, plan.mapping.target, plan.method)
        self.tally = _Tally(self.report, sample_limit, keep_found)
        #: The row sets in which differences were found: what a re-check reads again.
        self.differing_rows: list[_Rows] = []
        self._name = plan.mapping.source

    async def run(self) -> None:
        started = time.perf_counter()
        plan = self.plan
        if plan.in_sql:
            finals = await (self._by_range() if plan.cut == "range" else self._by_hash())
            await self._compare_sets(finals, self.tally)
        elif plan.cut == "keyset":
            await self._python_by_keyset()
        else:
            await self._python_by_hash()
        self.report.seconds = time.perf_counter() - started

    async def recheck(self) -> int:
        """Compare the row sets that differed again; the differences left."""
        tally = _Tally(TableReport("", "", ""), 0, keep=False)
        await self._compare_sets(self.differing_rows, tally, stage="recheck", record=False)
        return tally.differing

    # -- integer keys: numeric ranges ------------------------------------------------------

    async def _by_range(self) -> list[_Rows]:
        """Checksum ranges level by level; the ranges that differ, small enough to read,
        grouped into reads."""
        source, target = self.plan.source, self.plan.target
        bounds = await asyncio.gather(_key_bounds(source), _key_bounds(target))
        lows = [lo for lo, _ in bounds if lo is not None]
        highs = [hi for _, hi in bounds if hi is not None]
        if not lows:
            return []
        lo, hi = min(lows), max(highs)
        width = max(self.segment_rows, math.ceil((hi - lo + 1) / MAX_SEGMENTS))
        parents = [(lo, hi, width)]
        finals: list[tuple[tuple[int, int], int]] = []
        first = True
        while parents:
            sides = await asyncio.gather(
                self._range_level(source, parents), self._range_level(target, parents)
            )
            if first:
                self.report.source_rows = sum(n for n, _ in sides[0].values())
                self.report.target_rows = sum(n for n, _ in sides[1].values())
                first = False
            widths = {p_lo: (p_hi, w) for p_lo, p_hi, w in parents}
            parents = []
            for (p_lo, b), rows in self._differing(*sides):
                p_hi, w = widths[p_lo]
                segment = (p_lo + b * w, min(p_lo + (b + 1) * w - 1, p_hi))
                if rows <= self.segment_rows:
                    finals.append((segment, rows))
                else:
                    parts = min(max(math.ceil(rows / self.segment_rows), 2), MAX_FANOUT)
                    size = segment[1] - segment[0] + 1
                    parents.append((*segment, max(1, math.ceil(size / parts))))
        return [_Ranges(tuple(batch)) for batch in _batches(finals)]

    async def _range_level(
        self, side: _Side, parents: list[tuple[int, int, int]]
    ) -> dict[tuple[int, ...], tuple[int, int]]:
        """Checksums of each parent range cut into ranges of its width, keyed by the
        parent's low bound and the range's number in it."""
        key = side.ref(side.key[0][0])
        queries = []
        for group in _chunks(parents, _PER_QUERY):
            if len(group) == 1:
                lo, hi, w = group[0]
                queries.append(
                    f"SELECT {lo} AS p, ({key} - {lo}) / {w} AS b, {side.checksum_sql} "
                    f"FROM {side.from_sql} WHERE {key} >= {lo} AND {key} <= {hi} GROUP BY 2"
                )
            else:
                values = ", ".join(f"({lo}, {hi}, {w})" for lo, hi, w in group)
                r = _RANGES
                queries.append(
                    f"WITH {r} (lo, hi, w) AS (VALUES {values}) "
                    f"SELECT {r}.lo AS p, ({key} - {r}.lo) / {r}.w AS b, {side.checksum_sql} "
                    f"FROM {r} JOIN {side.from_sql} ON {key} >= {r}.lo AND {key} <= {r}.hi "
                    "GROUP BY 1, 2"
                )
        return await self._checksums(side, queries, ("p", "b"))

    # -- other keys: hash buckets ----------------------------------------------------------

    async def _by_hash(self) -> list[_Rows]:
        """Checksum key-hash buckets, each level modulo a multiple of the one before; the
        buckets that differ, small enough to read, grouped into reads."""
        source, target = self.plan.source, self.plan.target
        counts = await asyncio.gather(_count(source), _count(target))
        self.report.source_rows, self.report.target_rows = counts
        if not any(counts):
            return []
        modulus = min(max(math.ceil(max(counts) / self.segment_rows), 1), MAX_SEGMENTS)
        within: _Buckets | None = None
        finals: list[_Rows] = []
        while True:
            sides = await asyncio.gather(
                self._hash_level(source, modulus, within), self._hash_level(target, modulus, within)
            )
            small: list[tuple[int, int]] = []
            large: list[tuple[int, int]] = []
            for (b,), rows in self._differing(*sides):
                (small if rows <= self.segment_rows else large).append((b, rows))
            finals += [_Buckets(modulus, tuple(batch)) for batch in _batches(small)]
            if not large:
                return finals
            parts = min(max(math.ceil(max(n for _, n in large) / self.segment_rows), 2), MAX_FANOUT)
            if modulus * parts >= 2**62:  # as fine as the hash goes: read them as they are
                finals += [_Buckets(modulus, tuple(batch)) for batch in _batches(large)]
                return finals
            within = _Buckets(modulus, tuple(b for b, _ in large))
            modulus *= parts

    async def _hash_level(
        self, side: _Side, modulus: int, within: _Buckets | None
    ) -> dict[tuple[int, ...], tuple[int, int]]:
        """Checksums of key-hash buckets modulo ``modulus`` (of the rows ``within``)."""
        select = (
            f"SELECT {side.key_hash_sql} % {modulus} AS b, {side.checksum_sql} FROM {side.from_sql}"
        )
        if within is None:
            queries = [f"{select} GROUP BY 1"]
        else:
            queries = [
                f"{select}{_Buckets(within.modulus, group).where(side)} GROUP BY 1"
                for group in _chunks(within.buckets, _PER_QUERY * 10)
            ]
        return await self._checksums(side, queries, ("b",))

    # -- checksums, shared ---------------------------------------------------------------

    async def _checksums(
        self, side: _Side, queries: list[str], key: tuple[str, ...]
    ) -> dict[tuple[int, ...], tuple[int, int]]:
        """Run checksum ``queries`` on ``side``; each segment's (count, sum) by ``key``."""
        found: dict[tuple[int, ...], tuple[int, int]] = {}
        results = await _limited([side.db.fetch_all(q) for q in queries], _PARALLEL)
        for rows in results:
            for row in rows:
                found[tuple(int(row[k]) for k in key)] = (int(row["n"]), checksum_value(row["s"]))
        return found

    def _differing(
        self,
        source: dict[tuple[int, ...], tuple[int, int]],
        target: dict[tuple[int, ...], tuple[int, int]],
    ) -> list[tuple[tuple[int, ...], int]]:
        """The segments whose checksums differ, with the larger side's row count, in
        order; counts the segments compared."""
        segments = source.keys() | target.keys()
        self.report.segments += len(segments)
        self.progress(self._name, "checksums", self.report.segments, self.report.segments)
        differing = []
        for segment in sorted(segments):
            a, b = source.get(segment, (0, 0)), target.get(segment, (0, 0))
            if a != b:
                differing.append((segment, max(a[0], b[0])))
        return differing

    # -- rows hashed in Python -------------------------------------------------------------

    async def _python_by_keyset(self) -> None:
        """Read both sides in key order, a chunk at a time; compare chunks whose
        checksums differ. A chunk ends at the smaller of the two sides' last keys, so
        both read the same keys."""
        source, target = self.plan.source, self.plan.target
        size = max(self.segment_rows, PYTHON_CHUNK_ROWS)
        after: tuple[Any, ...] | None = None
        chunk = 0
        while True:
            a, b = await asyncio.gather(_page(source, after, size), _page(target, after, size))
            ends = [
                _key(rows[-1], side)
                for rows, side in ((a, source), (b, target))
                if len(rows) == size
            ]
            upto = min(ends, default=None)
            if upto is not None:
                a = [row for row in a if _key(row, source) <= upto]
                b = [row for row in b if _key(row, target) <= upto]
            await self._python_chunk(_Between(after, upto), a, b)
            chunk += 1
            self.progress(self._name, "rows", chunk, chunk + (upto is not None))
            if upto is None:
                return
            after = upto

    async def _python_by_hash(self) -> None:
        """Read both sides a key-hash bucket at a time (all at once for a key whose text
        differs between the sides), and compare buckets whose checksums differ."""
        source, target = self.plan.source, self.plan.target
        passes = 1
        if self.plan.cut == "hash":
            counts = await asyncio.gather(_count(source), _count(target))
            passes = max(1, math.ceil(max(counts) / max(self.segment_rows, PYTHON_CHUNK_ROWS)))
        for bucket in range(passes):
            rows = _Buckets(passes, (bucket,))
            a, b = await asyncio.gather(_read(source, rows), _read(target, rows))
            await self._python_chunk(rows, a, b)
            self.progress(self._name, "rows", bucket + 1, passes)

    async def _python_chunk(
        self, rows: _Rows, source_rows: list[dict[str, Any]], target_rows: list[dict[str, Any]]
    ) -> None:
        """Hash one chunk's rows in Python and compare them when the checksums differ."""
        report, plan = self.report, self.plan
        report.source_rows += len(source_rows)
        report.target_rows += len(target_rows)
        report.rows_read += len(source_rows) + len(target_rows)
        report.segments += 1
        mapped = [plan.mapping.map_row(row) for row in source_rows]
        ours = checksum([m[c] for c in plan.compared] for m in mapped)
        theirs = checksum([row[c] for c in plan.compared] for row in target_rows)
        if ours != theirs and self._compare_read(source_rows, target_rows, self.tally, mapped):
            self.differing_rows.append(rows)

    # -- row by row ------------------------------------------------------------------------

    async def _compare_sets(
        self, sets: Sequence[_Rows], tally: _Tally, *, stage: str = "rows", record: bool = True
    ) -> None:
        """Read each row set from both sides (a few at once) and compare them, in order.
        With ``record``, count the rows read and keep the sets that differ."""
        plan, done = self.plan, 0
        for window in _chunks(sets, _PARALLEL):
            reads = await asyncio.gather(
                *(
                    asyncio.gather(_read(plan.source, rows), _read(plan.target, rows))
                    for rows in window
                )
            )
            for rows, (a, b) in zip(window, reads, strict=True):
                differs = self._compare_read(a, b, tally)
                if record:
                    self.report.rows_read += len(a) + len(b)
                    if differs:
                        self.differing_rows.append(rows)
            done += len(window)
            self.progress(self._name, stage, done, len(sets))

    def _compare_read(
        self,
        source_rows: list[dict[str, Any]],
        target_rows: list[dict[str, Any]],
        tally: _Tally,
        mapped: list[dict[str, Any]] | None = None,
    ) -> bool:
        """Compare rows read from both sides by key; whether any differed."""
        plan = self.plan
        key = plan.mapping.target_key
        if mapped is None:
            mapped = [plan.mapping.map_row(row) for row in source_rows]
        ours = {
            _canonical_key(m, key): (row, m) for row, m in zip(source_rows, mapped, strict=True)
        }
        theirs = {_canonical_key(row, key): row for row in target_rows}
        before = tally.differing
        for k, (row, m) in ours.items():
            other = theirs.get(k)
            found_key = {c: m[c] for c in key}
            if other is None:
                tally.add(_Found("missing", found_key, row, m, None))
                continue
            columns = {
                c: (m[c], other.get(c))
                for c in plan.compared
                if not values_equal(m[c], other.get(c))
            }
            if columns:
                tally.add(_Found("different", found_key, row, m, other), columns)
        for k, other in theirs.items():
            if k not in ours:
                tally.add(_Found("extra", {c: other[c] for c in key}, None, None, other))
        return tally.differing > before


def _canonical_key(row: dict[str, Any], key: Sequence[str]) -> tuple[str | None, ...]:
    return tuple(canonical_text(row[c]) for c in key)


def _key(row: dict[str, Any], side: _Side) -> tuple[Any, ...]:
    return tuple(row[name] for name in side.key_names)


async def _key_bounds(side: _Side) -> tuple[int | None, int | None]:
    key = side.ref(side.key[0][0])
    row = await side.db.fetch_one(f"SELECT min({key}) AS lo, max({key}) AS hi FROM {side.from_sql}")
    if row is None or row["lo"] is None:
        return None, None
    return int(row["lo"]), int(row["hi"])


async def _count(side: _Side) -> int:
    return int(await side.db.fetch_value(f"SELECT count(*) FROM {side.from_sql}") or 0)


async def _read(side: _Side, rows: _Rows) -> list[dict[str, Any]]:
    sql, args = rows.select(side)
    return await side.db.fetch_all(sql, *args)


async def _page(side: _Side, after: tuple[Any, ...] | None, size: int) -> list[dict[str, Any]]:
    """Up to ``size`` rows after key ``after``, in key order."""
    sql, args = _Between(after, None).select(side)
    order = ", ".join(side.ref(name) for name in side.key_names)
    return await side.db.fetch_all(f"{sql} ORDER BY {order} LIMIT {int(size)}", *args)


def _chunks(items: Sequence[T], size: int) -> Iterable[tuple[T, ...]]:
    for start in range(0, len(items), size):
        yield tuple(items[start : start + size])


def _batches(segments: list[tuple[T, int]]) -> list[list[T]]:
    """Segments (with their row counts) grouped so that one read holds about
    :data:`ROWS_PER_READ` rows and names at most :data:`_PER_QUERY` segments."""
    batches: list[list[T]] = []
    current: list[T] = []
    rows = 0
    for segment, count in segments:
        if current and (rows + count > ROWS_PER_READ or len(current) >= _PER_QUERY):
            batches.append(current)
            current, rows = [], 0
        current.append(segment)
        rows += count
    if current:
        batches.append(current)
    return batches


async def _limited(work: list[Coroutine[Any, Any, T]], limit: int) -> list[T]:
    """Await ``work``, at most ``limit`` at a time; the results in order."""
    gate = asyncio.Semaphore(limit)

    async def one(coro: Coroutine[Any, Any, T]) -> T:
        async with gate:
            return await coro

    return list(await asyncio.gather(*(one(c) for c in work)))


async def compare_table(
    source: Store,
    target: Store,
    mapping: TableMapping,
    *,
    segment_rows: int = 64,
    sample_limit: int = SAMPLE_LIMIT,
    progress: Progress = _no_progress,
) -> TableReport:
    """Compare ``mapping``'s source table in ``source`` with its target table in
    ``target``; what differs. Reads only: see :class:`Reconciler` for repairs."""
    comparison = await _compare(
        source, target, mapping, segment_rows, sample_limit, False, progress
    )
    return comparison.report


async def _compare(
    source: Store,
    target: Store,
    mapping: TableMapping,
    segment_rows: int,
    sample_limit: int,
    keep_found: bool,
    progress: Progress,
) -> _TableComparison:
    plan = await _plan(source, target, mapping)
    comparison = _TableComparison(
        plan,
        segment_rows=segment_rows,
        sample_limit=sample_limit,
        keep_found=keep_found,
        progress=progress,
    )
    await comparison.run()
    return comparison


# -- repairs ---------------------------------------------------------------------------------


#: What a repair does about each kind of difference, writing the target or the source.
_TO_TARGET: dict[Kind, Action] = {"missing": "insert", "different": "update", "extra": "delete"}
_TO_SOURCE: dict[Kind, Action] = {"extra": "insert", "different": "update", "missing": "delete"}


def _repairs(plan: _Plan, found: list[_Found], truth: Literal["source", "target"]) -> list[Repair]:
    """The rows to write so that the side that is not ``truth`` matches it."""
    mapping = plan.mapping
    repairs = []
    for f in found:
        if truth == "source":
            after = None if f.mapped is None else _only(f.mapped, plan.target_columns)
            action = _TO_TARGET[f.kind]
            repairs.append(Repair("target", mapping.target, f.key, action, f.target, after))
        else:
            key = mapping.unmap_key(f.key)
            after = None
            if f.target is not None:
                after = _only(mapping.unmap_row(f.target), plan.source_columns)
            action = _TO_SOURCE[f.kind]
            repairs.append(Repair("source", mapping.source, key, action, f.source, after))
    return repairs


def _only(row: dict[str, Any], columns: frozenset[str]) -> dict[str, Any]:
    return {c: v for c, v in row.items() if c in columns}


async def _write(db: Store, table: str, key: Sequence[str], repairs: list[Repair]) -> None:
    """Apply ``repairs`` to ``table`` in one transaction: upserts, then deletes."""
    upserts: dict[tuple[str, ...], list[list[Any]]] = {}
    deletes: list[list[Any]] = []
    for repair in repairs:
        if repair.after is None:
            deletes.append([repair.key[c] for c in key])
        else:
            columns = tuple(repair.after)
            upserts.setdefault(columns, []).append([repair.after[c] for c in columns])
    async with db.transaction() as tx:
        for columns, rows in upserts.items():
            await tx.executemany(_upsert_sql(table, columns, key), rows)
        if deletes:
            where = " AND ".join(f"{quote(c)} = ?" for c in key)
            await tx.executemany(f"DELETE FROM {quote(table)} WHERE {where}", deletes)


def _upsert_sql(table: str, columns: Sequence[str], key: Sequence[str]) -> str:
    names = ", ".join(quote(c) for c in columns)
    values = ", ".join("?" for _ in columns)
    updates = ", ".join(f"{quote(c)} = excluded.{quote(c)}" for c in columns if c not in key)
    conflict = ", ".join(quote(c) for c in key)
    action = f"DO UPDATE SET {updates}" if updates else "DO NOTHING"
    return (
        f"INSERT INTO {quote(table)} ({names}) VALUES ({values}) ON CONFLICT ({conflict}) {action}"
    )


# -- runs ------------------------------------------------------------------------------------


class Reconciler:
    """Reconciles one replication: compares each of its tables and, when asked, repairs
    them from the side its ``reconcile.truth`` names.

    ``source`` and ``target`` are the replication's databases, already open (the caller
    closes them); :func:`reconcile` opens them from the spec's URLs. With ``history`` (the
    hybridmesh store's :class:`ReconcileHistory`) each run and each repaired row is
    recorded; ``metrics`` gets the inconsistency rate and the rows repaired per table.
    """

    def __init__(
        self,
        spec: ReplicationSpec,
        *,
        source: Store,
        target: Store,
        history: ReconcileHistory | None = None,
        metrics: ReconcileMetrics | None = None,
        sample_limit: int = SAMPLE_LIMIT,
        progress: Progress = _no_progress,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.spec = spec
        self.source = source
        self.target = target
        self.history = history
        self.metrics = metrics
        self.sample_limit = sample_limit
        self.progress = progress
        self.clock = clock

    async def run(
        self, *, repair: bool = False, tables: Sequence[str] | None = None
    ) -> ReconcileReport:
        """Compare (and with ``repair``, repair) the replication's tables, or those named
        in ``tables``; the report. A failure is recorded in the history and raised."""
        specs = table_specs(self.spec, tables)
        spec = self.spec
        report = ReconcileReport(
            replication=spec.name,
            run_id=uuid7(),
            truth=spec.reconcile.truth,
            repair=repair,
            started_at=self.clock.now(),
            finished_at=self.clock.now(),
        )
        if self.history is not None:
            await self.history.started(report)
        try:
            for table in specs:
                report.tables.append(await self._table(report, table, repair))
        except BaseException as error:
            if self.history is not None:
                with contextlib.suppress(Exception):
                    await asyncio.shield(self.history.failed(report.run_id, error))
            raise
        report.finished_at = self.clock.now()
        if self.history is not None:
            await self.history.finished(report)
        if self.metrics is not None:
            self.metrics.observe(report)
        return report

    async def _table(self, report: ReconcileReport, table: TableSpec, repair: bool) -> TableReport:
        shape = await table_shape(self.source, table.source)
        try:
            mapping = table.mapping(shape.key)
        except ValueError as bad:
            raise ConfigurationError(f"table {table.source!r}: {bad}") from None
        comparison = await _compare(
            self.source,
            self.target,
            mapping,
            self.spec.reconcile.segment_rows,
            self.sample_limit,
            repair,
            self.progress,
        )
        result = comparison.report
        if not repair or not result.inconsistent:
            return result
        started = time.perf_counter()
        repairs = _repairs(comparison.plan, comparison.tally.found, report.truth)
        written = self.target if report.truth == "source" else self.source
        key = mapping.target_key if report.truth == "source" else mapping.key
        self.progress(mapping.source, "repair", 0, len(repairs))
        await _write(written, repairs[0].table, key, repairs)
        self.progress(mapping.source, "repair", len(repairs), len(repairs))
        if self.history is not None:
            await self.history.repaired(report, repairs)
        result.repaired = len(repairs)
        result.remaining = await comparison.recheck()
        result.seconds += time.perf_counter() - started
        return result


def table_specs(spec: ReplicationSpec, tables: Sequence[str] | None = None) -> list[TableSpec]:
    """The replication's tables, or those of them named in ``tables`` (by source or target
    name); :class:`ValidationError` naming the known ones for any other name."""
    if not tables:
        return list(spec.tables)
    known = {t.source for t in spec.tables} | {t.target for t in spec.tables if t.target}
    unknown = [t for t in tables if t not in known]
    if unknown:
        raise ValidationError(
            f"replication {spec.name!r} has no table {', '.join(map(repr, unknown))}; "
            f"its tables: {', '.join(t.source for t in spec.tables)}"
        )
    return [t for t in spec.tables if t.source in tables or (t.target or t.source) in tables]


async def reconcile(
    spec: ReplicationSpec,
    *,
    store: Store | None = None,
    repair: bool = False,
    tables: Sequence[str] | None = None,
    metrics: ReconcileMetrics | None = None,
    progress: Progress = _no_progress,
) -> ReconcileReport:
    """Open the replication's two databases, run a :class:`Reconciler` on them (recording
    in ``store``, the hybridmesh store, when given) and close them; the report."""
    source = await open_database(spec.source.url)
    try:
        target = await open_database(spec.target.url)
        try:
            reconciler = Reconciler(
                spec,
                source=source,
                target=target,
                history=None if store is None else ReconcileHistory(store),
                metrics=metrics,
                progress=progress,
            )
            return await reconciler.run(repair=repair, tables=tables)
        finally:
            await target.close()
    finally:
        await source.close()


class ReconcileSchedule:
    """Reconciles a replication every ``spec.reconcile.every`` seconds, repairing what it
    finds when ``spec.reconcile.repair`` says so: the loop a replicator starts as a task.

    A run that fails is logged (and recorded, with ``store``) and the next one goes ahead
    on time. :attr:`last` is the last run's report; ``on_report`` is awaited with each.
    """

    def __init__(
        self,
        spec: ReplicationSpec,
        *,
        store: Store | None = None,
        every: float | None = None,
        repair: bool | None = None,
        metrics: ReconcileMetrics | None = None,
        on_report: Callable[[ReconcileReport], Awaitable[None]] | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        interval = every if every is not None else spec.reconcile.every
        if interval is None or interval <= 0:
            raise ConfigurationError(
                f"replication {spec.name!r}: reconcile.every is not set, so there is no "
                "schedule to run"
            )
        self.spec = spec
        self.store = store
        self.every = float(interval)
        self.repair = spec.reconcile.repair if repair is None else repair
        self.metrics = metrics if metrics is not None else ReconcileMetrics.default()
        self.on_report = on_report
        self.clock = clock
        self.last: ReconcileReport | None = None
        self.runs = 0
        self.failures = 0

    async def run_once(self) -> ReconcileReport:
        """One reconciliation now; its report."""
        report = await reconcile(
            self.spec, store=self.store, repair=self.repair, metrics=self.metrics
        )
        self.last = report
        self.runs += 1
        if self.on_report is not None:
            await self.on_report(report)
        return report

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Reconcile now and then every :attr:`every` seconds, until ``stop`` is set (or
        the task is cancelled)."""
        stop = stop or asyncio.Event()
        while not stop.is_set():
            started = self.clock.monotonic()
            try:
                report = await self.run_once()
            except Exception as error:  # the next run may well succeed: keep the schedule
                self.failures += 1
                _log.warning("reconciliation of %s failed: %s", self.spec.name, error)
            else:
                _log.info(
                    "reconciliation of %s: %s, %d differences, %d repaired, %d remaining",
                    self.spec.name,
                    report.status,
                    report.inconsistent,
                    report.repaired,
                    report.remaining,
                )
            wait = max(self.every - (self.clock.monotonic() - started), 0.0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), wait)


__all__ = [
    "MAX_SEGMENTS",
    "SAMPLE_LIMIT",
    "Difference",
    "Progress",
    "ReconcileReport",
    "ReconcileSchedule",
    "Reconciler",
    "Repair",
    "TableReport",
    "compare_table",
    "reconcile",
    "table_specs",
]
