"""The durable engine that runs sagas and workflows.

An execution is a row of ``orch_executions`` (its status, each step's state, the context,
the trace context) plus an append-only history in ``orch_history``. Workers share executions
through leases: a worker claims executions that are due (``FOR UPDATE SKIP LOCKED`` on
PostgreSQL), drives each one as far as it can, and saves every change together with its
history records in one transaction, but only while it still holds the lease. Before a
step's call goes out, the step is saved as started; when a worker dies mid-step, another
(or the restarted one) claims the execution after the lease expires and runs that one
attempt again, with the same idempotency key.

Retries wait on durable timers: a short backoff is slept by the worker holding the
execution, a long one releases it with a due time. Events for the bus (``saga.completed``,
``workflow.failed``, ...) go through the store's outbox in the same transaction, so one is
published for every ending, after the ending is saved. A compensation that keeps failing
puts an item in the review queue, in the same transaction too.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from hybridmesh.core.clock import SYSTEM_CLOCK, Clock
from hybridmesh.core.errors import ConfigurationError, NotFoundError, ValidationError
from hybridmesh.core.ids import new_id, uuid7
from hybridmesh.core.serialization import dumps, loads
from hybridmesh.events import CloudEvent, EventBus, Outbox, OutboxRelay
from hybridmesh.observability import get_logger
from hybridmesh.observability.tracing import continue_trace, inject_headers, start_call_span
from hybridmesh.orchestration import _records as sql
from hybridmesh.orchestration._machine import (
    ExecutionState,
    Failure,
    Machine,
    Record,
    Status,
    StepCall,
)
from hybridmesh.orchestration._records import Execution, HistoryEvent, ended_execution
from hybridmesh.orchestration.catalog import DefinitionCatalog
from hybridmesh.orchestration.plan import Kind, Plan
from hybridmesh.orchestration.steps import ORCHESTRATOR, Attempt, StepRunner, classify
from hybridmesh.orchestration.templates import has_templates, render
from hybridmesh.review import ReviewQueue
from hybridmesh.store import BatchResult, Statement, Store
from hybridmesh.store.group_commit import GroupCommit

log = get_logger("hybridmesh.orchestration")

#: A backoff up to this long (seconds) is slept by the worker holding the execution; a
#: longer one releases it until it is due.
HOLD_SECONDS = 1.0
#: The bus group that receives saga.step.completed / saga.step.failed.
STEP_EVENTS_GROUP = "hybridmesh-orchestrator"


class _LeaseLost(Exception):
    """The execution's lease expired and another worker took it: stop touching it."""


@dataclass
class _Live:
    """An execution a worker of this engine is driving."""

    id: str
    plan: Plan
    input: Any
    machine: Machine
    trace: str | None
    seq: int
    created: float
    signals: bool = False  # signals wait in orch_signals
    recovered: bool = False  # claimed from the store, not started here
    consumed: list[tuple[str]] = field(default_factory=list)  # signals applied, not yet saved
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)  # a signal came
    ended: Execution | None = None  # saved as ended by this worker
    tasks: dict[StepCall, asyncio.Task[None]] = field(default_factory=dict)
    #: Attempts that ended, as (call, ok, result or Failure); None: a signal came.
    outcomes: asyncio.Queue[tuple[StepCall, bool, Any] | None] = field(
        default_factory=asyncio.Queue
    )


