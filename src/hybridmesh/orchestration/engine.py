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
puts an item in the review queue, in the same transaction too, and so does an execution
that can never run (its definition version cannot be read or built, see ``_claimed``): it
ends ``failed`` the first time a worker claims it, instead of being claimed at every lease.

:class:`Orchestrator` is the facade: starting, reading, waiting for and signalling
executions. Its worker loop is ``_worker``, each execution's driver ``_driver``, its
batched writes and events ``_writer``, and the statements per database ``recorders``.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Mapping
from typing import Any

from hybridmesh.core.clock import SYSTEM_CLOCK, Clock
from hybridmesh.core.errors import ConfigurationError, Problem, ValidationError
from hybridmesh.core.ids import new_id, uuid7
from hybridmesh.core.serialization import dumps, json_problems
from hybridmesh.events import CloudEvent, EventBus
from hybridmesh.observability import MeshMetrics, get_logger
from hybridmesh.observability.tracing import (
    inject_child_headers,
    inject_headers,
    start_call_span,
    tracing_records,
)
from hybridmesh.orchestration._driver import DriverContext, Live
from hybridmesh.orchestration._machine import ExecutionState, Machine, Record, Status
from hybridmesh.orchestration._records import Execution, HistoryEvent
from hybridmesh.orchestration._worker import Worker, WorkerSettings
from hybridmesh.orchestration._writer import Writer, wall_clock
from hybridmesh.orchestration.admin import (
    list_executions,
    load_execution,
    load_history,
    retry_compensations,
    send_signal,
)
from hybridmesh.orchestration.catalog import DefinitionCatalog
from hybridmesh.orchestration.plan import Kind, Plan
from hybridmesh.orchestration.recorders import Change, Start, history_rows, recorder_for
from hybridmesh.orchestration.steps import StepRunner
from hybridmesh.review import ReviewQueue
from hybridmesh.store import Store

log = get_logger("hybridmesh.orchestration")

#: The bus group that receives saga.step.completed / saga.step.failed.
STEP_EVENTS_GROUP = "hybridmesh-orchestrator"


class Orchestrator:
    """Runs sagas and workflows durably, on the store, across any number of workers.

    ``client`` makes the steps' calls (see :class:`~hybridmesh.orchestration.steps.StepRunner`
    for the rules per architecture); ``functions`` and ``batch`` serve serverless steps and
    legacy batch operations; ``bus`` receives the engine's events (through the outbox) and
    delivers ``saga.step.completed``/``saga.step.failed``; ``review`` takes compensations
    that keep failing, and executions whose stored definition version cannot run.
    ``metrics`` (default: the client's) counts executions as they end
    (``hybridmesh_executions_ended_total``, for the workflow completion SLO).

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
        metrics: MeshMetrics | None = None,
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
        self._now = wall_clock(clock)
        log_recorder = bus.log_recorder(store) if bus is not None else None
        self.recorder = recorder_for(store, log_recorder)
        self._writer = Writer(store, self.recorder, bus, clock)
        context = DriverContext(
            runner=runner,
            clock=clock,
            worker_id=self.worker_id,
            lease_seconds=lease_seconds,
            recorder=self.recorder,
            writer=self._writer,
            review=review,
            now=self._now,
            # Ended executions are counted where the client counts its calls.
            metrics=metrics or (runner.client.metrics if runner.client else MeshMetrics.default()),
        )
        self._worker = Worker(
            context, catalog, WorkerSettings(lease_seconds, poll_interval, max_executions)
        )

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
        """Record a new execution of the newest version of the definition that is not
        retired (or ``version``) and return its id. Starting again with the same
        ``execution_id`` returns that id and starts nothing (a retried request starts one
        execution). Raises :class:`~hybridmesh.core.errors.ValidationError` for an input
        JSON cannot carry as it is (an infinity, a whole number beyond 64 bits), and what
        :meth:`DefinitionCatalog.to_start` raises: a retired version, or a stored one that
        cannot run, starts nothing."""
        data = dict(input or {})
        unfit = json_problems(data, "input")
        if unfit:
            raise ValidationError([Problem(what, field=where) for where, what in unfit])
        plan = await self.catalog.to_start(Kind(kind), name, version)
        execution_id = execution_id or uuid7()
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
        local = self._worker.running
        records = [Record("execution.started", data={"version": plan.version, "input": data})]
        # A worker in this process starts the first steps in the same write.
        first_calls = machine.advance(now) if local else []
        records += machine.take_history()
        start = Start(
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
        )
        change = Change(start, history_rows(execution_id, 0, records, now))
        event = self._writer.event(plan, execution_id, trace, "started", {"input": data})
        if event is not None:
            event.attach(change)
        if await self._writer.submit(change) is None:
            return execution_id  # already started: the same request came again
        if event is not None:
            self._writer.published(event)
        log.info("started %s %s v%d as %s", plan.kind.value, plan.name, plan.version, execution_id)
        if local:
            live = Live(execution_id, plan, data, machine, trace, seq=len(records), created=now)
            live.first_calls = first_calls
            self._worker.spawn(live)
        else:
            self._worker.poke()
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
        return await list_executions(
            self.store,
            status=None if status is None else str(status),
            kind=None if kind is None else str(kind),
            name=name,
            limit=limit,
        )

    async def history(self, execution_id: str) -> list[HistoryEvent]:
        """The execution's history, oldest first; ``NotFoundError`` when there is none."""
        return await load_history(self.store, execution_id)

    async def wait(
        self,
        execution_id: str,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> Execution:
        """Wait until the execution ends and return it; ``TimeoutError`` after ``timeout``
        seconds (real time). Works for executions driven by any worker."""
        try:
            async with asyncio.timeout(timeout):
                return await self._wait(execution_id)
        except TimeoutError:
            raise TimeoutError(
                f"execution {execution_id} did not end within {timeout:g}s"
            ) from None

    async def _wait(self, execution_id: str) -> Execution:
        while True:
            future = self._worker.ending(execution_id)
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
        self._worker.notify(execution_id)
        self._worker.poke()
        return execution

    async def _signal(self, execution_id: str, kind: str, step_id: str | None, data: Any) -> None:
        await send_signal(self.store, execution_id, kind, step_id, data, now=self._now())
        self._worker.notify(execution_id, step_id)
        self._worker.poke()

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
        self._worker.start()
        if self.bus is not None and STEP_EVENTS_GROUP not in self.bus.subscriptions:
            self.bus.subscribe("saga.step.*", self.on_step_event, group=STEP_EVENTS_GROUP)

    async def stop(self, grace: float = 30.0) -> None:
        """Stop the worker: claim nothing more, let running steps finish (up to ``grace``
        seconds), save them, and release every execution so another worker goes on.
        Executions still running after ``grace`` are released as they are: their
        interrupted step runs again elsewhere, with the same idempotency key."""
        await self._worker.stop(grace)

    async def __aenter__(self) -> Orchestrator:
        await self.start_worker()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def driving(self) -> int:
        """How many executions this worker drives right now."""
        return self._worker.driving


__all__ = [
    "STEP_EVENTS_GROUP",
    "Orchestrator",
    "load_execution",
    "retry_compensations",
    "send_signal",
]
