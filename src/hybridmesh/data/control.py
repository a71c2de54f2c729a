"""Replications and event bridges as the state store keeps them: their definitions, what a
person asks of them (run, pause, stop, reverse sync) and what the process running them last
reported.

The process that runs a replication (``hybridmesh replicate start``, or a migration plan's
runner) reads the asked-for state every half second and writes its status every second; the
CLI's ``pause``, ``resume``, ``stop`` and ``status`` go through here, so they work from any
machine that reaches the store.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from hybridmesh.core.applying import ApplyResult, plan_apply
from hybridmesh.core.errors import NotFoundError
from hybridmesh.data.config import BridgeSpec, DataDefinitions, ReplicationSpec
from hybridmesh.store import Store

Desired = Literal["running", "paused", "stopped"]
Kind = Literal["replication", "bridge"]

#: A status older than this many seconds means no process is running the replication.
STALE_AFTER = 5.0


@dataclass(frozen=True)
class DataRecord:
    """One stored replication or bridge."""

    name: str
    kind: Kind
    spec: ReplicationSpec | BridgeSpec
    desired: Desired
    reverse: bool
    status: dict[str, Any] | None
    owner: str | None
    heartbeat_at: float | None
    updated_at: float

    def running_now(self, now: float | None = None) -> bool:
        """Whether a process reported on it within :data:`STALE_AFTER` seconds."""
        now = time.time() if now is None else now
        return self.heartbeat_at is not None and now - self.heartbeat_at <= STALE_AFTER

    def to_dict(self, now: float | None = None) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "desired": self.desired,
            "reverse": self.reverse,
            "running": self.running_now(now),
            "owner": self.owner if self.running_now(now) else None,
            "status": self.status,
            "heartbeat_at": self.heartbeat_at,
            "spec": self.spec.model_dump(mode="json"),
        }


class DataControl:
    """The stored replications and bridges of one state store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def apply(self, definitions: DataDefinitions, *, prune: bool = False) -> ApplyResult:
        """Store the definitions (new ones stopped); with ``prune``, delete the ones not
        given. A changed definition keeps its asked-for state."""
        given: list[ReplicationSpec | BridgeSpec] = [
            *definitions.replications.values(),
            *definitions.bridges.values(),
        ]
        current = {r.name: r.spec for r in await self.list()}
        result = plan_apply(current, given, lambda spec: spec.name, prune=prune)
        now = time.time()
        async with self.store.transaction() as tx:
            for spec in given:
                kind = "bridge" if isinstance(spec, BridgeSpec) else "replication"
                if spec.name in result.unchanged:
                    continue
                await tx.execute(
                    "INSERT INTO data_replications (name, kind, spec, desired, created_at, "
                    "updated_at) VALUES (?, ?, ?, 'stopped', ?, ?) ON CONFLICT (name) DO UPDATE "
                    "SET kind = excluded.kind, spec = excluded.spec, "
                    "updated_at = excluded.updated_at",
                    spec.name,
                    kind,
                    spec.model_dump_json(),
                    now,
                    now,
                )
            for name in result.deleted:
                await tx.execute("DELETE FROM data_replications WHERE name = ?", name)
        return result

    async def list(self) -> list[DataRecord]:
        rows = await self.store.fetch_all("SELECT * FROM data_replications ORDER BY name")
        return [_record(row) for row in rows]

    async def get(self, name: str) -> DataRecord:
        """The record of ``name``; :class:`NotFoundError` naming the known ones."""
        row = await self.store.fetch_one("SELECT * FROM data_replications WHERE name = ?", name)
        if row is None:
            known = [r.name for r in await self.list()]
            hint = f"; known: {', '.join(known)}" if known else "; none is stored yet"
            raise NotFoundError(f"no replication or bridge named {name!r}{hint}")
        return _record(row)

    async def set_desired(self, name: str, desired: Desired) -> DataRecord:
        await self.get(name)
        await self.store.execute(
            "UPDATE data_replications SET desired = ?, updated_at = ? WHERE name = ?",
            desired,
            time.time(),
            name,
        )
        return await self.get(name)

    async def set_reverse(self, name: str, reverse: bool) -> DataRecord:
        """Turn the reverse-sync window of replication ``name`` on or off."""
        await self.get(name)
        await self.store.execute(
            "UPDATE data_replications SET reverse = ?, updated_at = ? WHERE name = ?",
            int(reverse),
            time.time(),
            name,
        )
        return await self.get(name)

    async def desired(self, name: str) -> tuple[Desired, bool]:
        """What is asked of ``name`` now: its state and whether reverse sync runs."""
        row = await self.store.fetch_one(
            "SELECT desired, reverse FROM data_replications WHERE name = ?", name
        )
        if row is None:
            return "stopped", False
        return row["desired"], bool(row["reverse"])

    async def claim(self, name: str, owner: str) -> bool:
        """Become the one process that runs ``name``: granted when nobody runs it, or its
        runner has not reported for :data:`STALE_AFTER` seconds (it died)."""
        now = time.time()
        claimed = await self.store.execute(
            "UPDATE data_replications SET owner = ?, heartbeat_at = ? WHERE name = ? AND "
            "(owner IS NULL OR owner = ? OR heartbeat_at IS NULL OR heartbeat_at < ?)",
            owner,
            now,
            name,
            owner,
            now - STALE_AFTER,
        )
        return claimed == 1

    async def report(self, name: str, status: dict[str, Any], owner: str) -> bool:
        """Record the status ``owner`` reports (and that it is alive); False when another
        process has taken ``name`` over (this one must stop)."""
        now = time.time()
        kept = await self.store.execute(
            "UPDATE data_replications SET status = ?, heartbeat_at = ? "
            "WHERE name = ? AND owner = ?",
            json.dumps(status, default=str),
            now,
            name,
            owner,
        )
        return kept == 1

    async def owner(self, name: str) -> str | None:
        """The process running ``name`` now, if one reported lately."""
        record = await self.get(name)
        return record.owner if record.running_now() else None

    async def released(self, name: str, owner: str) -> None:
        """Record that ``owner`` runs ``name`` no more (its last status stays)."""
        await self.store.execute(
            "UPDATE data_replications SET owner = NULL, heartbeat_at = NULL "
            "WHERE name = ? AND owner = ?",
            name,
            owner,
        )

    async def running(self) -> Sequence[DataRecord]:
        """The records asked to run or to stay paused (a runner keeps them)."""
        return [r for r in await self.list() if r.desired != "stopped"]


def _record(row: dict[str, Any]) -> DataRecord:
    kind: Kind = row["kind"]
    spec: ReplicationSpec | BridgeSpec = (
        BridgeSpec.model_validate_json(row["spec"])
        if kind == "bridge"
        else ReplicationSpec.model_validate_json(row["spec"])
    )
    return DataRecord(
        name=row["name"],
        kind=kind,
        spec=spec,
        desired=row["desired"],
        reverse=bool(row["reverse"]),
        status=None if row["status"] is None else json.loads(row["status"]),
        owner=row["owner"],
        heartbeat_at=row["heartbeat_at"],
        updated_at=float(row["updated_at"]),
    )


__all__ = ["STALE_AFTER", "DataControl", "DataRecord", "Desired", "Kind"]
