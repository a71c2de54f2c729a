"""Both databases compute the same checksum as Python for equal rows of integers, text
and NULLs, and a different one when any value changes."""

from __future__ import annotations

from typing import Any

import pytest
from tests.integration.data.reconcile_rig import create, opened

from hybridmesh.data.checksums import checksum, checksum_sql, checksum_value, row_text_sql
from hybridmesh.store import Store

ROWS: list[tuple[Any, ...]] = [
    (1, "plain", 0),
    (2, "", None),  # empty text is not NULL
    (3, None, -7),
    (4, "~", 2**62),
    (5, "3:abc", -(2**62)),
    (6, "semi;colon", 12),
    (7, "naïve café ☕ 🚀", 1),
    (8, "12", 34),
    (9, "line\nbreak\ttab 'quote' \"double\"", None),
]
COLUMNS = (("id", "bigint"), ("label", "text"), ("amount", "bigint"))


async def _sql_checksum(db: Store, table: str, columns: tuple[tuple[str, str], ...]) -> Any:
    text = row_text_sql(db.dialect, columns)
    row = await db.fetch_one(f"SELECT {checksum_sql(db.dialect, text)} FROM {table} AS t")
    assert row is not None
    return int(row["n"]), checksum_value(row["s"])


async def test_equal_rows_have_one_checksum_in_both_databases_and_in_python(
    pair_urls: tuple[str, str],
) -> None:
    async with opened(pair_urls) as (source, target):
        await create(source, "items", "id BIGINT PRIMARY KEY, label TEXT, amount BIGINT", ROWS)
        # The target names its columns differently: names are not part of the checksum.
        await create(target, "goods", "ref BIGINT PRIMARY KEY, title TEXT, total BIGINT", ROWS)
        renamed = (("ref", "bigint"), ("title", "text"), ("total", "bigint"))
        ours = await _sql_checksum(source, "items", COLUMNS)
        theirs = await _sql_checksum(target, "goods", renamed)
    assert ours == theirs == checksum(ROWS)
    assert ours[0] == len(ROWS)


@pytest.mark.parametrize(
    "changed",
    [
        (2, None, None),  # '' became NULL
        (3, "", -7),  # NULL became ''
        (1, "plai", 0),  # a character less
        (6, "semi;colon", 13),
        (7, "naive café ☕ 🚀", 1),
    ],
)
async def test_any_changed_value_changes_the_checksum(
    tmp_path: Any, changed: tuple[Any, ...]
) -> None:
    url = f"sqlite:///{tmp_path / 'one.db'}"
    rows = [changed if row[0] == changed[0] else row for row in ROWS]
    async with opened((url, f"sqlite:///{tmp_path / 'two.db'}")) as (first, second):
        await create(first, "items", "id BIGINT PRIMARY KEY, label TEXT, amount BIGINT", ROWS)
        await create(second, "items", "id BIGINT PRIMARY KEY, label TEXT, amount BIGINT", rows)
        before = await _sql_checksum(first, "items", COLUMNS)
        after = await _sql_checksum(second, "items", COLUMNS)
    assert before != after
    assert after == checksum(rows)


def test_values_cannot_run_into_the_next_column() -> None:
    """Moving characters from one text column to the next, or a number's digits into
    text, gives a different checksum."""
    assert checksum([("ab", "c")]) != checksum([("a", "bc")])
    assert checksum([(1, "2")]) != checksum([(12, "")])
    assert checksum([("~", None)]) != checksum([(None, "~")])
