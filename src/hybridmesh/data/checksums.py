"""Row checksums that two databases compute alike, and the canonical text they hash.

Reconciliation compares a source and a target table without moving their rows: each side
sums a hash of each row's *canonical text* over a segment of keys, and only segments whose
count or sum differ are looked at row by row. For that to work, equal rows must give equal
text on both sides, whichever database holds them, and different rows different text.

The canonical text of a row is the concatenation of its values' pieces, in column order:
``~`` for NULL, ``<digits>;`` for a whole number of an integer column, else
``<length>:<text>``, the value's text preceded by its length in characters. No value can
run into the next, whatever it holds: a piece ends at the ``;`` (which no whole number
holds), or after as many characters as its length says. A row's hash is the last 60 bits
of the MD5 of that text, as a whole number; a segment's checksum is its row count and the
exact sum of its rows' hashes.

Where the text is made:

- **In SQL**, where both columns' types have the same text in both databases: integers
  (``smallint``, ``integer``, ``bigint``; SQLite's INT affinity) and text (``text``,
  ``varchar``; SQLite's TEXT affinity), on any pair of SQLite and PostgreSQL. Between two
  PostgreSQL databases also ``numeric``, ``boolean``, ``uuid``, ``json``, ``jsonb``,
  ``bytea``, ``character``, ``time``, and floats, ``date``, ``timestamp`` and
  ``timestamptz`` as the hex of their binary form (so no rounding, DateStyle or time
  zone setting can make two values look alike, or one value look different). PostgreSQL computes
  MD5 natively; SQLite through the functions this module registers on every connection
  hybridmesh opens (:func:`register_functions`).
- **In Python**, for every other type (SQLite's and PostgreSQL's text of floats, booleans,
  timestamps, JSON and bytes differ) and for mappings that transform columns or compute
  them: the rows are read and hashed with :func:`canonical_text`, which gives numbers,
  times and bytes one text whichever driver returned them.

A checksum only decides which rows are read; whether two rows differ is always decided in
Python by :func:`values_equal`, so a type whose text differs between the two sides costs
time (its segments are read), never a wrong answer.
"""

from __future__ import annotations

import hashlib
import json
import math
import sqlite3
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, Literal

from hybridmesh.data.databases import quote
from hybridmesh.store.sqlite import on_connect

HASH_BITS = 60
_HASH_MASK = (1 << HASH_BITS) - 1
_HEX_DIGITS = HASH_BITS // 4  # the last 15 hex digits of the MD5

#: SQLite's names for the functions :func:`register_functions` adds.
SQLITE_HASH = "hybridmesh_hash60"
SQLITE_HASH_SUM = "hybridmesh_hash60_sum"

Family = Literal["integer", "text", "other"]

_PG_INTEGERS = frozenset({"smallint", "integer", "bigint"})
_PG_TEXTS = frozenset({"text", "character varying", "varchar", "citext"})
_PG_FLOATS = frozenset({"real", "double precision"})
#: Times, and the function giving each one's binary form (whole units since 2000-01-01).
_PG_MOMENTS = {
    "date": "date_send",
    "timestamp": "timestamp_send",
    "timestamp without time zone": "timestamp_send",
    "timestamp with time zone": "timestamptz_send",
}
#: PostgreSQL types whose ``::text`` is the same for equal values on any server.
_PG_AS_TEXT = frozenset(
    {"numeric", "boolean", "uuid", "json", "jsonb", "bytea", "character", "time without time zone"}
)


# -- Python side ---------------------------------------------------------------------------


def row_hash(text: str) -> int:
    """The hash of a row's canonical text: the last 60 bits of its MD5."""
    return int.from_bytes(hashlib.md5(text.encode()).digest(), "big") & _HASH_MASK


