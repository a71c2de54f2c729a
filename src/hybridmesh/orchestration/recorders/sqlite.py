"""The engine's recorder on SQLite: every batch of changes is one :meth:`Store.batch` (one
hop to the database thread, one commit). SQLite has one writer at a time, so claims and
renewals need no row locks."""

from __future__ import annotations

from collections.abc import Sequence

from hybridmesh.orchestration.recorders.base import Change, ExecutionRecorder


class SqliteRecorder(ExecutionRecorder):
    """:class:`ExecutionRecorder` for SQLite."""

    async def write(self, changes: Sequence[Change]) -> list[bool | None]:
        return await self.write_batch(changes)


__all__ = ["SqliteRecorder"]
