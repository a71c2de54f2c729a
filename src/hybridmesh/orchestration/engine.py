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
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from hybridmesh.core.clock import SYSTEM_CLOCK, Clock
from hybridmesh.core.deadlines import Deadline
from hybridmesh.core.errors import ConfigurationError, NotFoundError, ValidationError
from hybridmesh.core.ids import new_id, uuid7
from hybridmesh.core.serialization import dumps, loads
from hybridmesh.events import CloudEvent, EventBus, Outbox, OutboxRelay
from hybridmesh.events.backends.sql import APPEND_EVENT
from hybridmesh.observability import get_logger
from hybridmesh.observability.tracing import (
    context_in_trace,
    inject_child_headers,
    inject_headers,
    start_call_span,
    tracing_records,
)
from hybridmesh.orchestration import _records as sql
from hybridmesh.orchestration._driver import Driver, Live
from hybridmesh.orchestration._machine import (
    ExecutionState,
    Machine,
    Record,
    Status,
)
from hybridmesh.orchestration._records import Execution, HistoryEvent, history_rows
from hybridmesh.orchestration.catalog import DefinitionCatalog
from hybridmesh.orchestration.plan import Kind, Plan
from hybridmesh.orchestration.steps import ORCHESTRATOR, StepRunner
from hybridmesh.review import ReviewQueue
from hybridmesh.store import BatchResult, Statement, Store
from hybridmesh.store.group_commit import GroupCommit
from hybridmesh.store.postgres import array_columns

log = get_logger("hybridmesh.orchestration")

#: The bus group that receives saga.step.completed / saga.step.failed.
STEP_EVENTS_GROUP = "hybridmesh-orchestrator"


