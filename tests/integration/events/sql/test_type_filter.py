"""The SQL a read tests a group's pattern with selects exactly the types the pattern matches,
on SQLite and on PostgreSQL: every pattern of up to three tokens against every type of up
to four, over letters of either case and the one token character that LIKE reads as a
wildcard ('_'; the characters GLOB reads as wildcards cannot be in a type or pattern)."""

from __future__ import annotations

import itertools
from typing import Any

from hybridmesh.events.backends import _sql_queries as q
from hybridmesh.events.backends.sql import recorder_for
from hybridmesh.events.subjects import matches
from hybridmesh.store import Store

LITERALS = ("a", "A", "_", "-", "a_", "_a", "xa", "a-")


def _all(tokens: tuple[str, ...], most: int) -> list[tuple[str, ...]]:
    return [
        combo for size in range(1, most + 1) for combo in itertools.product(tokens, repeat=size)
    ]


# Every type of up to four tokens over the first six, and two with longer tokens.
TYPES = [*(".".join(combo) for combo in _all(LITERALS[:6], 4)), "ab.b", "xa_b.a"]
PATTERNS = [
    ".".join(combo)
    for combo in _all((*LITERALS, "*", ">"), 3)
    if ">" not in combo[:-1]  # '>' only last
]


async def test_the_condition_selects_exactly_the_matching_types(store: Any) -> None:
    assert isinstance(store, Store)
    recorder = recorder_for(store)
    await store.execute("CREATE TABLE kinds (type TEXT NOT NULL)")
    await store.executemany("INSERT INTO kinds (type) VALUES (?)", [(t,) for t in TYPES])
    inexact = 0
    for pattern in PATTERNS:
        condition, args = q.type_filter(pattern, recorder.wildcard_match)
        rows = await store.fetch_all(f"SELECT type FROM kinds WHERE 1 = 1{condition}", *args)
        selected = {row["type"] for row in rows}
        wanted = {t for t in TYPES if matches(pattern, t)}
        tokens = pattern.split(".")
        if tokens[-1] == ">" and "*" in tokens:
            # A '*' before '>' may stand for several tokens in SQL: it only narrows.
            assert selected >= wanted, pattern
            inexact += selected != wanted
        else:
            assert selected == wanted, pattern
    assert inexact  # the exception is real, and matches() is what decides there
