"""The plan runner: drives running plans one step at a time, durably.

Any number of runners (``hybridmesh migrate runner``, or ``migrate run`` for one plan) share
the store. A runner takes a plan's lease, then moves it by *ticks*; each tick is one
transition written in one fenced transaction (:meth:`MigrationState.fenced`):

- a step not yet executed waits for approval when it asks for it, checks its
  preconditions against the gateway's routes (a failed one pauses the plan with the
  reason), then executes: the gateway's weight is written in the same transaction as the
  record that the step started, so no crash can leave them apart;
- a step being monitored is measured every ``interval`` (:mod:`hybridmesh.migration.gates`):
  more failed measurements than ``failure_limit`` roll traffic back as the plan says and end
  it ``rolled_back``; when its ``window`` is over, the whole window is judged once more: a
  pass moves to the next step, too little traffic pauses the plan for a person. On each look
  the runner also puts back the step's weight if someone changed it at the gateway;
- an aborted plan is rolled back and ends ``aborted``.

A runner that dies leaves its lease to expire (``lease_seconds``); another runner then
takes the plan over at the step and phase the store holds. The lease is renewed by every
tick, so a runner sleeps at most a third of it between ticks.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
import os
import socket
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any, Protocol

import aiohttp

from hybridmesh.core.errors import HybridMeshError, Problem, ValidationError
from hybridmesh.flags.model import Flag, with_rollout
from hybridmesh.flags.store import FlagStore
from hybridmesh.gateway.state import GatewayState
from hybridmesh.migration.data_steps import DataStepError, DataVerdict, evaluate, execute_in, retire
from hybridmesh.migration.gates import Measurement, Tally, Verdict, measure
from hybridmesh.migration.plans import (
    Action,
    Check,
    MirrorTraffic,
    PrepareRoute,
    RetireBackend,
    RetireReplication,
    SetFlagRollout,
    SetReplication,
    SetWeight,
    Step,
    Webhook,
    WebhookType,
)
from hybridmesh.migration.state import (
    LeaseLostError,
    MigrationState,
    Phase,
    PlanRecord,
    Status,
)
from hybridmesh.observability import get_logger
from hybridmesh.store import Store, Transaction

log = get_logger("hybridmesh.migration")

#: Seconds a runner's lease on a plan lasts without a tick.
LEASE_SECONDS = 15.0
#: Seconds after a second ends by which every gateway replica has written its rows (they
#: flush every second): a window is judged whole only then.
COMPLETE_AFTER_SECONDS = 2.0
#: Seconds between asks of a ``confirm_step`` webhook that has not confirmed yet.
CONFIRM_POLL_SECONDS = 2.0


class FlagRollouts(Protocol):
    """What a runner needs of feature flags to step a branch-by-abstraction plan."""

    async def set_rollout_in(
        self, tx: Transaction, flag: str, variant: str, percent: float
    ) -> None: ...


class FlagStoreRollouts:
    """Steps feature flags' rollouts in the flag store (:mod:`hybridmesh.flags`): the flag's
    last rule becomes a split of everyone giving ``variant`` ``percent`` and the default
    variant the rest, so users already on ``variant`` stay on it as it grows."""

    def __init__(self, flags: FlagStore) -> None:
        self.flags = flags

    async def set_rollout_in(
        self, tx: Transaction, flag: str, variant: str, percent: float
    ) -> None:
        def change(current: Flag) -> Flag:
            spec = current.definition()
            if variant not in spec["variants"]:
                names = ", ".join(spec["variants"])
                raise ValidationError(
                    [Problem(f"flag {flag!r} has no variant {variant!r} (it has {names})")]
                )
            if variant == spec["default_variant"]:
                raise ValidationError(
                    [
                        Problem(
                            f"{variant!r} is flag {flag!r}'s default variant: nothing to roll out"
                        )
                    ]
                )
            share = Decimal(str(percent))
            spec["targeting"] = with_rollout(
                list(spec.get("targeting", [])), [(variant, share)], spec["default_variant"]
            )
            return Flag.model_validate(spec)

        await self.flags.update_in(tx, flag, change)


class ActionError(HybridMeshError):
    """An action that cannot be carried out (the plan pauses with this reason)."""


def default_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class PlanRunner:
    """Drives plans in ``store``; ``owner`` names this runner in leases and the audit."""

    def __init__(
        self,
        store: Store,
        *,
        owner: str | None = None,
        lease_seconds: float = LEASE_SECONDS,
        poll_seconds: float = 0.5,
        clock: Callable[[], float] = time.time,
        flags: FlagRollouts | None = None,
    ) -> None:
        self.store = store
        self.owner = owner or default_owner()
        self.actor = f"runner:{self.owner}"
        self.lease_seconds = lease_seconds
        self.poll_seconds = poll_seconds
        self.clock = clock
        self.flags: FlagRollouts = flags or FlagStoreRollouts(FlagStore(store, clock=clock))
        self.state = MigrationState(store, clock=clock)
        self.gateway = GatewayState(store, clock=clock)
        self._driving: dict[str, asyncio.Task[None]] = {}
        self._http: aiohttp.ClientSession | None = None

    # -- the loop --------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event | None = None, *, only: str | None = None) -> None:
        """Claim and drive plans until ``stop`` is set (with ``only``: that plan, until it
        ends or waits for a person)."""
        stop = stop or asyncio.Event()
        try:
            while not stop.is_set():
                for name in await self.state.claimable(self.clock()):
                    if only is not None and name != only:
                        continue
                    if name not in self._driving or self._driving[name].done():
                        self._driving[name] = asyncio.create_task(
                            self.drive(name), name=f"migration:{name}"
                        )
                if only is not None:
                    record = await self.state.get(only)
                    driving = self._driving.get(only)
                    idle = driving is None or driving.done()
                    if idle and record.status not in (Status.RUNNING, Status.ABORTING):
                        return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.poll_seconds)
        finally:
            for task in self._driving.values():
                task.cancel()
            await asyncio.gather(*self._driving.values(), return_exceptions=True)
            await self.close()

    async def drive(self, name: str) -> None:
        """Hold plan ``name``'s lease and tick it until it ends, waits for a person, or the
        lease is lost."""
        epoch = await self.state.claim(name, self.owner, self.lease_seconds)
        if epoch is None:
            return
        try:
            while True:
                wait = await self.tick(name, epoch)
                if wait is None:
                    return
                await asyncio.sleep(min(wait, self.lease_seconds / 3))
        except LeaseLostError:
            log.info("migration: plan %s was taken over by another runner", name)
            return
        finally:
            with contextlib.suppress(Exception):
                await self.state.release(name, self.owner, epoch)

    # -- one transition --------------------------------------------------------------------

    async def tick(self, name: str, epoch: int) -> float | None:
        """Move plan ``name`` one transition; seconds until the next look, or None when
        the runner should let go of it."""
        record = await self.state.get(name)
        measured: tuple[str, Any] | None = None
        hooked: tuple[str, str] | None = None
        if record.status is Status.RUNNING and record.step < len(record.plan.steps):
            # What needs the network is done before the transaction, which only records it.
            step = record.plan.steps[record.step]
            if record.phase is Phase.MONITORING and step.until is not None:
                measured = await self._check_data_if_due(record, step)
            elif record.phase is Phase.MONITORING:
                measured = await self._measure_if_due(record)
                if measured is not None and measured[0] == "interval":
                    asked = await self._hooks(record, step, WebhookType.ROLLBACK)
                    if asked is not None and asked[0]:
                        measured = ("rollback", asked[1])
            elif not step.approval or record.approved_step == record.step:
                hooked = await self._before_step(record, step)
                if isinstance(step.action, RetireReplication):
                    # Outside the transaction: it changes other databases (idempotently).
                    try:
                        await retire(self.store, step.action)
                    except (HybridMeshError, DataStepError) as error:
                        hooked = ("pause", f"step {record.step + 1} ({step.name}): {error}")
        async with self.state.fenced(name, self.owner, epoch, self.lease_seconds) as (tx, current):
            if (current.step, current.phase, current.window_started, current.gate) != (
                record.step,
                record.phase,
                record.window_started,
                record.gate,
            ):
                return 0.0  # moved meanwhile (a person resumed it, say): look again
            if current.status is Status.ABORTING:
                await self._roll_back(
                    tx, current, Status.ABORTED, "migration.aborted", current.reason
                )
                return None
            if current.status is not Status.RUNNING:
                return None
            if current.step >= len(current.plan.steps):
                await self._complete(tx, current)
                return None
            step = current.plan.steps[current.step]
            if current.phase is Phase.PENDING:
                return await self._start_step(tx, current, step, hooked)
            return await self._monitor(tx, current, step, measured)

    async def _start_step(
        self, tx: Transaction, record: PlanRecord, step: Step, hooked: tuple[str, str] | None
    ) -> float | None:
        state, name, index = self.state, record.name, record.step
        if step.approval and record.approved_step != index:
            await state.update_in(tx, name, status=Status.WAITING_APPROVAL)
            await state.audit_in(
                tx, name, self.actor, "migration.gate.awaiting_approval", index, step.name, {}
            )
            return None
        routes = await self.gateway.routes_in(tx)
        problems = [p for p in (c.problem(routes) for c in step.preconditions()) if p]
        if problems:
            reason = f"precondition of step {index + 1} ({step.name}): {'; '.join(problems)}"
            await state.update_in(tx, name, status=Status.PAUSED, reason=reason)
            await state.audit_in(
                tx, name, self.actor, "migration.precondition.failed", index, reason, {}
            )
            return None
        if hooked is not None:
            what, reason = hooked
            if what == "pause":
                await state.update_in(tx, name, status=Status.PAUSED, reason=reason)
                await state.audit_in(
                    tx, name, self.actor, "migration.webhook.failed", index, reason, {}
                )
                return None
            if record.reason != reason:  # waiting for a confirmation: said once
                await state.update_in(tx, name, reason=reason)
                await state.audit_in(
                    tx,
                    name,
                    self.actor,
                    "migration.gate.awaiting_confirmation",
                    index,
                    reason,
                    {},
                )
            return CONFIRM_POLL_SECONDS
        try:
            done = await self._execute(tx, step.action)
        except HybridMeshError as error:
            reason = f"step {index + 1} ({step.name}) could not execute: {error}"
            await state.update_in(tx, name, status=Status.PAUSED, reason=reason)
            await state.audit_in(tx, name, self.actor, "migration.step.failed", index, reason, {})
            return None
        details = {"name": step.name, "type": step.type.value, "action": done}
        await state.audit_in(tx, name, self.actor, "migration.step.started", index, None, details)
        if step.gate is None and step.until is None:
            await self._next_step(tx, record, step, {})
            return 0.0
        await state.update_in(
            tx, name, phase=Phase.MONITORING, window_started=self.clock(), gate=Tally().to_dict()
        )
        return 0.0 if step.until is not None else step.gate.interval if step.gate else 0.0

    async def _measure_if_due(self, record: PlanRecord) -> tuple[str, Any] | None:
        """The measurement due now (outside the transaction: it only reads), if any:
        ``("interval", (Measurement, since, until))``, ``("window", Measurement)`` once
        the window is over and its seconds are all written, or ``("error", text)``.

        An interval measurement reads every second not yet judged, up to the one under way
        (replicas write it as counted so far, every flush): a failure shows within a flush
        and an interval. A runner that takes a plan over measures once, over all the
        seconds the dead one did not judge."""
        step = record.plan.steps[record.step]
        gate, what = step.gate, step.measured()
        if gate is None or what is None or record.window_started is None:
            return None
        tally = Tally.from_dict(record.gate)
        now = self.clock()
        started = record.window_started
        ends = started + gate.window
        try:
            if now >= ends + COMPLETE_AFTER_SECONDS:
                since, until = int(started), math.ceil(ends)
                return "window", await measure(self.store, what, since, until, gate)
            if now >= (tally.measured_at or started) + gate.interval:
                since = int(started) if tally.measured_until is None else tally.measured_until
                until = int(now) + 1
                measured = await measure(self.store, what, since, until, gate)
                if gate.metrics:
                    measured = await self._custom_metrics(record, step, measured)
                return "interval", (measured, since, until)
        except Exception as error:  # the store unreachable: counted, then paused
            return "error", f"{type(error).__name__}: {error}"
        return None

    async def _check_data_if_due(self, record: PlanRecord, step: Step) -> tuple[str, Any] | None:
        """A data step's gate looked at (outside the transaction), when its interval is up:
        ``("data", DataVerdict)``, or ``("error", text)``."""
        until = step.until
        assert until is not None and record.window_started is not None
        tally = Tally.from_dict(record.gate)
        if self.clock() < (tally.measured_at or record.window_started - until.interval) + (
            until.interval
        ):
            return None
        try:
            return "data", await evaluate(self.store, until)
        except Exception as error:  # a database unreachable: counted, then paused
            return "error", f"{type(error).__name__}: {error}"

    async def _monitor_data(
        self, tx: Transaction, record: PlanRecord, step: Step, measured: tuple[str, Any] | None
    ) -> float | None:
        until = step.until
        assert until is not None and record.window_started is not None
        state, name, index = self.state, record.name, record.step
        tally = Tally.from_dict(record.gate)
        now = self.clock()
        if measured is None:
            return max((tally.measured_at or now) + until.interval - now, 0.0)
        kind, value = measured
        tally.measured_at = now
        if kind == "error":
            tally.could_not_measure(value)
            if tally.errors_in_row > 2:
                reason = f"step {index + 1} ({step.name}): could not look: {value}"
                await state.update_in(
                    tx, name, status=Status.PAUSED, reason=reason, gate=tally.to_dict()
                )
                await state.audit_in(
                    tx, name, self.actor, "migration.gate.error", index, reason, tally.to_dict()
                )
                return None
            await state.update_in(tx, name, gate=tally.to_dict())
            return until.interval
        verdict: DataVerdict = value
        tally.last = {"ok": verdict.ok, "reason": verdict.reason, **verdict.details}
        if verdict.ok:
            await self._next_step(tx, record, step, tally.to_dict())
            return 0.0
        if now - record.window_started > until.timeout:
            reason = (
                f"step {index + 1} ({step.name}) failed its gate: not {until.condition} "
                f"within {until.timeout:g} s ({verdict.reason})"
            )
            await state.update_in(tx, name, gate=tally.to_dict())
            await state.audit_in(
                tx, name, self.actor, "migration.gate.failed", index, reason, tally.to_dict()
            )
            await self._roll_back(tx, record, Status.ROLLED_BACK, "migration.rolled_back", reason)
            return None
        if record.reason != verdict.reason:
            await state.update_in(tx, name, reason=verdict.reason, gate=tally.to_dict())
        else:
            await state.update_in(tx, name, gate=tally.to_dict())
        return until.interval

    async def _monitor(
        self, tx: Transaction, record: PlanRecord, step: Step, measured: tuple[str, Any] | None
    ) -> float | None:
        if step.until is not None:
            return await self._monitor_data(tx, record, step, measured)
        gate = step.gate
        assert gate is not None and record.window_started is not None
        state, name, index = self.state, record.name, record.step
        await self._reconcile(tx, record, step)
        tally = Tally.from_dict(record.gate)
        now = self.clock()
        if measured is None:
            due = min(
                (tally.measured_at or record.window_started) + gate.interval,
                record.window_started + gate.window + COMPLETE_AFTER_SECONDS,
            )
            return max(due - now, 0.0)
        kind, value = measured
        if kind == "rollback":
            reason = f"step {index + 1} ({step.name}): {value}"
            await state.audit_in(
                tx, name, self.actor, "migration.webhook.rollback", index, reason, {}
            )
            await self._roll_back(tx, record, Status.ROLLED_BACK, "migration.rolled_back", reason)
            return None
        if kind == "error":
            tally.could_not_measure(value)
            tally.measured_at = now
            if tally.errors_in_row > gate.consecutive_error_limit:
                reason = f"step {index + 1} ({step.name}): the gate could not measure: {value}"
                await state.update_in(
                    tx, name, status=Status.PAUSED, reason=reason, gate=tally.to_dict()
                )
                await state.audit_in(
                    tx, name, self.actor, "migration.gate.error", index, reason, tally.to_dict()
                )
                return None
            await state.update_in(tx, name, gate=tally.to_dict())
            return gate.interval
        if kind == "interval":
            measurement, since, until = value
            tally.add(measurement)
            tally.measured_at = now
            # A failure is counted once: the seconds it saw are judged. Otherwise only the
            # seconds every replica has written are (later rows may still bring errors).
            complete = int(now - COMPLETE_AFTER_SECONDS)
            tally.measured_until = (
                until if measurement.verdict is Verdict.FAIL else max(since, complete)
            )
            await state.update_in(tx, name, gate=tally.to_dict())
            if tally.failed > gate.failure_limit:
                await self._gate_failed(tx, record, step, tally, measurement.reasons)
                return None
            return 0.0
        # The window is over: judge it whole.
        tally.last = value.to_dict()
        if value.verdict is Verdict.FAIL:
            tally.failures = [*tally.failures[-4:], value.to_dict()]
            await self._gate_failed(tx, record, step, tally, value.reasons)
            return None
        if value.verdict is Verdict.INCONCLUSIVE:
            reason = (
                f"step {index + 1} ({step.name}) is inconclusive: {value.reasons[0]} over its "
                f"{gate.window:g} s window; resume to measure a new window, or abort"
            )
            await state.update_in(
                tx, name, status=Status.PAUSED, reason=reason, gate=tally.to_dict()
            )
            await state.audit_in(
                tx, name, self.actor, "migration.gate.inconclusive", index, reason, tally.to_dict()
            )
            return None
        await self._next_step(tx, record, step, tally.to_dict())
        return 0.0

    async def _custom_metrics(
        self, record: PlanRecord, step: Step, measured: Measurement
    ) -> Measurement:
        """``measured`` with the gate's Prometheus metrics checked too: a bound missed
        fails it; a metric with no number raises (the measurement could not be taken)."""
        gate, what = step.gate, step.measured()
        url = record.plan.spec.prometheus
        assert gate is not None and url is not None
        fields = {
            "route": what.route if what else "",
            "backend": what.backend if what else "",
            "plan": record.name,
            "interval": f"{max(1, round(gate.interval))}s",
        }
        reasons = list(measured.reasons) if measured.verdict is Verdict.FAIL else []
        for check in gate.metrics:
            value = await self._prometheus_value(url, check.query.format(**fields), check.name)
            if check.max is not None and value > check.max:
                reasons.append(f"{check.name} {value:g} is over {check.max:g}")
            if check.min is not None and value < check.min:
                reasons.append(f"{check.name} {value:g} is under {check.min:g}")
        if not reasons:
            return measured
        return dataclasses.replace(measured, verdict=Verdict.FAIL, reasons=tuple(reasons))

    async def _prometheus_value(self, url: str, query: str, name: str) -> float:
        """One number from Prometheus's instant query API (``/api/v1/query``)."""
        if self._http is None:
            self._http = aiohttp.ClientSession()
        async with self._http.get(
            f"{url}/api/v1/query", params={"query": query}, timeout=aiohttp.ClientTimeout(10)
        ) as answer:
            body = await answer.json(content_type=None)
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(body, dict) or body.get("status") != "success" or data is None:
            raise ActionError(f"metric {name}: Prometheus answered {answer.status}: {body!r:.200}")
        result = data.get("result")
        if data.get("resultType") == "scalar" and isinstance(result, list):
            sample = result
        elif isinstance(result, list) and len(result) == 1:
            sample = result[0].get("value")
        else:
            count = len(result) if isinstance(result, list) else 0
            raise ActionError(f"metric {name}: the query gave {count} series, not one")
        try:
            value = float(sample[1])
        except (TypeError, ValueError, IndexError):
            raise ActionError(f"metric {name}: no number in {sample!r:.100}") from None
        if math.isnan(value):
            raise ActionError(f"metric {name}: the query gave NaN")
        return value

    async def _before_step(self, record: PlanRecord, step: Step) -> tuple[str, str] | None:
        """The step's ``pre_step`` and ``confirm_step`` webhooks: ``("pause", why)`` when a
        pre-step hook failed, ``("wait", why)`` while a confirmation is missing."""
        failed = await self._hooks(record, step, WebhookType.PRE_STEP)
        if failed is not None and not failed[0]:
            return "pause", f"step {record.step + 1} ({step.name}): {failed[1]}"
        unconfirmed = await self._hooks(record, step, WebhookType.CONFIRM_STEP)
        if unconfirmed is not None and not unconfirmed[0]:
            return "wait", f"step {record.step + 1} ({step.name}) waits: {unconfirmed[1]}"
        return None

    async def _hooks(
        self, record: PlanRecord, step: Step, kind: WebhookType
    ) -> tuple[bool, str] | None:
        """Call the plan's ``kind`` webhooks for ``step``: None when there is none, else
        whether every one answered 2xx, and what the first other answer was (for a
        ``rollback`` hook, whether one answered 2xx, and which)."""
        hooks = [h for h in record.plan.spec.webhooks if h.type is kind and h.applies_to(step)]
        if not hooks:
            return None
        payload = {
            "plan": record.name,
            "version": record.version,
            "step": record.step,
            "step_name": step.name,
            "type": kind.value,
        }
        for hook in hooks:
            ok, said = await self._call(hook, {**payload, "metadata": hook.metadata})
            if kind is WebhookType.ROLLBACK and ok:
                return True, f"rollback webhook {hook.name} asked for a rollback ({said})"
            if kind is not WebhookType.ROLLBACK and not ok:
                return False, f"{kind.value} webhook {hook.name} answered {said}"
        return (False, "") if kind is WebhookType.ROLLBACK else (True, "")

    async def _call(self, hook: Webhook, payload: dict[str, Any]) -> tuple[bool, str]:
        if self._http is None:
            self._http = aiohttp.ClientSession()
        try:
            async with self._http.post(
                hook.url, json=payload, timeout=aiohttp.ClientTimeout(total=hook.timeout)
            ) as answer:
                await answer.read()
                return 200 <= answer.status < 300, f"HTTP {answer.status}"
        except (aiohttp.ClientError, TimeoutError, OSError) as error:
            return False, f"no answer: {str(error) or type(error).__name__}"

    async def close(self) -> None:
        """Close the runner's HTTP session (webhooks)."""
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def _gate_failed(
        self,
        tx: Transaction,
        record: PlanRecord,
        step: Step,
        tally: Tally,
        reasons: tuple[str, ...],
    ) -> None:
        reason = f"step {record.step + 1} ({step.name}) failed its gate: {'; '.join(reasons)}"
        await self.state.update_in(tx, record.name, gate=tally.to_dict())
        await self.state.audit_in(
            tx,
            record.name,
            self.actor,
            "migration.gate.failed",
            record.step,
            reason,
            tally.to_dict(),
        )
        await self._roll_back(tx, record, Status.ROLLED_BACK, "migration.rolled_back", reason)

    async def _next_step(
        self, tx: Transaction, record: PlanRecord, step: Step, gate: dict[str, Any]
    ) -> None:
        await self.state.audit_in(
            tx,
            record.name,
            self.actor,
            "migration.step.completed",
            record.step,
            None,
            {"name": step.name, "gate": gate},
        )
        await self.state.update_in(
            tx,
            record.name,
            step=record.step + 1,
            phase=Phase.PENDING,
            window_started=None,
            gate=None,
        )
        if record.step + 1 >= len(record.plan.steps):
            await self._complete(tx, record)

    async def _complete(self, tx: Transaction, record: PlanRecord) -> None:
        await self.state.update_in(
            tx,
            record.name,
            status=Status.COMPLETED,
            step=len(record.plan.steps),
            phase=Phase.PENDING,
            reason=None,
        )
        await self.state.audit_in(
            tx,
            record.name,
            self.actor,
            "migration.completed",
            None,
            None,
            {"steps": len(record.plan.steps)},
        )

    async def _roll_back(
        self, tx: Transaction, record: PlanRecord, status: Status, action: str, reason: str | None
    ) -> None:
        """Undo the last executed step as the plan's rollback strategy says, and end."""
        executed = record.step if record.phase is Phase.MONITORING else record.step - 1
        undo = record.plan.rollback_action(executed) if executed >= 0 else None
        done: dict[str, Any] | None = None
        if undo is not None:
            try:
                done = await self._execute(tx, undo)
            except HybridMeshError as error:
                reason = f"{reason}; the rollback could not execute: {error}"
        await self.state.update_in(tx, record.name, status=status, reason=reason)
        await self.state.audit_in(
            tx,
            record.name,
            self.actor,
            action,
            executed if executed >= 0 else None,
            reason,
            {"rollback": done, "strategy": record.plan.spec.rollback.value},
        )

    async def _reconcile(self, tx: Transaction, record: PlanRecord, step: Step) -> None:
        """Put the step's weight back at the gateway if it was changed by hand."""
        action = step.action
        if not isinstance(action, SetWeight):
            return
        routes = await self.gateway.routes_in(tx)
        route = routes.get(action.route)
        if route is None or action.backend not in [b.name for b in route.backends]:
            return
        found = route.backend(action.backend).weight
        if math.isclose(found, action.percent, abs_tol=0.005):
            return
        await self.gateway.set_weight_in(tx, action.route, action.backend, action.percent)
        await self.state.audit_in(
            tx,
            record.name,
            self.actor,
            "migration.weights.reconciled",
            record.step,
            f"{action.route}/{action.backend} was at {found:g} %, the plan says "
            f"{action.percent:g} %",
            {},
        )

    async def _execute(self, tx: Transaction, action: Action) -> dict[str, Any]:
        """Carry ``action`` out in ``tx``; what was done."""
        if isinstance(action, SetWeight):
            await self.gateway.set_weight_in(tx, action.route, action.backend, action.percent)
        elif isinstance(action, PrepareRoute):
            await self.gateway.set_weight_in(tx, action.route, action.target_backend, 0)
            if action.testers is not None:
                testers = action.testers
                rule = {
                    "header": testers.header,
                    "exact": testers.value,
                    "backend": action.target_backend,
                }

                def add_rule(spec: dict[str, Any]) -> None:
                    rules = spec.setdefault("header_routes", [])
                    if rule not in rules:
                        rules.insert(0, rule)

                await self.gateway.edit_in(tx, action.route, add_rule)
        elif isinstance(action, RetireBackend):
            await self.gateway.remove_backend_in(tx, action.route, action.backend)
        elif isinstance(action, MirrorTraffic):
            mirror = action

            def set_mirror(spec: dict[str, Any]) -> None:
                current = spec.get("mirror") or {}
                if mirror.percent > 0:
                    spec["mirror"] = {
                        "backend": mirror.backend,
                        "percent": mirror.percent,
                        "compare": mirror.compare.model_dump(mode="json"),
                    }
                elif current.get("backend") == mirror.backend:
                    spec.pop("mirror", None)

            await self.gateway.edit_in(tx, action.route, set_mirror)
        elif isinstance(action, SetFlagRollout):
            await self.flags.set_rollout_in(tx, action.flag, action.variant, action.percent)
        elif isinstance(action, SetReplication):
            try:
                await execute_in(tx, action)
            except DataStepError as error:
                raise ActionError(str(error)) from None
        elif not isinstance(action, Check | RetireReplication):
            raise ActionError(f"unknown action {action!r}")
        return action.model_dump(mode="json")


__all__ = [
    "LEASE_SECONDS",
    "ActionError",
    "FlagRollouts",
    "FlagStoreRollouts",
    "PlanRunner",
    "default_owner",
]
