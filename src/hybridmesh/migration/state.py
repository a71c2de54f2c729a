"""Migration plans in the store: their versions, where each run stands, leases and audit.

A plan's row holds its current version and its run: ``status`` (below), the ``step`` it is
at and that step's ``phase`` (``pending``: not executed yet; ``monitoring``: executed, its
gate measuring), the gate's tally, and the lease of the runner acting on it. Statuses:

- ``pending``: stored, not started (``migrate start``);
- ``running``: a runner drives it; ``waiting_approval``: a step waits for ``migrate
  approve``; ``paused``: stopped by a person, a failed precondition or an inconclusive
  gate, until ``migrate resume``; ``aborting``: ``migrate abort`` asked for a rollback;
- ``completed``, ``rolled_back`` (a gate failed), ``aborted``: ended.

One runner at a time acts on a plan: :meth:`MigrationState.claim` takes its lease and bumps
``lease_epoch``, and every write of a run goes through :meth:`MigrationState.fenced`, which
first updates the row on the condition that the epoch is still the runner's. A runner that
lost its lease (paused by a long stop, say) therefore changes nothing, and since the
gateway's weights are written in the same transaction as the step that sets them, they
always equal what the plan recorded.

Every action is audited (who, what, when, why) in ``mig_audit`` and, in the same
transaction, queued as a CloudEvent (``migration.step.started``, ...) in the event outbox.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from hybridmesh.core.errors import HybridMeshError, NotFoundError, Problem, ValidationError
from hybridmesh.core.ids import uuid7
from hybridmesh.core.serialization import dumps, loads
from hybridmesh.events.envelope import CloudEvent
from hybridmesh.events.outbox import Outbox
from hybridmesh.migration.plans import MigrationPlan
from hybridmesh.store import Store, Transaction

#: The ``source`` of the CloudEvents plans publish.
EVENT_SOURCE = "hybridmesh/migration"


class Status(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    WAITING_APPROVAL = "waiting_approval"
    PAUSED = "paused"
    ABORTING = "aborting"
    COMPLETED = "completed"
    ROLLED_BACK = "rolled_back"
    ABORTED = "aborted"

    @property
    def ended(self) -> bool:
        return self in (Status.COMPLETED, Status.ROLLED_BACK, Status.ABORTED)


class Phase(StrEnum):
    PENDING = "pending"
    MONITORING = "monitoring"


#: Statuses a runner acts on.
ACTIVE = (Status.RUNNING, Status.ABORTING)


class PlanConflictError(HybridMeshError):
    """The plan is not in a state that allows what was asked (exit 1 on the CLI)."""


class LeaseLostError(HybridMeshError):
    """The runner no longer holds the plan's lease: another took it over."""


@dataclass
class PlanRecord:
    """A stored plan and where its run stands."""

    name: str
    version: int
    plan: MigrationPlan
    status: Status
    step: int
    phase: Phase
    window_started: float | None
    gate: dict[str, Any]
    reason: str | None
    approved_step: int | None
    lease_owner: str | None
    lease_until: float | None
    lease_epoch: int
    created_at: float
    updated_at: float

    def to_dict(self) -> dict[str, Any]:
        steps = self.plan.steps
        return {
            "name": self.name,
            "version": self.version,
            "source": self.plan.spec.source,
            "strategy": self.plan.spec.strategy.value,
            "targets": [t.service for t in self.plan.spec.targets],
            "status": self.status.value,
            "step": self.step,
            "step_name": steps[self.step].name if self.step < len(steps) else None,
            "steps": len(steps),
            "phase": self.phase.value,
            "window_started": self.window_started,
            "gate": self.gate,
            "reason": self.reason,
            "approved_step": self.approved_step,
            "lease_owner": self.lease_owner,
            "lease_until": self.lease_until,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


@dataclass(frozen=True)
class AuditEntry:
    id: str
    plan: str
    at: float
    actor: str
    action: str
    step: int | None
    reason: str | None
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "plan": self.plan,
            "at": self.at,
            "actor": self.actor,
            "action": self.action,
            "step": self.step,
            "reason": self.reason,
            "details": self.details,
        }