def canonical_text(value: Any) -> str | None:
    """``value``'s text for hashing and comparing; None for NULL.

    Whole numbers are written without a fraction whatever their type (``2``, ``2.0`` and
    ``Decimal("2.00")`` are all ``2``), other numbers in plain decimal notation, booleans
    as ``1``/``0`` (SQLite stores them so), times in ISO 8601 with a space (an aware one
    in UTC, without the offset), bytes as ``\\x`` and hex (PostgreSQL's ``bytea`` text),
    JSON documents compactly with sorted keys.
    """
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _float_text(value)
    if isinstance(value, Decimal):
        return _decimal_text(value)
    if isinstance(value, datetime):
        moment: datetime = value
        if moment.tzinfo is not None:
            moment = moment.astimezone(UTC).replace(tzinfo=None)
        return moment.isoformat(sep=" ")
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return f"{value.total_seconds():.6f}s"
    if isinstance(value, bytes | bytearray | memoryview):
        return "\\x" + bytes(value).hex()
    if isinstance(value, dict | list):
        text: str = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
        return text
    return str(value)


def _float_text(value: float) -> str:
    if not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return _decimal_text(Decimal(repr(value)))


def _decimal_text(value: Decimal) -> str:
    if not value.is_finite():
        return "NaN" if value.is_nan() else ("Infinity" if value > 0 else "-Infinity")
    if value == value.to_integral_value():
        return str(int(value))
    return format(value.normalize(), "f")


def piece(value: Any) -> str:
    """One value's part of a row's canonical text."""
    if isinstance(value, int):
        return f"{int(value)};"
    text = canonical_text(value)
    return "~" if text is None else f"{len(text)}:{text}"


def row_text(values: Iterable[Any]) -> str:
    """The canonical text of a row's values, in column order."""
    return "".join(piece(value) for value in values)


def checksum(rows: Iterable[Sequence[Any]]) -> tuple[int, int]:
    """The checksum of rows (each its values in column order): their count and the sum of
    their hashes."""
    count = total = 0
    for values in rows:
        count += 1
        total += row_hash(row_text(values))
    return count, total


def values_equal(a: Any, b: Any) -> bool:
    """Whether two values, as two drivers returned them, are the same value.

    Equal canonical text decides; besides, a text that reads as the other side's date or
    time (SQLite keeps times as text) or as the other side's JSON document is equal to it.
    """
    if a == b or canonical_text(a) == canonical_text(b):
        return True
    if isinstance(b, str):
        a, b = b, a
    if not isinstance(a, str) or b is None:
        return False
    if isinstance(b, datetime | date):
        try:
            parsed: Any = datetime.fromisoformat(a)
        except ValueError:
            return False
        if not isinstance(b, datetime):
            parsed = parsed.date() if parsed.time() == time() else parsed
        return canonical_text(parsed) == canonical_text(b)
    if isinstance(b, dict | list):
        try:
            return canonical_text(json.loads(a)) == canonical_text(b)
        except ValueError:
            return False
    return False


# -- SQL side ------------------------------------------------------------------------------


def type_family(dialect: str, declared: str) -> Family:
    """Whether a column of ``declared`` type (as :func:`~hybridmesh.data.databases.table_shape`
    reports it) holds integers, text or something else."""
    declared = declared.lower()
    if dialect == "sqlite":  # SQLite's affinity rules, in their order
        if "int" in declared:
            return "integer"
        if any(word in declared for word in ("char", "clob", "text")):
            return "text"
        return "other"
    base = _pg_base(declared)
    if base in _PG_INTEGERS:
        return "integer"
    if base in _PG_TEXTS:
        return "text"
    return "other"


def _pg_base(declared: str) -> str:
    """A PostgreSQL type without its modifiers: ``character varying(20)`` is
    ``character varying``, ``timestamp(3) with time zone`` ``timestamp with time zone``."""
    name, _, rest = declared.partition("(")
    if rest:
        name = (name + rest.partition(")")[2]).strip()
    return " ".join(name.split())


def same_text_in_sql(dialects: tuple[str, str], types: tuple[str, str]) -> bool:
    """Whether columns of ``types`` in databases of ``dialects`` get the same canonical
    text in SQL for equal values, so their checksums can be computed there."""
    (first, second), (a, b) = dialects, types
    family = type_family(first, a)
    if family != "other" and family == type_family(second, b):
        return True
    if first != "postgresql" or second != "postgresql":
        return False
    base = _pg_base(a.lower())
    if base != _pg_base(b.lower()):
        return False
    return base in _PG_AS_TEXT or base in _PG_FLOATS or base in _PG_MOMENTS