class Orchestrator:
    """Runs sagas and workflows durably, on the store, across any number of workers.

    ``client`` makes the steps' calls (see :class:`~hybridmesh.orchestration.steps.StepRunner`
    for the rules per architecture); ``functions`` and ``batch`` serve serverless steps and
    legacy batch operations; ``bus`` receives the engine's events (through the outbox) and
    delivers ``saga.step.completed``/``saga.step.failed``; ``review`` takes compensations
    that keep failing.

    Nothing runs until :meth:`start_worker` (or ``async with``): :meth:`start` only records
    an execution, which any worker on the same store picks up. A worker in this process
    starts driving its own new executions at once, without waiting to claim them.
    """

    def __init__(
        self,
        store: Store,
        catalog: DefinitionCatalog,
        runner: StepRunner,
        *,
        bus: EventBus | None = None,
        review: ReviewQueue | None = None,
        clock: Clock = SYSTEM_CLOCK,
        worker_id: str | None = None,
        lease_seconds: float = 30.0,
        poll_interval: float = 0.2,
        max_executions: int = 200,
    ) -> None:
        if lease_seconds <= 0 or poll_interval <= 0 or max_executions < 1:
            raise ConfigurationError("lease_seconds, poll_interval and max_executions must be > 0")
        self.store = store
        self.catalog = catalog
        self.runner = runner
        self.bus = bus
        self.review = review
        self.clock = clock
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{new_id()[:8]}"
        self.lease_seconds = lease_seconds
        self.poll_interval = poll_interval
        self.max_executions = max_executions
        self._claim_sql = sql.CLAIM.format(
            lock=sql.SKIP_LOCKED if store.dialect == "postgresql" else ""
        )
        self._outbox = Outbox(store, clock=clock) if bus is not None else None
        self._relay = OutboxRelay(store, bus, clock=clock) if bus is not None else None
        self._writes: GroupCommit[list[Statement], list[BatchResult]] = GroupCommit(
            self._commit, "hybridmesh-orchestrator-writes"
        )
        self._driving: dict[str, asyncio.Task[None]] = {}
        self._lives: dict[str, _Live] = {}
        self._endings: dict[str, asyncio.Future[Execution | None]] = {}
        self._poke = asyncio.Event()
        self._relay_poke = asyncio.Event()
        self._stopping = False
        self._worker: asyncio.Task[None] | None = None
        self._helpers: list[asyncio.Task[None]] = []

    # -- definitions -----------------------------------------------------------------------

    async def register(self, plan: Plan, **options: Any) -> Plan:
        """Store ``plan`` as a version of its definition (see the catalog); returns it with
        the version new executions of it will use."""
        return await self.catalog.register(plan, **options)

    # -- starting and reading --------------------------------------------------------------

    async def start(
        self,
        kind: Kind | str,
        name: str,
        input: Mapping[str, Any] | None = None,
        *,
        execution_id: str | None = None,
        version: int | None = None,
    ) -> str:
        """Record a new execution of the newest version of the definition (or ``version``)
        and return its id. Starting again with the same ``execution_id`` returns that id
        and starts nothing (a retried request starts one execution)."""
        plan = await self.catalog.get(Kind(kind), name, version)
        execution_id = execution_id or uuid7()
        data = dict(input or {})
        now = self._now()
        state = ExecutionState.new(plan, data, now)
        machine = Machine(plan, Status.RUNNING, state, attempts_of=self.runner.max_attempts)
        with start_call_span(
            f"{plan.kind.value} {plan.name}",
            attributes={
                "hybridmesh.execution_id": execution_id,
                "hybridmesh.definition": plan.name,
                "hybridmesh.version": plan.version,
            },
        ) as span:
            carrier: dict[str, str] = {}
            inject_headers(carrier, span)
        trace = carrier.get("traceparent")
        local = self._worker is not None and not self._stopping
        started = Record("execution.started", data={"version": plan.version, "input": data})
        statements = [
            Statement(
                sql.INSERT_EXECUTION,
                (
                    execution_id,
                    plan.kind.value,
                    plan.name,
                    plan.version,
                    Status.RUNNING.value,
                    dumps(data),
                    dumps(state.to_dict()),
                    trace,
                    now,
                    self.worker_id if local else None,
                    now + self.lease_seconds if local else None,
                    1,
                    now,
                    now,
                ),
            ),
            Statement(
                sql.INSERT_HISTORY, rows=_history_rows(execution_id, 0, [started], now), after=0
            ),
        ]
        event = self._event(plan, execution_id, "started", {"input": data})
        if event is not None:
            statements.append(replace(event, after=0))
        results = await self._writes.submit(statements)
        if not results[0]:
            return execution_id  # already started: the same request came again
        if event is not None:
            self._relay_poke.set()
        log.info("started %s %s v%d as %s", plan.kind.value, plan.name, plan.version, execution_id)
        if local:
            live = _Live(execution_id, plan, data, machine, trace, seq=1, created=now)
            self._spawn(live)
        else:
            self._poke.set()
        return execution_id

    async def start_saga(
        self, saga_type: str, input: Mapping[str, Any] | None = None, **options: Any
    ) -> str:
        """:meth:`start` for a saga type."""
        return await self.start(Kind.SAGA, saga_type, input, **options)

    async def start_workflow(
        self, workflow_id: str, input: Mapping[str, Any] | None = None, **options: Any
    ) -> str:
        """:meth:`start` for a workflow."""
        return await self.start(Kind.WORKFLOW, workflow_id, input, **options)

    async def get(self, execution_id: str) -> Execution:
        """The execution as stored; ``NotFoundError`` when there is none."""
        row = await self.store.fetch_one(
            f"SELECT {sql.EXECUTION_COLUMNS} FROM orch_executions WHERE id = ?", execution_id
        )
        if row is None:
            raise NotFoundError(f"no execution {execution_id!r}")
        return Execution.from_row(row)

    async def executions(
        self,
        *,
        status: Status | str | None = None,
        kind: Kind | str | None = None,
        name: str | None = None,
        limit: int = 100,
    ) -> list[Execution]:
        """Executions, newest first, filtered by status, kind and definition name."""
        where: list[str] = []
        args: list[Any] = []
        for column, value in (("status", status), ("kind", kind), ("name", name)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(str(value))
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        rows = await self.store.fetch_all(
            f"SELECT {sql.EXECUTION_COLUMNS} FROM orch_executions{clause} "
            "ORDER BY created_at DESC, id DESC LIMIT ?",
            *args,
            limit,
        )
        return [Execution.from_row(row) for row in rows]

    async def history(self, execution_id: str) -> list[HistoryEvent]:
        """The execution's history, oldest first; ``NotFoundError`` when there is none."""
        rows = await self.store.fetch_all(
            "SELECT seq, type, step_id, attempt, data, at FROM orch_history "
            "WHERE execution_id = ? ORDER BY seq",
            execution_id,
        )
        if not rows:
            await self.get(execution_id)  # raises NotFoundError
        return [HistoryEvent.from_row(row) for row in rows]

    async def wait(
        self,
        execution_id: str,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> Execution:
        """Wait until the execution ends and return it; ``TimeoutError`` after ``timeout``
        seconds (real time). Works for executions driven by any worker."""
        async with asyncio.timeout(timeout):
            while True:
                future = self._endings.get(execution_id)
                if future is not None:
                    ended = await asyncio.shield(future)
                    if ended is not None:
                        return ended
                execution = await self.get(execution_id)
                if execution.ended:
                    return execution
                if future is None:
                    await asyncio.sleep(self.poll_interval)

    # -- signals from outside --------------------------------------------------------------

    async def cancel(self, execution_id: str, reason: str = "cancelled by request") -> Execution:
        """Ask the execution to stop: nothing new starts, and a saga (or a workflow that
        compensates) undoes its completed steps before it ends ``cancelled``. A worker
        applies it; raises ``NotFoundError``, and ``ValidationError`` when it has ended."""
        execution = await self.get(execution_id)
        if execution.ended:
            raise ValidationError(
                f"execution {execution_id!r} has already ended ({execution.status.value})"
            )
        await self._signal(execution_id, "cancel", None, {"reason": reason})
        return execution

    async def signal_step(
        self, execution_id: str, step_id: str, *, ok: bool, data: Any = None
    ) -> None:
        """Report the end of a step that completes by event (what ``saga.step.completed``
        and ``saga.step.failed`` carry). Unknown or ended executions are ignored."""
        await self._signal(execution_id, "step_completed" if ok else "step_failed", step_id, data)

    async def retry_compensations(self, execution_id: str) -> Execution:
        """Run the failed compensations of a ``compensation_failed`` execution again (what
        a review item's retry does). Raises ``ValidationError`` in any other status."""
        execution = await self.get(execution_id)
        if execution.status is not Status.COMPENSATION_FAILED:
            raise ValidationError(
                f"execution {execution_id!r} is {execution.status.value}, "
                "not compensation_failed: there is nothing to retry"
            )
        await self._signal(execution_id, "retry_compensations", None, None, reopen=True)
        return execution

    async def _signal(
        self,
        execution_id: str,
        kind: str,
        step_id: str | None,
        data: Any,
        *,
        reopen: bool = False,
    ) -> None:
        now = self._now()
        async with self.store.transaction() as tx:
            if reopen:
                await tx.execute(
                    "UPDATE orch_executions SET status = ?, wake_at = ?, ended_at = NULL "
                    "WHERE id = ? AND status = ?",
                    Status.COMPENSATING.value,
                    now,
                    execution_id,
                    Status.COMPENSATION_FAILED.value,
                )
            await tx.execute(
                sql.INSERT_SIGNAL,
                new_id(),
                execution_id,
                kind,
                step_id,
                dumps(data),
                now,
                execution_id,
            )
            await tx.execute(sql.WAKE_FOR_SIGNAL, now, execution_id)
        self._notify(execution_id)
        self._poke.set()

    def _notify(self, execution_id: str) -> None:
        """Tell this process's driver of the execution, if any, that signals wait."""
        live = self._lives.get(execution_id)
        if live is not None:
            live.signals = True
            live.wakeup.set()
            live.outcomes.put_nowait(None)

    async def on_step_event(self, event: CloudEvent) -> None:
        """Bus handler for ``saga.step.completed`` / ``saga.step.failed``: the data names
        the execution (``saga_id`` or ``execution_id``) and ``step_id``, and carries
        ``result`` or ``error``."""
        data = event.data if isinstance(event.data, Mapping) else {}
        execution_id = data.get("saga_id") or data.get("execution_id")
        step_id = data.get("step_id")
        if not execution_id or not step_id:
            raise ValidationError(f"{event.type} event {event.id} names no saga_id and step_id")
        ok = event.type.endswith(".completed")
        await self.signal_step(
            str(execution_id), str(step_id), ok=ok, data=data.get("result" if ok else "error")
        )

    # -- the worker ------------------------------------------------------------------------

    async def start_worker(self) -> None:
        """Start claiming and driving executions in this process (idempotent)."""
        if self._worker is not None:
            return
        self._stopping = False
        self._worker = asyncio.create_task(self._work(), name="hybridmesh-orchestrator")
        self._helpers.append(asyncio.create_task(self._renew(), name="hybridmesh-leases"))
        if self._relay is not None:
            self._helpers.append(asyncio.create_task(self._relay_events(), name="hybridmesh-relay"))
        if self.bus is not None and STEP_EVENTS_GROUP not in self.bus.subscriptions:
            self.bus.subscribe("saga.step.*", self.on_step_event, group=STEP_EVENTS_GROUP)

    async def stop(self, grace: float = 30.0) -> None:
        """Stop the worker: claim nothing more, let running steps finish (up to ``grace``
        seconds), save them, and release every execution so another worker goes on.
        Executions still running after ``grace`` are released as they are: their
        interrupted step runs again elsewhere, with the same idempotency key."""
        if self._worker is None:
            return
        self._stopping = True
        self._poke.set()
        # Drivers stop themselves at the next step boundary.
        drivers = list(self._driving.values())
        if drivers:
            _, late = await asyncio.wait(drivers, timeout=grace)
            for task in late:
                task.cancel()
            if late:
                await asyncio.gather(*late, return_exceptions=True)
        self._worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._worker
        self._worker = None
        with contextlib.suppress(Exception):
            await self.store.execute(sql.RELEASE_ALL, self._now(), self.worker_id)
        if self._relay is not None:
            with contextlib.suppress(Exception):
                while await self._relay.relay_once():
                    pass
        for helper in self._helpers:
            helper.cancel()
        await asyncio.gather(*self._helpers, return_exceptions=True)
        self._helpers.clear()

    async def __aenter__(self) -> Orchestrator:
        await self.start_worker()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def driving(self) -> int:
        """How many executions this worker drives right now."""
        return len(self._driving)

    async def _work(self) -> None:
        while not self._stopping:
            self._poke.clear()
            free = self.max_executions - len(self._driving)
            claimed = 0
            if free > 0:
                try:
                    claimed = await self._claim(free)
                except Exception:
                    log.exception("claiming executions failed; trying again")
            if claimed and claimed == free:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poke.wait(), self.poll_interval)

    async def _claim(self, limit: int) -> int:
        now = self._now()
        rows = await self.store.fetch_all(
            self._claim_sql, self.worker_id, now + self.lease_seconds, now, now, limit
        )
        for row in rows:
            if row["id"] in self._driving:
                continue  # our own lease, renewed: the driver is on it
            try:
                plan = await self.catalog.get(Kind(row["kind"]), row["name"], int(row["version"]))
            except Exception:
                log.exception("execution %s: its definition cannot be loaded", row["id"])
                continue
            state = ExecutionState.from_dict(loads(row["state"]))
            machine = Machine(
                plan, Status(row["status"]), state, attempts_of=self.runner.max_attempts
            )
            live = _Live(
                row["id"],
                plan,
                loads(row["input"]),
                machine,
                row["trace_context"],
                seq=int(row["history_seq"]),
                created=float(row["created_at"]),
                signals=bool(row["signals"]),
                recovered=True,
            )
            self._spawn(live)
        return len(rows)

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            if not self._driving:
                continue
            try:
                rows = await self.store.fetch_all(
                    sql.RENEW, self._now() + self.lease_seconds, self.worker_id
                )
            except Exception:
                log.exception("renewing leases failed")
                continue
            for row in rows:
                if row["signals"]:  # from another process: a cancel, a completion event
                    self._notify(row["id"])

    async def _relay_events(self) -> None:
        assert self._relay is not None
        while True:
            try:
                while await self._relay.relay_once():
                    pass
            except Exception:
                log.exception("publishing the engine's events failed; trying again")
            self._relay_poke.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._relay_poke.wait(), self._relay.poll_interval)

    def _spawn(self, live: _Live) -> None:
        task = asyncio.create_task(self._drive(live), name=f"hybridmesh-execution-{live.id}")
        self._driving[live.id] = task
        self._lives[live.id] = live
        self._endings.setdefault(live.id, asyncio.get_running_loop().create_future())

        def done(_: asyncio.Task[None]) -> None:
            self._driving.pop(live.id, None)
            self._lives.pop(live.id, None)
            future = self._endings.pop(live.id, None)
            if future is not None and not future.done():
                future.set_result(live.ended)
            self._poke.set()

        task.add_done_callback(done)

    # -- driving one execution -------------------------------------------------------------

    async def _drive(self, live: _Live) -> None:
        machine = live.machine
        calls: list[StepCall] = machine.recover() if live.recovered else []
        try:
            while True:
                if live.signals:
                    await self._apply_signals(live)
                now = self._now()
                if self._stopping:
                    if live.tasks:
                        await self._collect(live, None)
                        continue
                    await self._save(live, release=True, wake=now)
                    return
                calls += machine.advance(now)
                for call, task in list(live.tasks.items()):
                    if not machine.in_flight(call):
                        task.cancel()  # abandoned: the execution timed out or was cancelled
                        del live.tasks[call]
                if machine.status.terminal:
                    for task in live.tasks.values():
                        task.cancel()
                    await self._save(live, release=True, wake=None)
                    live.ended = ended_execution(
                        id=live.id,
                        kind=live.plan.kind.value,
                        name=live.plan.name,
                        version=live.plan.version,
                        status=machine.status,
                        input=live.input,
                        state=machine.state,
                        trace_context=live.trace,
                        created_at=live.created,
                        ended_at=self._now(),
                    )
                    return
                wake = machine.wake_at()
                if not calls and not live.tasks:
                    if wake is None or wake - now > HOLD_SECONDS:
                        await self._save(live, release=True, wake=wake)
                        if not live.signals:
                            return
                        live.signals = await self._reclaim(live)
                        if not live.signals:
                            return
                        continue
                    await self._save(live, release=False, wake=now)
                    await self._sleep_until(live, wake)
                    continue
                await self._save(live, release=False, wake=now)
                for call in calls:
                    live.tasks[call] = asyncio.create_task(self._attempt(live, call))
                calls = []
                await self._collect(live, None if wake is None else max(0.0, wake - now))
        except _LeaseLost:
            log.warning("execution %s: lease lost; another worker has it", live.id)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("execution %s: the worker failed; it is released", live.id)
        finally:
            for task in live.tasks.values():
                task.cancel()

    async def _collect(self, live: _Live, within: float | None) -> None:
        """Wait for the first running attempt to end (or ``timeout``), and record the ones
        that ended."""
        if not live.tasks or live.signals:
            return
        if within is None:
            first = await live.outcomes.get()
        else:
            try:
                async with asyncio.timeout(within):
                    first = await live.outcomes.get()
            except TimeoutError:
                return
        ended = [first]
        while not live.outcomes.empty():
            ended.append(live.outcomes.get_nowait())
        now = self._now()
        for item in ended:
            if item is None:
                continue  # a signal: the loop applies it
            call, ok, outcome = item
            live.tasks.pop(call, None)
            if not ok:
                live.machine.failed(call, outcome, now)
            elif call.compensation or live.plan.step(call.step_id).completion.value != "event":
                live.machine.succeeded(call, outcome, now)
            else:
                live.machine.accepted(call, outcome, now)

    async def _attempt(self, live: _Live, call: StepCall) -> None:
        """Make one attempt and queue its outcome for the driver."""
        step = live.plan.step(call.step_id)
        operation = step.compensation if call.compensation else step.operation
        assert operation is not None
        what = "compensate" if call.compensation else "step"
        with (
            continue_trace({"traceparent": live.trace} if live.trace else {}),
            start_call_span(
                f"{what} {step.step_id}",
                attributes={
                    "hybridmesh.execution_id": live.id,
                    "hybridmesh.step_id": step.step_id,
                    "hybridmesh.attempt": call.attempt,
                    "hybridmesh.compensation": call.compensation,
                },
            ),
        ):
            try:
                payload = (
                    render(operation.payload, self._scope(live))
                    if has_templates(operation.payload)
                    else operation.payload
                )
                attempt = Attempt(
                    live.id, step, operation, payload, call.compensation, call.attempt
                )
                # The client, the functions and the batch queue bound each attempt by the
                # step's timeout themselves.
                result = await self.runner.run(attempt)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                failure: Failure = classify(error, step.retry)
                log.info(
                    "execution %s: %s %s attempt %d failed: %s",
                    live.id,
                    what,
                    step.step_id,
                    call.attempt,
                    failure.message,
                )
                live.outcomes.put_nowait((call, False, failure))
            else:
                live.outcomes.put_nowait((call, True, result))

    def _scope(self, live: _Live) -> dict[str, Any]:
        state = live.machine.state
        return {
            "input": live.input,
            "context": state.context,
            "execution_id": live.id,
            "steps": {
                step_id: {"status": s.status.value, "result": s.result}
                for step_id, s in state.steps.items()
            },
        }

    async def _sleep_until(self, live: _Live, wake: float) -> None:
        delay = max(0.0, wake - self._now())
        if not delay or live.signals:
            return
        live.wakeup.clear()
        sleeping = asyncio.ensure_future(self.clock.sleep(delay))
        woken = asyncio.ensure_future(live.wakeup.wait())
        try:
            await asyncio.wait([sleeping, woken], return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeping.cancel()
            woken.cancel()

    async def _apply_signals(self, live: _Live) -> None:
        rows = await self.store.fetch_all(sql.SELECT_SIGNALS, live.id)
        now = self._now()
        machine = live.machine
        consumed: list[tuple[str]] = []
        for row in rows:
            consumed.append((row["id"],))
            data = loads(row["data"]) if row["data"] else None
            kind = row["kind"]
            if kind == "cancel":
                reason = (data or {}).get("reason", "cancelled by request")
                machine.cancel(str(reason), now)
            elif kind == "retry_compensations":
                machine.status = Status.COMPENSATION_FAILED
                machine.retry_compensations()
            elif (
                kind in ("step_completed", "step_failed")
                and row["step_id"]
                and not machine.signal(row["step_id"], kind == "step_completed", data, now)
            ):
                log.info(
                    "execution %s: ignored %s for step %s (not waiting for it)",
                    live.id,
                    kind,
                    row["step_id"],
                )
        live.consumed = consumed
        live.signals = False

    async def _reclaim(self, live: _Live) -> bool:
        """After releasing, signals had arrived: take the execution back if still free."""
        now = self._now()
        rows = await self.store.fetch_all(
            "UPDATE orch_executions SET lease_owner = ?, lease_until = ? "
            "WHERE id = ? AND lease_owner IS NULL RETURNING signals",
            self.worker_id,
            now + self.lease_seconds,
            live.id,
        )
        return bool(rows and rows[0]["signals"])

    async def _save(self, live: _Live, *, release: bool, wake: float | None) -> None:
        """Save the execution's state, its new history and what its ending publishes, in
        one transaction shared with other executions' saves (group commit); only while
        this worker holds the lease (else :class:`_LeaseLost`)."""
        machine = live.machine
        records = machine.take_history()
        consumed = live.consumed
        if not records and not release and not consumed:
            return
        now = self._now()
        status = machine.status
        flag = 1 if release else 0
        save = Statement(
            sql.SAVE,
            (
                status.value,
                dumps(machine.state.to_dict()),
                machine.state.failure,
                live.seq + len(records),
                now,
                now if status.terminal else None,
                live.id,
                flag,
                live.id,
                now,
                wake,
                flag,
                flag,
                live.id,
                self.worker_id,
            ),
            fetch=True,
        )
        statements = [save]
        if consumed:
            statements.append(Statement(sql.DELETE_SIGNAL, rows=consumed, after=0))
        if records:
            rows = _history_rows(live.id, live.seq, records, now)
            statements.append(Statement(sql.INSERT_HISTORY, rows=rows, after=0))
        ending = next((r for r in records if r.type in _ENDINGS), None)
        if ending is not None:
            outcome = ending.type.split(".", 1)[1]
            event = self._event(live.plan, live.id, outcome, dict(ending.data or {}))
            if event is not None:
                statements.append(replace(event, after=0))
        if status is Status.COMPENSATION_FAILED and self.review is not None and ending:
            saved = await self._save_for_review(live, statements)
        else:
            saved = await self._writes.submit(statements)
        rows_back = saved[0]
        if not isinstance(rows_back, list) or not rows_back:
            raise _LeaseLost(live.id)
        if ending is not None:
            self._relay_poke.set()
        live.seq += len(records)
        live.consumed = []
        live.signals = bool(rows_back[0]["signals"])

    async def _commit(self, changes: list[list[Statement]]) -> list[list[BatchResult]]:
        """Write several executions' changes in one batch (group commit)."""
        flat: list[Statement] = []
        spans: list[tuple[int, int]] = []
        for statements in changes:
            base = len(flat)
            spans.append((base, len(statements)))
            for statement in statements:
                shifted = None if statement.after is None else statement.after + base
                flat.append(replace(statement, after=shifted))
        results = await self.store.batch(flat)
        return [results[base : base + count] for base, count in spans]

    async def _save_for_review(self, live: _Live, statements: list[Statement]) -> list[BatchResult]:
        """Save a compensation that keeps failing together with its review item."""
        assert self.review is not None
        failed = {
            step_id: s.comp_error
            for step_id, s in live.machine.state.steps.items()
            if s.comp.value == "failed"
        }
        kind = live.plan.kind
        async with self.store.transaction() as tx:
            first = statements[0]
            rows = await tx.fetch_all(first.sql, *first.args)
            if not rows:
                return [rows]
            for statement in statements[1:]:
                await tx.executemany(statement.sql, statement.rows or [statement.args])
            await self.review.add(
                "saga" if kind is Kind.SAGA else "workflow",
                f"{kind.value} {live.plan.name} could not be compensated: "
                + "; ".join(f"{step_id}: {error}" for step_id, error in failed.items()),
                {
                    "execution_id": live.id,
                    "definition": live.plan.name,
                    "version": live.plan.version,
                    "failed_compensations": failed,
                    "input": live.input,
                },
                origin_ref=live.id,
                tx=tx,
            )
        return [rows]

    def _event(
        self, plan: Plan, execution_id: str, outcome: str, data: dict[str, Any]
    ) -> Statement | None:
        """The outbox insert of the event for ``outcome`` (None without a bus)."""
        if self._outbox is None:
            return None
        key = "saga_id" if plan.kind is Kind.SAGA else "execution_id"
        body = {
            key: execution_id,
            "type": plan.name,
            "version": plan.version,
            "status": outcome,
            **data,
        }
        if plan.kind is Kind.WORKFLOW:
            body["workflow_id"] = plan.name
        else:
            body["saga_type"] = plan.name
        event = CloudEvent.create(
            f"{plan.kind.value}.{outcome}",
            ORCHESTRATOR,
            body,
            subject=execution_id,
            extensions={"partitionkey": execution_id},
        )
        return self._outbox.statement([event])

    def _now(self) -> float:
        return self.clock.now().timestamp()


#: The history records that end an execution: each publishes its event.
_ENDINGS = frozenset(f"execution.{status.value}" for status in Status if status.terminal)


def _history_rows(
    execution_id: str, seq: int, records: list[Record], now: float
) -> list[tuple[Any, ...]]:
    return [
        (
            execution_id,
            seq + index,
            record.type,
            record.step_id,
            record.attempt,
            dumps(record.data) if record.data is not None else None,
            now,
        )
        for index, record in enumerate(records, start=1)
    ]


__all__ = ["HOLD_SECONDS", "STEP_EVENTS_GROUP", "Orchestrator"]
