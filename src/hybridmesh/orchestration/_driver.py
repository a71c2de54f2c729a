"""How a worker drives one execution: make the calls its machine asks for, apply their
outcomes and the signals that arrive, and save each round (see ``engine``).

A :class:`Driver` sees the engine only through a :class:`DriverContext`: the step runner,
the clock, its worker's identity and lease, the recorder (for signals and reclaims) and
the writer (for saves and events)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Mapping
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

from hybridmesh.core.clock import Clock
from hybridmesh.core.serialization import loads
from hybridmesh.observability import MeshMetrics, get_logger
from hybridmesh.observability.tracing import start_call_span, tracing_records
from hybridmesh.orchestration._machine import Failure, Machine, Status, StepCall
from hybridmesh.orchestration._records import Execution, ended_execution
from hybridmesh.orchestration._writer import Writer
from hybridmesh.orchestration.plan import Completion, Kind, Plan
from hybridmesh.orchestration.recorders.base import (
    Change,
    ExecutionRecorder,
    Save,
    history_rows,
)
from hybridmesh.orchestration.steps import Attempt, StepRunner, classify
from hybridmesh.orchestration.templates import compiled
from hybridmesh.review import ReviewQueue
from hybridmesh.store import Statement

log = get_logger("hybridmesh.orchestration")

#: A backoff up to this long (seconds) is slept by the worker holding the execution; a
#: longer one releases it until it is due.
HOLD_SECONDS = 1.0

#: An attempt runs in the driver's task only if nothing falls due within its timeout and
#: this many seconds more.
INLINE_MARGIN = 1.0

_NO_SPAN = nullcontext()
_BY_EVENT = Completion.EVENT


class LeaseLost(Exception):
    """The execution's lease expired and another worker took it: stop touching it."""


@dataclass
class Live:
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
    consumed: list[str] = field(default_factory=list)  # signals applied, not yet saved
    ended: Execution | None = None  # saved as ended by this worker
    first_calls: list[StepCall] = field(default_factory=list)  # saved as started by start()
    #: The driver's task while it makes an attempt itself, the attempt, and whether a
    #: signal has interrupted it.
    inline: asyncio.Task[Any] | None = None
    inline_call: StepCall | None = None
    interrupted: bool = False
    tasks: dict[StepCall, asyncio.Task[None]] = field(default_factory=dict)
    #: Attempts that ended, as (call, ok, result or Failure); None: a signal came.
    outcomes: asyncio.Queue[tuple[StepCall, bool, Any] | None] = field(
        default_factory=asyncio.Queue
    )
    #: The status the store holds for it (what it was started or claimed with, then saved).
    stored: Status = field(init=False)

    def __post_init__(self) -> None:
        self.stored = self.machine.status


@dataclass(frozen=True, slots=True)
class DriverContext:
    """What a :class:`Driver` needs of its worker."""

    runner: StepRunner
    clock: Clock
    worker_id: str
    lease_seconds: float
    recorder: ExecutionRecorder
    writer: Writer
    review: ReviewQueue | None
    now: Callable[[], float]  # epoch seconds
    metrics: MeshMetrics


