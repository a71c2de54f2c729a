"""The canonical text of values as different drivers return them, and row hashes."""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from uuid import UUID

import pytest

from hybridmesh.data.checksums import (
    canonical_text,
    row_hash,
    row_text,
    same_text_in_sql,
    type_family,
    values_equal,
)

PLUS_2 = timezone(timedelta(hours=2))


def test_a_row_hash_is_the_last_60_bits_of_the_md5() -> None:
    digest = hashlib.md5(b"3;5:hello~").hexdigest()
    assert row_hash("3;5:hello~") == int(digest[-15:], 16)
    assert row_text([3, "hello", None]) == "3;5:hello~"


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (2, 2.0),
        (2, Decimal("2.00")),
        (Decimal("1.50"), 1.5),
        (Decimal("0.1"), 0.1),
        (True, 1),
        (
            datetime(2024, 5, 1, 12, 0, tzinfo=UTC),
            datetime(2024, 5, 1, 14, 0, tzinfo=timezone(timedelta(hours=2))),
        ),
        (b"\x00\xff", memoryview(b"\x00\xff")),
        ({"b": 1, "a": [1, 2]}, {"a": [1, 2], "b": 1}),
    ],
)
def test_equal_values_from_different_drivers_have_one_text(a: object, b: object) -> None:
    assert canonical_text(a) == canonical_text(b)
    assert values_equal(a, b)


@pytest.mark.parametrize(
    ("a", "b"),
    [("", None), ("1", 2), (Decimal("1.5"), Decimal("1.05")), (0.1, 0.1000001), ("a", "A")],
)
def test_different_values_differ(a: object, b: object) -> None:
    assert not values_equal(a, b)


def test_times_kept_as_text_equal_the_same_time() -> None:
    """SQLite keeps times as text; PostgreSQL returns them as datetimes."""
    assert values_equal("2024-05-01 12:30:00", datetime(2024, 5, 1, 12, 30))
    assert values_equal("2024-05-01T12:30:00", datetime(2024, 5, 1, 12, 30))
    assert values_equal("2024-05-01", date(2024, 5, 1))
    assert not values_equal("2024-05-01 12:30:01", datetime(2024, 5, 1, 12, 30))
    assert not values_equal("not a time", datetime(2024, 5, 1, 12, 30))
    assert values_equal('{"a": 1}', {"a": 1})


def test_uuid_and_bytes_text() -> None:
    value = UUID("12345678-1234-5678-1234-567812345678")
    assert canonical_text(value) == "12345678-1234-5678-1234-567812345678"
    assert canonical_text(b"\x01\xab") == "\\x01ab"


@pytest.mark.parametrize(
    ("dialects", "types", "in_sql"),
    [
        (("sqlite", "postgresql"), ("INTEGER", "bigint"), True),
        (("sqlite", "postgresql"), ("TEXT", "character varying(20)"), True),
        (("sqlite", "postgresql"), ("VARCHAR(10)", "text"), True),
        (("sqlite", "postgresql"), ("REAL", "double precision"), False),
        (("sqlite", "postgresql"), ("BOOLEAN", "boolean"), False),
        (("sqlite", "postgresql"), ("TIMESTAMP", "timestamp without time zone"), False),
        (("sqlite", "sqlite"), ("INTEGER", "TEXT"), False),
        (("postgresql", "postgresql"), ("numeric(12,2)", "numeric(10,2)"), True),
        (("postgresql", "postgresql"), ("timestamp with time zone",) * 2, True),
        (("postgresql", "postgresql"), ("double precision", "real"), False),
        (("postgresql", "postgresql"), ("interval",) * 2, False),
    ],
)
def test_which_types_compare_in_sql(
    dialects: tuple[str, str], types: tuple[str, str], in_sql: bool
) -> None:
    assert same_text_in_sql(dialects, types) is in_sql


def test_type_families() -> None:
    assert type_family("sqlite", "UNSIGNED BIG INT") == "integer"
    assert type_family("sqlite", "NVARCHAR(40)") == "text"
    assert type_family("sqlite", "") == "other"
    assert type_family("postgresql", "character varying(8)") == "text"
    assert type_family("postgresql", "integer[]") == "other"