class Publication(NamedTuple):
    """An event the engine publishes with an execution's write, and the insert that does."""

    event: CloudEvent
    statement: Statement  # guarded by the execution's statement (after=0)
    inline: bool  # appended to the bus's log directly (not through the outbox)


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
        postgres = self._postgres = store.dialect == "postgresql"
        self._claim_sql = sql.CLAIM.format(lock=sql.SKIP_LOCKED if postgres else "")
        self._renew_sql = sql.RENEW.format(lock=sql.FOR_UPDATE if postgres else "")
        self._release_sql = sql.RELEASE_ALL.format(lock=sql.FOR_UPDATE if postgres else "")
        self._outbox = Outbox(store, clock=clock) if bus is not None else None
        self._relay = OutboxRelay(store, bus, clock=clock) if bus is not None else None
        self._writes: GroupCommit[tuple[str, list[Statement]], list[BatchResult]] = GroupCommit(
            self._commit, "hybridmesh-orchestrator-writes", gather=store.batches_inline
        )
        self._driver = Driver(self)
        self._driving: dict[str, asyncio.Task[None]] = {}
        self._lives: dict[str, Live] = {}
        self._endings: dict[str, asyncio.Future[Execution | None]] = {}
        self._poke = asyncio.Event()
        # Whether due executions may be waiting that this worker had no room to claim: its
        # last claim took as many as it asked for (or it has not claimed yet).
        self._backlog = True
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
        # The execution's span: its steps are its children, in whichever worker runs them.
        carrier: dict[str, str] = {}
        if tracing_records():
            with start_call_span(
                f"{plan.kind.value} {plan.name}",
                attributes={
                    "hybridmesh.execution_id": execution_id,
                    "hybridmesh.definition": plan.name,
                    "hybridmesh.version": plan.version,
                },
            ) as span:
                inject_headers(carrier, span)
        else:
            inject_child_headers(carrier)  # the ids an unrecorded span would carry
        trace = carrier.get("traceparent")
        local = self._worker is not None and not self._stopping
        records = [Record("execution.started", data={"version": plan.version, "input": data})]
        # A worker in this process starts the first steps in the same write.
        first_calls = machine.advance(now) if local else []
        records += machine.take_history()
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
                    state.to_json(),
                    trace,
                    now,
                    self.worker_id if local else None,
                    now + self.lease_seconds if local else None,
                    len(records),
                    now,
                    now,
                ),
            ),
            Statement(
                sql.INSERT_HISTORY, rows=history_rows(execution_id, 0, records, now), after=0
            ),
        ]
        event = self._event(plan, execution_id, trace, "started", {"input": data})
        if event is not None:
            statements.append(event.statement)
        results = await self._writes.submit((execution_id, statements))
        if not results[0]:
            return execution_id  # already started: the same request came again
        if event is not None:
            self._published(event)
        log.info("started %s %s v%d as %s", plan.kind.value, plan.name, plan.version, execution_id)
        if local:
            live = Live(execution_id, plan, data, machine, trace, seq=len(records), created=now)
            live.first_calls = first_calls
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
        return await load_execution(self.store, execution_id)

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
        if timeout is None:
            return await self._wait(execution_id)
        limit = Deadline.start(timeout)
        try:
            ended = await self._wait(execution_id)
        except BaseException as error:
            if limit.end(error):
                raise TimeoutError(
                    f"execution {execution_id} did not end within {timeout:g}s"
                ) from None
            raise
        limit.end()
        return ended

    async def _wait(self, execution_id: str) -> Execution:
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
        execution = await retry_compensations(self.store, execution_id, clock=self.clock)
        self._notify(execution_id)
        self._poke.set()
        return execution

    async def _signal(self, execution_id: str, kind: str, step_id: str | None, data: Any) -> None:
        await send_signal(self.store, execution_id, kind, step_id, data, now=self._now())
        self._notify(execution_id, step_id)
        self._poke.set()

    def _notify(self, execution_id: str, step_id: str | None = None) -> None:
        """Tell this process's driver of the execution, if any, that signals wait (about
        ``step_id``, or about the whole execution)."""
        live = self._lives.get(execution_id)
        if live is None:
            return
        live.signals = True
        live.outcomes.put_nowait(None)  # wakes the driver, waiting or sleeping
        inline = live.inline_call
        if (
            live.inline is not None
            and inline is not None
            and not live.interrupted
            and (step_id is None or step_id == inline.step_id)
        ):
            live.interrupted = True  # the driver makes the attempt itself: interrupt it
            live.inline.cancel()

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
            await self.store.execute(self._release_sql, self._now(), self.worker_id)
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
                    self._backlog = claimed == free
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
            live = Live(
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
                    self._renew_sql, self._now() + self.lease_seconds, self.worker_id
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

    def _spawn(self, live: Live) -> None:
        # The driver runs in the execution's trace: its attempts' spans are the execution's
        # children, whichever worker makes them.
        task = asyncio.create_task(
            self._driver.drive(live),
            name=f"hybridmesh-execution-{live.id}",
            context=context_in_trace({"traceparent": live.trace} if live.trace else {}),
        )
        self._driving[live.id] = task
        self._lives[live.id] = live
        self._endings.setdefault(live.id, asyncio.get_running_loop().create_future())

        def done(_: asyncio.Task[None]) -> None:
            full = self._backlog and len(self._driving) >= self.max_executions
            self._driving.pop(live.id, None)
            self._lives.pop(live.id, None)
            future = self._endings.pop(live.id, None)
            if future is not None and not future.done():
                future.set_result(live.ended)
            if full:
                # Executions may wait that a full worker could not claim (its last claim
                # took all it had room for): claim now, not at the next poll. Otherwise new
                # ones are found by the next poll, as when the worker is not full; claiming
                # after every ending of a full worker would cost a query per execution.
                self._poke.set()

        task.add_done_callback(done)

    # -- driving one execution -------------------------------------------------------------

    async def _commit(self, changes: list[tuple[str, list[Statement]]]) -> list[list[BatchResult]]:
        """Write several executions' changes in one batch (group commit).

        Each change is a head statement (the execution's insert or its lease-checked save)
        and row inserts and deletes that only count when the head did. The heads run first,
        in the order of their execution ids (PostgreSQL locks the rows in that order, the
        order lease renewals take too, so concurrent writers never deadlock); then each kind
        of row statement runs once for every change, each row guarded by its head. Returns,
        per change, the head's result.
        """
        if self._postgres and all(
            statement.sql in _ROW_STATEMENTS for _, (_, *rest) in changes for statement in rest
        ):
            return await self._commit_postgres(changes)
        order = sorted(range(len(changes)), key=lambda i: changes[i][0])
        flat: list[Statement] = []
        heads = [0] * len(changes)
        merged: dict[str, tuple[list[Sequence[Any]], list[int]]] = {}
        for index in order:
            head, *rest = changes[index][1]
            heads[index] = len(flat)
            flat.append(head)
            for statement in rest:
                if statement.after != 0 or statement.rows is None:
                    raise ValueError("a change's other statements must be rows after its head")
                rows, guards = merged.setdefault(statement.sql, ([], []))
                rows.extend(statement.rows)
                guards.extend([heads[index]] * len(statement.rows))
        for sql_text, (rows, guards) in merged.items():
            flat.append(Statement(sql_text, rows=rows, rows_after=guards))
        results = await self.store.batch(flat)
        return [[results[heads[index]]] for index in range(len(changes))]

    async def _commit_postgres(
        self, changes: list[tuple[str, list[Statement]]]
    ) -> list[list[BatchResult]]:
        """:meth:`_commit` on PostgreSQL of changes that write history records and events
        besides their heads (nearly all of them): one statement (``write_many``), so one
        round trip, with no BEGIN and COMMIT around it."""
        rows = _Rows.gather(changes)
        args: list[Any] = []
        if rows.saves:
            args.append([row[0] for row in rows.saves])
            args.append(dumps(rows.saves))
            args.append(rows.states)
        if rows.starts:
            args.append(dumps(rows.starts))
            args.append(rows.inputs)
            args.append(rows.start_states)
        if rows.history:
            args.append(dumps(rows.history))
        if rows.events:
            args += array_columns(rows.events)
        query = sql.write_many(
            bool(rows.saves), bool(rows.starts), bool(rows.history), bool(rows.events)
        )
        written = {
            row["id"]: row["signals"]
            for row in await self.store.fetch_all(query, *args)
            if row["id"] is not None
        }
        results: list[list[BatchResult]] = []
        for index, (execution_id, (head, *_)) in enumerate(changes):
            if head.sql is not sql.INSERT_EXECUTION:
                saved = execution_id in written
                results.append([[{"signals": written[execution_id]}] if saved else []])
            else:
                inserted = execution_id in written and index not in rows.duplicates
                results.append([1 if inserted else 0])
        return results

    def _event(
        self,
        plan: Plan,
        execution_id: str,
        trace: str | None,
        outcome: str,
        data: dict[str, Any],
    ) -> Publication | None:
        """The event for ``outcome``, in the execution's trace (``trace``, its
        traceparent), and the insert that publishes it with the execution's write: into the
        bus's log when the store keeps it, else into the outbox (None without a bus). Once
        written, :meth:`_published` it."""
        if self._outbox is None or self.bus is None:
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
            extensions=(
                {"partitionkey": execution_id, "traceparent": trace}
                if trace
                else {"partitionkey": execution_id}
            ),
        )
        statement = self.bus.append_statement(self.store, [event])
        inline = statement is not None
        if statement is None:
            statement = self._outbox.statement([event])
        # Written after the execution's own statement, and only if that one was (after=0).
        return Publication(event, Statement(statement.sql, rows=statement.rows, after=0), inline)

    def _published(self, publication: Publication) -> None:
        """A publication's insert was committed: tell the bus, or the relay."""
        if publication.inline:
            assert self.bus is not None
            self.bus.appended([publication.event])
        else:
            self._relay_poke.set()

    def _now(self) -> float:
        # Wall-clock epoch seconds: leases and due times are compared across processes.
        if self.clock is SYSTEM_CLOCK:
            return time.time()  # the same value, without building a datetime
        return self.clock.now().timestamp()