def text_sql(dialect: str, column: str, declared: str, table: str = "t") -> str:
    """SQL for the canonical text of ``column`` (NULL for NULL), which must be a type that
    :func:`same_text_in_sql` accepts."""
    ref = f"{table}.{quote(column)}"
    if dialect == "sqlite":
        return f"CAST({ref} AS TEXT)"
    base = _pg_base(declared.lower())
    if base in _PG_TEXTS and base != "citext":
        return ref
    if base in _PG_FLOATS:
        return f"encode(float8send({ref}::float8), 'hex')"
    if base in _PG_MOMENTS:
        return f"encode({_PG_MOMENTS[base]}({ref}), 'hex')"
    return f"{ref}::text"


def row_text_sql(dialect: str, columns: Sequence[tuple[str, str]], table: str = "t") -> str:
    """SQL for the canonical text of a row's ``columns`` (name and declared type, in
    comparison order)."""
    pieces = []
    for column, declared in columns:
        text = text_sql(dialect, column, declared, table)
        if type_family(dialect, declared) == "integer":
            pieces.append(f"COALESCE({text} || ';', '~')")
        else:
            pieces.append(f"COALESCE(length({text}) || ':' || {text}, '~')")
    return " || ".join(pieces) if pieces else "''"


def hash_sql(dialect: str, text: str) -> str:
    """SQL for the 60-bit hash of the canonical text ``text`` (an SQL expression)."""
    if dialect == "sqlite":
        return f"{SQLITE_HASH}({text})"
    return f"('x' || substr(md5({text}), {33 - _HEX_DIGITS}))::bit({HASH_BITS})::bigint"


def checksum_sql(dialect: str, text: str) -> str:
    """The select list of a segment's checksum over rows whose canonical text is ``text``:
    ``n``, the row count, and ``s``, the sum of their hashes (NULL for no rows; on SQLite
    the sum's decimal text, as it may pass 64 bits)."""
    if dialect == "sqlite":
        return f"count(*) AS n, {SQLITE_HASH_SUM}({text}) AS s"
    return f"count(*) AS n, sum({hash_sql(dialect, text)}) AS s"


def checksum_value(value: Any) -> int:
    """A sum as :func:`checksum_sql` returns it (NULL, a decimal, its text) as an int."""
    return 0 if value is None else int(value)


# -- SQLite functions ----------------------------------------------------------------------


class _HashSum:
    """SQLite aggregate: the exact sum of row hashes, as decimal text (it may pass the 64
    bits SQLite's integers hold)."""

    def __init__(self) -> None:
        self.total = 0

    def step(self, text: str | None) -> None:
        if text is not None:
            self.total += row_hash(text)

    def finalize(self) -> str:
        return str(self.total)


def _hash_or_null(text: str | None) -> int | None:
    return None if text is None else row_hash(text)


def register_functions(conn: sqlite3.Connection) -> None:
    """Add :data:`SQLITE_HASH` (a text's row hash) and :data:`SQLITE_HASH_SUM` (the sum of
    the row hashes of a group) to a SQLite connection."""
    conn.create_function(SQLITE_HASH, 1, _hash_or_null, deterministic=True)
    conn.create_aggregate(SQLITE_HASH_SUM, 1, _HashSum)  # type: ignore[arg-type]


# Every SQLite connection hybridmesh opens from now on can compute checksums.
on_connect(register_functions)


__all__ = [
    "HASH_BITS",
    "SQLITE_HASH",
    "SQLITE_HASH_SUM",
    "canonical_text",
    "checksum",
    "checksum_sql",
    "checksum_value",
    "hash_sql",
    "piece",
    "register_functions",
    "row_hash",
    "row_text",
    "row_text_sql",
    "same_text_in_sql",
    "text_sql",
    "type_family",
    "values_equal",
]