class Driver:
    """Drives executions for one worker (see :class:`DriverContext`); ``stopping`` says
    whether the worker is stopping (drivers then save and release at the next step)."""

    def __init__(self, context: DriverContext, stopping: Callable[[], bool]) -> None:
        self.context = context
        self._stopping = stopping

    async def drive(self, live: Live) -> None:
        """Drive ``live`` as far as it goes: until it ends, waits for a timer or an event
        (then it is released), the worker stops, or the lease is lost."""
        machine = live.machine
        calls: list[StepCall] = machine.recover() if live.recovered else live.first_calls
        try:
            while True:
                if live.signals:
                    await self._apply_signals(live)
                now = self.context.now()
                if self._stopping():
                    if live.tasks:
                        await self._collect(live, None)
                        continue
                    await self._save(live, release=True, wake=now)
                    return
                calls += machine.advance(now)
                if live.tasks:
                    for call, task in list(live.tasks.items()):
                        if not machine.in_flight(call):
                            task.cancel()  # abandoned: the execution timed out or was cancelled
                            del live.tasks[call]
                if machine.status.terminal:
                    for task in live.tasks.values():
                        task.cancel()
                    await self._save(live, release=True, wake=None)
                    self.context.metrics.observe_execution_ended(
                        live.plan.kind.value, live.plan.name, machine.status.value
                    )
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
                        ended_at=self.context.now(),
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
                if self._may_inline(live, calls, wake, now):
                    calls = await self._attempt_inline(live, calls[0])
                    continue
                for call in calls:
                    live.tasks[call] = asyncio.create_task(self._attempt(live, call))
                calls = []
                await self._collect(live, None if wake is None else max(0.0, wake - now))
        except LeaseLost:
            log.warning("execution %s: lease lost; another worker has it", live.id)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("execution %s: the worker failed; it is released", live.id)
        finally:
            for task in live.tasks.values():
                task.cancel()

    async def _collect(self, live: Live, within: float | None) -> None:
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
        self._record(live, first)

    def _record(self, live: Live, first: tuple[StepCall, bool, Any] | None = None) -> None:
        """Apply ``first`` and the outcomes queued behind it to the machine."""
        ended = [first]
        while not live.outcomes.empty():
            ended.append(live.outcomes.get_nowait())
        now = self.context.now()
        for item in ended:
            if item is None:
                continue  # a signal: the loop applies it
            call, ok, outcome = item
            live.tasks.pop(call, None)
            if not ok:
                live.machine.failed(call, outcome, now)
            elif call.compensation or live.machine.step(call.step_id).completion is not _BY_EVENT:
                live.machine.succeeded(call, outcome, now)
            else:
                live.machine.accepted(call, outcome, now)

    def _may_inline(
        self, live: Live, calls: list[StepCall], wake: float | None, now: float
    ) -> bool:
        """Whether the round's calls can run in the driver's own task: there is one, no
        other is running, no step waits for a completion event (whose signal could make
        other steps ready meanwhile), and nothing falls due before the attempt's own
        timeout would end it. A cancel, or a signal about its step, interrupts it."""
        if len(calls) != 1 or live.tasks:
            return False
        if live.machine.awaits_event():
            return False
        if wake is None:
            return True
        timeout = self.context.runner.timeout_ms(live.machine.step(calls[0].step_id))
        return wake - now > timeout / 1000 + INLINE_MARGIN

    async def _attempt_inline(self, live: Live, call: StepCall) -> list[StepCall]:
        """Make the round's one attempt in the driver's task. A signal interrupts it (the
        engine cancels this task, see :meth:`Worker.notify`): once the signals are applied,
        the attempt runs again, with the same key, if the machine still waits for it.
        Returns the calls to make next."""
        live.inline = asyncio.current_task()
        live.inline_call = call
        outcome = None
        try:
            outcome = await self._outcome(live, call)
        except asyncio.CancelledError:
            task = live.inline
            if not live.interrupted or (task is not None and task.uncancel() > 0):
                raise  # stopped from outside, not (only) by a signal
        finally:
            live.inline = None
            live.inline_call = None
            live.interrupted = False
        if live.signals:
            await self._apply_signals(live)
        self._record(live, outcome)
        return [call] if live.machine.in_flight(call) else []

    async def _attempt(self, live: Live, call: StepCall) -> None:
        """Make one attempt in a task of its own and queue its outcome for the driver."""
        live.outcomes.put_nowait(await self._outcome(live, call))

    async def _outcome(self, live: Live, call: StepCall) -> tuple[StepCall, bool, Any]:
        """Make one attempt: its call, whether it succeeded, and its result or Failure."""
        step = live.machine.step(call.step_id)
        operation = step.compensation if call.compensation else step.operation
        assert operation is not None
        what = "compensate" if call.compensation else "step"
        # Unrecorded, the step's span would only carry context: the client writes the
        # outbound traceparent from the execution's context directly.
        span = (
            start_call_span(
                f"{what} {step.step_id}",
                attributes={
                    "hybridmesh.execution_id": live.id,
                    "hybridmesh.step_id": step.step_id,
                    "hybridmesh.attempt": call.attempt,
                    "hybridmesh.compensation": call.compensation,
                },
            )
            if tracing_records()
            else _NO_SPAN
        )
        with span:
            try:
                payload = self._payload(live, call, operation.payload)
                attempt = Attempt(
                    live.id, step, operation, payload, call.compensation, call.attempt
                )
                # The client, the functions and the batch queue bound each attempt by the
                # step's timeout themselves.
                result = await self.context.runner.run(attempt)
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
                return call, False, failure
            return call, True, result

    def _payload(self, live: Live, call: StepCall, payload: Mapping[str, Any]) -> Any:
        """What the attempt sends. Templates are rendered. A workflow step without any
        gets the workflow context under its own payload, as the integration guide's engine
        passes the context to every step ("populated from context")."""
        renderer = compiled(payload)
        if renderer is not None:
            return renderer(self._scope(live))
        if live.plan.kind is Kind.WORKFLOW and not call.compensation:
            return {**live.machine.state.context, **payload}
        return payload

    def _scope(self, live: Live) -> Mapping[str, Any]:
        return _Scope(live)

    async def _sleep_until(self, live: Live, wake: float) -> None:
        delay = max(0.0, wake - self.context.now())
        if not delay or live.signals:
            return
        sleeping = asyncio.ensure_future(self.context.clock.sleep(delay))
        woken = asyncio.ensure_future(live.outcomes.get())  # nothing runs: only a signal comes
        try:
            await asyncio.wait([sleeping, woken], return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeping.cancel()
            woken.cancel()

    async def _apply_signals(self, live: Live) -> None:
        rows = await self.context.recorder.signals(live.id)
        now = self.context.now()
        machine = live.machine
        consumed: list[str] = []
        for row in rows:
            consumed.append(row["id"])
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

    async def _reclaim(self, live: Live) -> bool:
        """After releasing, signals had arrived: take the execution back if still free."""
        context = self.context
        until = context.now() + context.lease_seconds
        return await context.recorder.reclaim(live.id, context.worker_id, until)

    async def _save(self, live: Live, *, release: bool, wake: float | None) -> None:
        """Save the execution's state, its new history and what its ending publishes, in
        one transaction shared with other executions' saves (group commit); only while
        this worker holds the lease (else :class:`LeaseLost`)."""
        machine = live.machine
        records = machine.take_history()
        consumed = live.consumed
        if not records and not release and not consumed:
            return
        context = self.context
        now = context.now()
        status = machine.status
        held = not release and status is live.stored
        save = Save(
            live.id,
            None if held else status.value,
            machine.state.to_json(),
            machine.state.failure,
            live.seq + len(records),
            now,
            now if status.terminal else None,
            release,
            wake,
            context.worker_id,
        )
        change = Change(save, history_rows(live.id, live.seq, records, now) if records else [])
        if consumed:
            change.consumed = consumed
        ending = next((r for r in records if r.type in ENDINGS), None) if status.terminal else None
        event = None
        if ending is not None:
            outcome = ending.type.split(".", 1)[1]
            event = context.writer.event(
                live.plan, live.id, live.trace, outcome, dict(ending.data or {})
            )
            if event is not None:
                event.attach(change)
            if status is Status.COMPENSATION_FAILED:
                change.rows += self._review_item(live)
        signals = await context.writer.submit(change)
        if signals is None:
            raise LeaseLost(live.id)
        if event is not None:
            context.writer.published(event)
        live.seq += len(records)
        live.stored = status
        live.consumed = []
        live.signals = signals

    def _review_item(self, live: Live) -> list[Statement]:
        """The review item for compensations that keep failing, filed with the ending."""
        review = self.context.review
        if review is None:
            return []
        failed = {
            step_id: s.comp_error
            for step_id, s in live.machine.state.steps.items()
            if s.comp.value == "failed"
        }
        kind = live.plan.kind
        _, statements = review.filing(
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
        )
        return statements


class _Scope(Mapping[str, Any]):
    """What templates see; ``steps`` is only built when a template asks for it."""

    __slots__ = ("_live",)

    def __init__(self, live: Live) -> None:
        self._live = live

    def __getitem__(self, key: str) -> Any:
        live = self._live
        state = live.machine.state
        if key == "input":
            return live.input
        if key == "context":
            return state.context
        if key == "execution_id":
            return live.id
        if key == "steps":
            return {
                step_id: {"status": s.status.value, "result": s.result}
                for step_id, s in state.steps.items()
            }
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(("input", "context", "execution_id", "steps"))

    def __len__(self) -> int:
        return 4


#: The history records that end an execution: each publishes its event.
ENDINGS = frozenset(f"execution.{status.value}" for status in Status if status.terminal)

__all__ = ["ENDINGS", "HOLD_SECONDS", "Driver", "DriverContext", "LeaseLost", "Live"]