#: The statements besides its head that a change may have for
#: :meth:`Orchestrator._commit_postgres`.
_ROW_STATEMENTS = frozenset({sql.INSERT_HISTORY, APPEND_EVENT})
_TEXTS = frozenset(sql.START_TEXTS)


@dataclass
class _Rows:
    """The rows of a batch of changes for ``write_many``, by kind: the saves (their values
    at SAVE_COLUMNS; a held save's status is NULL, which keeps the row's, and its release
    0) and their states, the starts (INSERT_EXECUTION's arguments but the input and the
    state, distinct ids) and their inputs and states, the history records and the events
    (the execution's id, then the event's row)."""

    saves: list[list[Any]] = field(default_factory=list)
    states: list[str] = field(default_factory=list)
    starts: list[Sequence[Any]] = field(default_factory=list)
    inputs: list[str] = field(default_factory=list)
    start_states: list[str] = field(default_factory=list)
    history: list[Sequence[Any]] = field(default_factory=list)
    events: list[Sequence[Any]] = field(default_factory=list)
    duplicates: set[int] = field(default_factory=set)  # starts of an id already started

    @classmethod
    def gather(cls, changes: list[tuple[str, list[Statement]]]) -> _Rows:
        rows = cls()
        started: set[str] = set()
        for index, (execution_id, (head, *rest)) in enumerate(changes):
            if head.sql is sql.SAVE_HELD:
                state, error, seq, now, _, _, owner = head.args
                rows.saves.append([execution_id, None, error, seq, now, None, 0, now, None, owner])
                rows.states.append(state)
            elif head.sql is sql.SAVE:
                rows.saves.append([head.args[at] for at in sql.SAVE_COLUMNS])
                rows.states.append(head.args[sql.SAVE_STATE])
            elif head.sql is not sql.INSERT_EXECUTION:
                raise ValueError(f"not a head the engine writes: {head.sql[:40]!r}")
            elif execution_id in started:  # the same id twice in one batch: the first starts
                rows.duplicates.add(index)
                continue
            else:
                started.add(execution_id)
                args = head.args
                rows.starts.append([value for at, value in enumerate(args) if at not in _TEXTS])
                rows.inputs.append(args[sql.START_TEXTS[0]])
                rows.start_states.append(args[sql.START_TEXTS[1]])
            for statement in rest:
                if statement.after != 0 or statement.rows is None:
                    raise ValueError("a change's other statements must be rows after its head")
                if statement.sql is sql.INSERT_HISTORY:
                    rows.history.extend(statement.rows)
                else:
                    rows.events.extend((execution_id, *row) for row in statement.rows)
        return rows


