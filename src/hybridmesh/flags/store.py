"""Flags in the state store: one row per flag, one revision for them all.

Every change (a file applied, a flag set or deleted) moves the revision in the same
transaction and, on PostgreSQL, sends ``NOTIFY hybridmesh_flags``; each process's
:class:`~hybridmesh.flags.client.FlagClient` reloads when the revision moves. A flag's
``version`` counts its own changes (1 when created), so a reload recompiles only the flags
that changed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hybridmesh.core.applying import ApplyResult, plan_apply
from hybridmesh.core.errors import NotFoundError, Problem, ValidationError
from hybridmesh.core.serialization import dumps, loads
from hybridmesh.flags.files import LoadedFlag, load_flags
from hybridmesh.flags.model import Flag
from hybridmesh.store import Store
from hybridmesh.store._base import Transaction

#: The PostgreSQL channel a change is announced on.
CHANNEL = "hybridmesh_flags"


@dataclass(frozen=True)
class StoredFlag:
    """A flag as stored: its definition, its own version, the revision of its last
    change, where it came from and when it changed (epoch seconds)."""

    flag: Flag
    version: int
    revision: int
    source: str | None
    updated_at: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.flag.key,
            "version": self.version,
            "revision": self.revision,
            "source": self.source,
            "updated_at": self.updated_at,
            "definition": self.flag.definition(),
        }


class FlagStore:
    """The flags' tables in a (migrated) store."""

    def __init__(self, store: Store, *, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock

    # -- reading ---------------------------------------------------------------------------

    async def revision(self) -> int:
        return int(await self.store.fetch_value("SELECT revision FROM ff_revision WHERE id = 1"))

    async def list(self) -> list[StoredFlag]:
        rows = await self.store.fetch_all(f"{_SELECT} ORDER BY key")
        return [_stored(row) for row in rows]

    async def get(self, key: str) -> StoredFlag:
        row = await self.store.fetch_one(f"{_SELECT} WHERE key = ?", key)
        if row is None:
            raise NotFoundError(f"no flag {key!r}")
        return _stored(row)

    async def find(self, key: str) -> StoredFlag | None:
        row = await self.store.fetch_one(f"{_SELECT} WHERE key = ?", key)
        return None if row is None else _stored(row)

    async def snapshot(self, known: dict[str, int] | None = None) -> tuple[int, dict[str, Any]]:
        """The revision and every flag as of it (one transaction): by key, the stored flag,
        or its version alone when ``known`` has the key at that version (the caller keeps
        what it compiled)."""
        known = known or {}
        async with self.store.transaction() as tx:
            revision = int(await tx.fetch_value("SELECT revision FROM ff_revision WHERE id = 1"))
            versions = await tx.fetch_all("SELECT key, version FROM ff_flags")
            changed = [r["key"] for r in versions if known.get(r["key"]) != int(r["version"])]
            rows = await _rows(tx, changed) if changed else []
        flags: dict[str, Any] = {r["key"]: int(r["version"]) for r in versions}
        flags.update({row["key"]: _stored(row) for row in rows})
        return revision, flags

    # -- writing ---------------------------------------------------------------------------

    async def diff(self, flags: Sequence[Flag], *, prune: bool = False) -> ApplyResult:
        """What :meth:`apply` would do, doing nothing."""
        current = {s.flag.key: s.flag for s in await self.list()}
        return _plan(current, flags, prune)

    async def apply(
        self,
        flags: Sequence[LoadedFlag | Flag],
        *,
        prune: bool = False,
        source: str | None = None,
    ) -> ApplyResult:
        """Store ``flags`` (created or replaced), deleting the others when ``prune``; one
        transaction, one revision."""
        given = [item.flag if isinstance(item, LoadedFlag) else item for item in flags]
        now = self.clock()
        try:
            async with self.store.transaction() as tx:
                revision = await self._bump(tx)
                rows = await tx.fetch_all("SELECT key, definition FROM ff_flags")
                current = {row["key"]: _flag(row["definition"]) for row in rows}
                result = _plan(current, given, prune)
                if not (result.created or result.updated or result.deleted):
                    raise _Unchanged(result)
                for flag in given:
                    if flag.key in result.created:
                        await _insert(tx, flag, revision, source, now)
                    elif flag.key in result.updated:
                        await _replace(tx, flag, revision, source, now)
                for key in result.deleted:
                    await tx.execute("DELETE FROM ff_flags WHERE key = ?", key)
        except _Unchanged as unchanged:
            return unchanged.result  # type: ignore[no-any-return]
        return result

    async def apply_file(self, path: Path, *, prune: bool = False) -> ApplyResult:
        """Store the flags of a YAML file or folder (:func:`load_flags`; its
        :class:`ValidationError` names file, line and field, and nothing is written)."""
        return await self.apply(load_flags(path), prune=prune, source=str(path))

    async def put(self, flag: Flag, *, source: str | None = None) -> StoredFlag:
        """Store one flag, created or replaced."""
        return await self.update(flag.key, lambda _: flag, source=source)

    async def update(
        self,
        key: str,
        change: Callable[[Flag | None], Flag],
        *,
        source: str | None = None,
    ) -> StoredFlag:
        """Store ``change(current)`` as flag ``key`` (``current`` is None when there is no
        such flag), reading and writing in one transaction that other writers wait for,
        so no change is lost. Returns the flag as stored; when ``change`` returns the flag
        as it was, nothing is written. What ``change`` raises rolls everything back."""
        now = self.clock()
        try:
            async with self.store.transaction() as tx:
                revision = await self._bump(tx)
                row = await tx.fetch_one(f"{_SELECT} WHERE key = ?", key)
                stored = None if row is None else _stored(row)
                flag = change(None if stored is None else stored.flag)
                if flag.key != key:
                    raise ValidationError(
                        [Problem(f"the flag's key must stay {key!r}", field="key")]
                    )
                if stored is None:
                    await _insert(tx, flag, revision, source, now)
                    return StoredFlag(flag, 1, revision, source, now)
                if stored.flag == flag:
                    raise _Unchanged(stored)
                await _replace(tx, flag, revision, source, now)
                return StoredFlag(flag, stored.version + 1, revision, source, now)
        except _Unchanged as unchanged:
            return unchanged.result  # type: ignore[no-any-return]

    async def update_in(
        self, tx: Transaction, key: str, change: Callable[[Flag], Flag]
    ) -> StoredFlag:
        """:meth:`update` of an existing flag inside the caller's transaction (a migration
        plan records its step in the same one); nothing is written when ``change`` returns
        the flag as it was. :class:`NotFoundError` when there is no flag ``key``."""
        row = await tx.fetch_one(f"{_SELECT} WHERE key = ?", key)
        if row is None:
            raise NotFoundError(f"no flag {key!r}")
        stored = _stored(row)
        flag = change(stored.flag)
        if flag == stored.flag:
            return stored
        if flag.key != key:
            raise ValidationError([Problem(f"the flag's key must stay {key!r}", field="key")])
        revision = await self._bump(tx)
        now = self.clock()
        await _replace(tx, flag, revision, stored.source, now)
        return StoredFlag(flag, stored.version + 1, revision, stored.source, now)

    async def delete(self, key: str) -> bool:
        async with self.store.transaction() as tx:
            deleted = await tx.execute("DELETE FROM ff_flags WHERE key = ?", key)
            if deleted:
                await self._bump(tx)
        return bool(deleted)

    async def _bump(self, tx: Transaction) -> int:
        """Move the revision and return it; on PostgreSQL, announce the change at commit.
        A writer does this first: the next writer then waits for the revision's row (on
        SQLite, the transaction already holds the write lock), so what a writer reads
        after it is what the writers before it committed."""
        await tx.execute("UPDATE ff_revision SET revision = revision + 1 WHERE id = 1")
        if self.store.dialect == "postgresql":
            await tx.execute(f"NOTIFY {CHANNEL}")
        return int(await tx.fetch_value("SELECT revision FROM ff_revision WHERE id = 1"))


class _Unchanged(Exception):
    """Nothing to write: roll the revision back and answer ``result``."""

    def __init__(self, result: Any) -> None:
        super().__init__()
        self.result = result


_SELECT = "SELECT key, definition, version, revision, source, updated_at FROM ff_flags"


async def _rows(tx: Transaction, keys: list[str]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for start in range(0, len(keys), 500):
        chunk = keys[start : start + 500]
        marks = ", ".join("?" for _ in chunk)
        found += await tx.fetch_all(f"{_SELECT} WHERE key IN ({marks})", *chunk)
    return found


async def _insert(
    tx: Transaction, flag: Flag, revision: int, source: str | None, now: float
) -> None:
    await tx.execute(
        "INSERT INTO ff_flags (key, definition, version, revision, source, updated_at) "
        "VALUES (?, ?, 1, ?, ?, ?)",
        flag.key,
        dumps(flag.definition()),
        revision,
        source,
        now,
    )


async def _replace(
    tx: Transaction, flag: Flag, revision: int, source: str | None, now: float
) -> None:
    await tx.execute(
        "UPDATE ff_flags SET definition = ?, version = version + 1, revision = ?, source = ?, "
        "updated_at = ? WHERE key = ?",
        dumps(flag.definition()),
        revision,
        source,
        now,
        flag.key,
    )


def _flag(definition: str) -> Flag:
    return Flag.model_validate(loads(definition))


def _stored(row: dict[str, Any]) -> StoredFlag:
    return StoredFlag(
        _flag(row["definition"]),
        int(row["version"]),
        int(row["revision"]),
        row["source"],
        float(row["updated_at"]),
    )


def _plan(current: dict[str, Flag], flags: Sequence[Flag], prune: bool) -> ApplyResult:
    return plan_apply(current, flags, lambda item: item.key, prune=prune)


__all__ = ["CHANNEL", "ApplyResult", "FlagStore", "StoredFlag"]