_COLUMNS = (
    "name, version, plan, status, step, phase, window_started, gate, reason, approved_step, "
    "lease_owner, lease_until, lease_epoch, created_at, updated_at"
)


def _record(row: Mapping[str, Any]) -> PlanRecord:
    return PlanRecord(
        name=row["name"],
        version=int(row["version"]),
        plan=MigrationPlan.model_validate(loads(row["plan"])),
        status=Status(row["status"]),
        step=int(row["step"]),
        phase=Phase(row["phase"]),
        window_started=row["window_started"],
        gate=loads(row["gate"]) if row["gate"] else {},
        reason=row["reason"],
        approved_step=row["approved_step"],
        lease_owner=row["lease_owner"],
        lease_until=row["lease_until"],
        lease_epoch=int(row["lease_epoch"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


class MigrationState:
    """The migration tables of a (migrated) store."""

    def __init__(self, store: Store, *, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock
        self.outbox = Outbox(store)

    # -- plans -----------------------------------------------------------------------------

    async def save(self, plan: MigrationPlan, *, actor: str) -> tuple[PlanRecord, bool]:
        """Store ``plan``: a new plan, or a new version of one that has not started (or has
        ended: then it starts over as ``pending``). Returns the record and whether anything
        changed; the same plan again changes nothing."""
        now = self.clock()
        document = dumps(plan.to_json())
        async with self.store.transaction() as tx:
            row = await tx.fetch_one(f"SELECT {_COLUMNS} FROM mig_plans WHERE name = ?", plan.name)
            if row is not None:
                current = _record(row)
                if current.plan == plan:
                    return current, False
                if not (current.status is Status.PENDING or current.status.ended):
                    raise PlanConflictError(
                        f"plan {plan.name!r} is {current.status.value}; abort it (or let it "
                        "end) before changing it"
                    )
                version = current.version + 1
                await tx.execute(
                    "UPDATE mig_plans SET version = ?, plan = ?, status = ?, step = 0, "
                    "phase = ?, window_started = NULL, gate = NULL, reason = NULL, "
                    "approved_step = NULL, request = NULL, updated_at = ? WHERE name = ?",
                    version,
                    document,
                    Status.PENDING.value,
                    Phase.PENDING.value,
                    now,
                    plan.name,
                )
            else:
                version = 1
                await tx.execute(
                    f"INSERT INTO mig_plans ({_COLUMNS}) VALUES "
                    "(?, ?, ?, ?, 0, ?, NULL, NULL, NULL, NULL, NULL, NULL, 0, ?, ?)",
                    plan.name,
                    version,
                    document,
                    Status.PENDING.value,
                    Phase.PENDING.value,
                    now,
                    now,
                )
            await tx.execute(
                "INSERT INTO mig_plan_versions (name, version, plan, created_at) "
                "VALUES (?, ?, ?, ?)",
                plan.name,
                version,
                document,
                now,
            )
            await self.audit_in(
                tx,
                plan.name,
                actor,
                "migration.plan.stored",
                None,
                None,
                {"version": version, "steps": len(plan.steps)},
            )
            stored = await self._get_in(tx, plan.name)
        return stored, True

    async def get(self, name: str) -> PlanRecord:
        async with self.store.transaction() as tx:
            return await self._get_in(tx, name)

    async def _get_in(self, tx: Transaction, name: str) -> PlanRecord:
        row = await tx.fetch_one(f"SELECT {_COLUMNS} FROM mig_plans WHERE name = ?", name)
        if row is None:
            raise NotFoundError(f"no migration plan {name!r}")
        return _record(row)

    async def plans(self) -> list[PlanRecord]:
        rows = await self.store.fetch_all(f"SELECT {_COLUMNS} FROM mig_plans ORDER BY name")
        return [_record(row) for row in rows]

    async def versions(self, name: str) -> list[tuple[int, float]]:
        rows = await self.store.fetch_all(
            "SELECT version, created_at FROM mig_plan_versions WHERE name = ? ORDER BY version",
            name,
        )
        return [(int(r["version"]), r["created_at"]) for r in rows]

    async def delete(self, name: str) -> None:
        """Forget a plan that is not under way (its audit stays)."""
        record = await self.get(name)
        if not (record.status is Status.PENDING or record.status.ended):
            raise PlanConflictError(f"plan {name!r} is {record.status.value}; abort it first")
        async with self.store.transaction() as tx:
            await tx.execute("DELETE FROM mig_plans WHERE name = ?", name)
            await tx.execute("DELETE FROM mig_plan_versions WHERE name = ?", name)

    # -- a person's controls ---------------------------------------------------------------

    async def control(
        self, name: str, action: str, *, actor: str, reason: str | None
    ) -> PlanRecord:
        """``start``, ``approve``, ``pause``, ``resume`` or ``abort`` plan ``name``.

        The change is written at once; a runner acts on it at its next look at the plan
        (an abort: the runner rolls back). :class:`PlanConflictError` when the plan's status
        does not allow it."""
        allowed: dict[str, tuple[Status, ...]] = {
            "start": (Status.PENDING,),
            "approve": (Status.WAITING_APPROVAL, Status.RUNNING, Status.PAUSED),
            "pause": (Status.RUNNING, Status.WAITING_APPROVAL),
            "resume": (Status.PAUSED,),
            "abort": (
                Status.PENDING,
                Status.RUNNING,
                Status.WAITING_APPROVAL,
                Status.PAUSED,
            ),
        }
        if action not in allowed:
            raise ValidationError([Problem(f"unknown action {action!r}", field="action")])
        now = self.clock()
        async with self.store.transaction() as tx:
            record = await self._get_in(tx, name)
            if record.status not in allowed[action]:
                raise PlanConflictError(
                    f"plan {name!r} is {record.status.value}: it cannot {action} now"
                )
            updates: dict[str, Any] = {}
            if action == "start":
                updates = {"status": Status.RUNNING.value, "reason": None}
            elif action == "approve":
                updates = {"approved_step": record.step}
                if record.status is Status.WAITING_APPROVAL:
                    updates["status"] = Status.RUNNING.value
                    updates["reason"] = None
            elif action == "pause":
                updates = {"status": Status.PAUSED.value, "reason": reason or f"paused by {actor}"}
            elif action == "resume":
                # An inconclusive window starts over: the person resuming wants a verdict.
                updates = {"status": Status.RUNNING.value, "reason": None}
                if record.phase is Phase.MONITORING:
                    updates["window_started"] = now
                    updates["gate"] = None
            elif action == "abort":
                if record.status is Status.PENDING:
                    updates = {"status": Status.ABORTED.value, "reason": reason or "aborted"}
                else:
                    updates = {"status": Status.ABORTING.value, "reason": reason or "aborted"}
            updates["updated_at"] = now
            assignments = ", ".join(f"{column} = ?" for column in updates)
            await tx.execute(
                f"UPDATE mig_plans SET {assignments} WHERE name = ?", *updates.values(), name
            )
            await self.audit_in(tx, name, actor, f"migration.{action}", record.step, reason, {})
            return await self._get_in(tx, name)

    # -- runners ---------------------------------------------------------------------------

    async def claimable(self, now: float) -> list[str]:
        """Plans a runner should act on whose lease is free or expired."""
        rows = await self.store.fetch_all(
            "SELECT name FROM mig_plans WHERE status IN (?, ?) "
            "AND (lease_until IS NULL OR lease_until < ?) ORDER BY updated_at",
            Status.RUNNING.value,
            Status.ABORTING.value,
            now,
        )
        return [row["name"] for row in rows]

    async def claim(self, name: str, owner: str, seconds: float) -> int | None:
        """Take the lease of plan ``name`` for ``seconds``; its new epoch, or None when
        another runner holds it (or the plan needs no runner)."""
        now = self.clock()
        async with self.store.transaction() as tx:
            taken = await tx.execute(
                "UPDATE mig_plans SET lease_owner = ?, lease_until = ?, "
                "lease_epoch = lease_epoch + 1 WHERE name = ? AND status IN (?, ?) "
                "AND (lease_until IS NULL OR lease_until < ? OR lease_owner = ?)",
                owner,
                now + seconds,
                name,
                Status.RUNNING.value,
                Status.ABORTING.value,
                now,
                owner,
            )
            if not taken:
                return None
            return int(
                await tx.fetch_value("SELECT lease_epoch FROM mig_plans WHERE name = ?", name)
            )

    @contextlib.asynccontextmanager
    async def fenced(
        self, name: str, owner: str, epoch: int, renew: float
    ) -> AsyncIterator[tuple[Transaction, PlanRecord]]:
        """A transaction in which the runner holding lease ``epoch`` acts on plan ``name``,
        with the plan as it now stands; the lease is renewed for ``renew`` seconds.
        :class:`LeaseLostError` (nothing written) when another runner has taken it."""
        now = self.clock()
        async with self.store.transaction() as tx:
            held = await tx.execute(
                "UPDATE mig_plans SET lease_until = ? WHERE name = ? AND lease_owner = ? "
                "AND lease_epoch = ?",
                now + renew,
                name,
                owner,
                epoch,
            )
            if not held:
                raise LeaseLostError(f"the lease of plan {name!r} was taken over")
            yield tx, await self._get_in(tx, name)

    async def release(self, name: str, owner: str, epoch: int) -> None:
        await self.store.execute(
            "UPDATE mig_plans SET lease_owner = NULL, lease_until = NULL "
            "WHERE name = ? AND lease_owner = ? AND lease_epoch = ?",
            name,
            owner,
            epoch,
        )

    async def update_in(self, tx: Transaction, name: str, **columns: Any) -> None:
        """Write a run's columns (in a :meth:`fenced` transaction)."""
        columns["updated_at"] = self.clock()
        for key in ("gate",):
            if key in columns and columns[key] is not None:
                columns[key] = dumps(columns[key])
        for key, value in list(columns.items()):
            if isinstance(value, StrEnum):
                columns[key] = value.value
        assignments = ", ".join(f"{column} = ?" for column in columns)
        await tx.execute(
            f"UPDATE mig_plans SET {assignments} WHERE name = ?", *columns.values(), name
        )

    # -- audit -----------------------------------------------------------------------------

    async def audit_in(
        self,
        tx: Transaction,
        plan: str,
        actor: str,
        action: str,
        step: int | None,
        reason: str | None,
        details: Mapping[str, Any],
    ) -> None:
        """Record an action and queue its CloudEvent (type ``action``) in ``tx``."""
        now = self.clock()
        entry_id = uuid7()
        # The plan's row is locked by now (every caller updated it first in ``tx``), so
        # the next number is this transaction's alone.
        seq = int(
            await tx.fetch_value(
                "SELECT COALESCE(MAX(seq), 0) + 1 FROM mig_audit WHERE plan = ?", plan
            )
        )
        await tx.execute(
            "INSERT INTO mig_audit (id, plan, seq, at, actor, action, step, reason, details) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            entry_id,
            plan,
            seq,
            now,
            actor,
            action,
            step,
            reason,
            dumps(dict(details)),
        )
        event = CloudEvent.create(
            action,
            EVENT_SOURCE,
            {
                "plan": plan,
                "actor": actor,
                "step": step,
                "reason": reason,
                "details": dict(details),
                "at": now,
            },
            id=entry_id,
            subject=plan,
            partition_key=plan,
        )
        await self.outbox.add(tx, [event])

    async def audit(self, plan: str, limit: int = 200) -> list[AuditEntry]:
        rows = await self.store.fetch_all(
            "SELECT id, plan, at, actor, action, step, reason, details FROM mig_audit "
            "WHERE plan = ? ORDER BY seq DESC LIMIT ?",
            plan,
            limit,
        )
        return [
            AuditEntry(
                id=row["id"],
                plan=row["plan"],
                at=row["at"],
                actor=row["actor"],
                action=row["action"],
                step=row["step"],
                reason=row["reason"],
                details=loads(row["details"]) if row["details"] else {},
            )
            for row in reversed(rows)
        ]


__all__ = [
    "ACTIVE",
    "EVENT_SOURCE",
    "AuditEntry",
    "LeaseLostError",
    "MigrationState",
    "Phase",
    "PlanConflictError",
    "PlanRecord",
    "Status",
]