async def load_execution(store: Store, execution_id: str) -> Execution:
    """The execution as stored; ``NotFoundError`` when there is none."""
    row = await store.fetch_one(
        f"SELECT {sql.EXECUTION_COLUMNS} FROM orch_executions WHERE id = ?", execution_id
    )
    if row is None:
        raise NotFoundError(f"no execution {execution_id!r}")
    return Execution.from_row(row)


async def send_signal(
    store: Store,
    execution_id: str,
    kind: str,
    step_id: str | None,
    data: Any,
    *,
    now: float,
    reopen: bool = False,
) -> None:
    """Leave a signal for the worker that holds (or next claims) the execution, and make
    it due now; with ``reopen``, a ``compensation_failed`` execution is compensating
    again. A signal for an execution that has ended is dropped."""
    async with store.transaction() as tx:
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
            sql.INSERT_SIGNAL, new_id(), execution_id, kind, step_id, dumps(data), now, execution_id
        )
        await tx.execute(sql.WAKE_FOR_SIGNAL, now, execution_id)


async def retry_compensations(
    store: Store, execution_id: str, *, clock: Clock = SYSTEM_CLOCK
) -> Execution:
    """Reopen the failed compensations of a ``compensation_failed`` execution for any
    worker on ``store`` to run. Needs only the store (the CLI's review retry uses it).
    Raises ``NotFoundError``, and ``ValidationError`` in any other status."""
    execution = await load_execution(store, execution_id)
    if execution.status is not Status.COMPENSATION_FAILED:
        raise ValidationError(
            f"execution {execution_id!r} is {execution.status.value}, "
            "not compensation_failed: there is nothing to retry"
        )
    now = clock.now().timestamp()
    await send_signal(store, execution_id, "retry_compensations", None, None, now=now, reopen=True)
    return execution


__all__ = [
    "STEP_EVENTS_GROUP",
    "Orchestrator",
    "load_execution",
    "retry_compensations",
    "send_signal",
]
