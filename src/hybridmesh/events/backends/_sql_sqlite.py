"""The SQL event log on SQLite: portable statements, run one row at a time.

SQLite has one writer at a time, so appends need no lock to commit in seq order, and no
other process can be woken: they find new events by polling.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from hybridmesh.events.backends import _sql_queries as q
from hybridmesh.events.backends._sql_log import LogRecorder, LogRow, SettleRow
from hybridmesh.store import Statement, Transaction


class SqliteLogRecorder(LogRecorder):
    """:class:`LogRecorder` for SQLite."""

    lease_lock = ""

    async def append(self, queries: Transaction, rows: Sequence[LogRow]) -> None:
        await queries.executemany(q.INSERT_EVENT, [row.values() for row in rows])

    def append_statement(self, rows: Sequence[LogRow]) -> Statement:
        return Statement(q.INSERT_EVENT, rows=[row.values() for row in rows])

    async def settle(self, queries: Transaction, rows: Sequence[SettleRow]) -> None:
        await queries.executemany(q.SETTLE, [row.values() for row in rows])

    @staticmethod
    def wildcard_match(parts: Sequence[str | None]) -> tuple[str, tuple[Any, ...]]:
        # GLOB, as SQLite's LIKE ignores the case of ASCII letters; a literal *, ? or [
        # is written as a one-character set.
        glob = "".join(
            "*" if part is None else _GLOB_SPECIAL.sub(r"[\g<0>]", part) for part in parts
        )
        return "type GLOB ?", (glob,)


_GLOB_SPECIAL = re.compile(r"[*?\[]")


__all__ = ["SqliteLogRecorder"]
