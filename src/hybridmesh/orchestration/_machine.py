"""The execution state machine: which calls to make next, and what each outcome changes.

Pure: no I/O and no clock of its own (``now``, epoch seconds, is passed in). The engine
persists the state and the history records the machine produces, and makes the calls it
asks for. Sagas and workflows are the same machine: a saga is a plan whose steps form a
chain and whose error handling is compensation.

Forward, a step starts when every dependency has ended and none of them blocks it (a
non-optional failure or a skip blocks; an optional failure does not). A failed attempt is
retried after the policy's backoff while attempts and the step's total time allow and the
failure is retryable. A final failure of a non-optional step is the execution's failure:

- fail-fast: nothing new starts; when the running steps end, the execution fails;
- continue-on-error: the steps that depend on it are skipped, the others go on; the
  execution fails at the end;
- compensation: nothing new starts; when the running steps end, every step that completed,
  or failed after an attempt that may have had effects (no definite 4xx answer), is
  compensated, one at a time, in reverse order of starting.

A step that runs ``alone`` (a workflow step's ``parallel: false``) starts only when no other
step of the execution is under way (running, retrying or waiting for its event), and no
other step starts until it ended.

A compensation that fails after its retries ends the execution ``compensation_failed``, after
the remaining compensations ran; it is never reported as compensated.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hybridmesh.orchestration._state import (
    ACTIVE,
    ENDED,
    CompStatus,
    ExecutionState,
    Status,
    StepState,
    StepStatus,
)
from hybridmesh.orchestration.plan import Completion, ErrorHandling, Plan, PlanStep

#: Compensations get at least this many attempts, whatever the step's own policy says.
MIN_COMPENSATION_ATTEMPTS = 3

_PENDING = StepStatus.PENDING
_RETRYING = StepStatus.RETRYING
_WAITING = StepStatus.WAITING
_COMP_RETRYING = CompStatus.RETRYING


@dataclass(frozen=True, slots=True)
class StepCall:
    """A call the engine must make: attempt ``attempt`` of a step, or of its compensation."""

    step_id: str
    attempt: int
    compensation: bool = False


@dataclass(slots=True)  # not frozen: several are made per step, and frozen fields cost more
class Record:
    """One history record, before the engine numbers and stores it."""

    type: str
    step_id: str | None = None
    attempt: int | None = None
    data: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Failure:
    """Why an attempt failed. ``ambiguous``: the target may have acted on it anyway."""

    message: str
    retryable: bool = True
    ambiguous: bool = True


AttemptsOf = Callable[[PlanStep], int]


def _attempts(step: PlanStep) -> int:
    return step.retry.max_attempts


class Machine:
    """Advances one execution. Construct it from the stored status and state; call
    :meth:`advance` for the calls to make, report their outcomes, and collect the history
    with :meth:`take_history` after each round."""

    def __init__(
        self,
        plan: Plan,
        status: Status,
        state: ExecutionState,
        *,
        attempts_of: AttemptsOf = _attempts,
    ) -> None:
        self.plan = plan
        self.status = status
        self.state = state
        self._attempts_of = attempts_of
        self._history: list[Record] = []
        self._steps = {step.step_id: step for step in plan.steps}
        self._dependents: dict[str, list[str]] = {step.step_id: [] for step in plan.steps}
        for step in plan.steps:
            for dependency in step.dependencies:
                self._dependents[dependency].append(step.step_id)
        self._by_event = any(step.completion is Completion.EVENT for step in plan.steps)
        self._alone = any(step.alone for step in plan.steps)

    # -- reading ---------------------------------------------------------------------------

    def take_history(self) -> list[Record]:
        records, self._history = self._history, []
        return records

    def step(self, step_id: str) -> PlanStep:
        """The plan's step ``step_id`` (by key: ``Plan.step`` searches)."""
        return self._steps[step_id]

    def awaits_event(self) -> bool:
        """Whether a step waits for its completion event."""
        return self._by_event and any(
            s.status is StepStatus.WAITING for s in self.state.steps.values()
        )

    def step_state(self, step_id: str) -> StepState:
        return self.state.steps[step_id]

    def in_flight(self, call: StepCall) -> bool:
        """Whether ``call`` is still the attempt the machine waits for (a timeout or a
        cancel may have abandoned it)."""
        s = self.state.steps[call.step_id]
        if call.compensation:
            return s.comp is CompStatus.RUNNING and s.comp_attempt == call.attempt
        return s.status is StepStatus.RUNNING and s.attempt == call.attempt

    def wake_at(self) -> float | None:
        """The earliest time something is due (a retry, a deadline); None when nothing is
        timed (the execution ended, or it waits for completion events without deadline)."""
        if self.status.terminal:
            return None
        state = self.state
        due: float | None = None
        if self.status is Status.RUNNING and state.deadline is not None and not state.timed_out:
            due = state.deadline
        for s in state.steps.values():
            # Most steps are timed by nothing: one test each for them.
            status = s.status
            if status is _RETRYING or status is _WAITING:
                at = s.retry_at if status is _RETRYING else s.deadline
                if at is not None and (due is None or at < due):
                    due = at
            if s.comp is _COMP_RETRYING:
                at = s.comp_retry_at
                if at is not None and (due is None or at < due):
                    due = at
        return due

    # -- moving on -------------------------------------------------------------------------

    def recover(self) -> list[StepCall]:
        """The attempts that were in flight when the execution's last worker stopped (it
        was killed, or its lease expired): they run again, as the same attempt, with the
        same idempotency key."""
        calls: list[StepCall] = []
        for step_id, s in self.state.steps.items():
            if s.status is StepStatus.RUNNING:
                calls.append(StepCall(step_id, s.attempt))
                self._history.append(Record("step.recovered", step_id, s.attempt))
            if s.comp is CompStatus.RUNNING:
                calls.append(StepCall(step_id, s.comp_attempt, compensation=True))
                self._history.append(Record("compensation.recovered", step_id, s.comp_attempt))
        return calls

    def advance(self, now: float) -> list[StepCall]:
        """Fire what is due, start what is ready; returns the calls to make now."""
        if self.status is Status.RUNNING:
            calls = self._forward(now)
            if calls or not self._compensating():
                return calls
        if self._compensating():
            return self._backward(now)
        return []

    def _forward(self, now: float) -> list[StepCall]:
        state = self.state
        if state.deadline is not None and now >= state.deadline and not state.timed_out:
            limit = self.plan.timeout_ms
            state.timed_out = True
            self._fail_forward(f"execution timed out after {limit} ms")
            self._abandon_active(f"execution timed out after {limit} ms", now)
        calls: list[StepCall] = []
        steps = state.steps
        pending: list[PlanStep] = []  # in the plan's order; no step becomes pending again
        for step in self.plan.steps:
            s = steps[step.step_id]
            status = s.status
            if status is _PENDING:
                pending.append(step)
            elif status is _WAITING and s.deadline is not None and now >= s.deadline:
                waited = step.completion_timeout_ms
                self._final_failure(step, s, f"no completion event within {waited} ms", now)
            elif status is _RETRYING and s.retry_at is not None and now >= s.retry_at:
                if self._halted():
                    self._final_failure(step, s, s.error or "abandoned", now, note="abandoned")
                else:
                    self._history.append(Record("timer.fired", step.step_id, s.attempt + 1))
                    calls.append(self._start(step, s, now))
        changed = bool(pending)
        while changed:  # a skip can unblock (skip) further steps in the same round
            changed = False
            for step in pending:
                s = steps[step.step_id]
                if s.status is not _PENDING:
                    continue
                blocked = self._blockers(step)
                if blocked is None:
                    continue
                if blocked:
                    s.status = StepStatus.SKIPPED
                    self._history.append(
                        Record("step.skipped", step.step_id, data={"blocked_by": blocked})
                    )
                    changed = True
                elif not self._halted() and (not self._alone or self._may_start(step, calls)):
                    calls.append(self._start(step, s, now))
        if calls:
            return calls
        unended = False
        for s in steps.values():
            if s.status in ACTIVE:
                return []
            if s.status not in ENDED:
                unended = True
        if state.failure is None and unended:
            return []  # cannot happen for a valid (acyclic) plan; wait rather than guess
        self._end_forward()
        return []

    def _may_start(self, step: PlanStep, calls: list[StepCall]) -> bool:
        """Whether ``step`` may start beside what is under way and what starts this round:
        a step that runs alone starts beside nothing, and nothing starts beside it."""
        active = [step_id for step_id, s in self.state.steps.items() if s.status in ACTIVE]
        if step.alone:
            return not active and not calls
        under_way = [*active, *(call.step_id for call in calls)]
        return not any(self._steps[step_id].alone for step_id in under_way)

    def _blockers(self, step: PlanStep) -> list[str] | None:
        """None while a dependency of ``step`` has not ended; then the dependencies that
        block it (skipped, or failed without being optional)."""
        steps = self.state.steps
        blocked: list[str] = []
        for d_id in step.dependencies:
            status = steps[d_id].status
            if status not in ENDED:
                return None
            if status is StepStatus.SKIPPED or (
                status is StepStatus.FAILED and not self._steps[d_id].optional
            ):
                blocked.append(d_id)
        return blocked

    def _end_forward(self) -> None:
        state = self.state
        if state.failure is None:
            self._finish(Status.COMPLETED)
            return
        if self.plan.error_handling is ErrorHandling.COMPENSATION:
            todo = [
                (s.order or 0, step_id)
                for step_id, s in state.steps.items()
                if self._steps[step_id].compensation is not None
                and (
                    s.status is StepStatus.COMPLETED
                    or (s.status is StepStatus.FAILED and s.ambiguous)
                )
            ]
            for _, step_id in todo:
                state.steps[step_id].comp = CompStatus.PENDING
            self.status = Status.COMPENSATING
            self._history.append(
                Record(
                    "execution.compensating",
                    data={
                        "reason": state.failure,
                        "steps": [step_id for _, step_id in sorted(todo, reverse=True)],
                    },
                )
            )
            return
        self._finish(Status.CANCELLED if state.cancelled else Status.FAILED)

    def _backward(self, now: float) -> list[StepCall]:
        order = sorted(self.state.steps.items(), key=lambda item: item[1].order or 0, reverse=True)
        for step_id, s in order:
            if s.comp is CompStatus.RUNNING:
                return []
            if s.comp is CompStatus.RETRYING:
                if s.comp_retry_at is not None and now < s.comp_retry_at:
                    return []
                self._history.append(Record("timer.fired", step_id, s.comp_attempt + 1))
                return [self._start_compensation(step_id, s)]
            if s.comp is CompStatus.PENDING:
                return [self._start_compensation(step_id, s)]
        failed = [step_id for step_id, s in order if s.comp is CompStatus.FAILED]
        if failed:
            self._finish(Status.COMPENSATION_FAILED, {"steps": failed})
        else:
            self._finish(Status.CANCELLED if self.state.cancelled else Status.COMPENSATED)
        return []

    # -- outcomes --------------------------------------------------------------------------

    def succeeded(self, call: StepCall, result: Any, now: float) -> None:
        """The call answered: the step (or its compensation) is done."""
        if not self.in_flight(call):
            return
        s = self.state.steps[call.step_id]
        if call.compensation:
            s.comp = CompStatus.COMPENSATED
            s.comp_error = None
            self._history.append(Record("step.compensated", call.step_id, call.attempt))
            return
        self._complete(call.step_id, s, result, call.attempt)

    def accepted(self, call: StepCall, result: Any, now: float) -> None:
        """An event-completion step's call was accepted: wait for its completion event."""
        if not self.in_flight(call):
            return
        step = self._steps[call.step_id]
        s = self.state.steps[call.step_id]
        s.status = StepStatus.WAITING
        s.ambiguous = True
        timeout = step.completion_timeout_ms
        s.deadline = now + timeout / 1000 if timeout else None
        self._history.append(
            Record("step.waiting", call.step_id, call.attempt, {"accepted": result})
        )

    def failed(self, call: StepCall, failure: Failure, now: float) -> None:
        """The attempt failed: retry after the backoff, or give the step up."""
        if not self.in_flight(call):
            return
        step = self._steps[call.step_id]
        s = self.state.steps[call.step_id]
        if call.compensation:
            attempts = max(MIN_COMPENSATION_ATTEMPTS, step.retry.max_attempts)
            s.comp_error = failure.message
            if failure.retryable and s.comp_attempt < attempts:
                delay = step.retry.delay_ms(s.comp_attempt)
                s.comp = CompStatus.RETRYING
                s.comp_retry_at = now + delay / 1000
                self._history.append(
                    Record(
                        "compensation.retried",
                        call.step_id,
                        call.attempt,
                        {"error": failure.message, "delay_ms": delay},
                    )
                )
            else:
                s.comp = CompStatus.FAILED
                self._history.append(
                    Record(
                        "step.compensation_failed",
                        call.step_id,
                        call.attempt,
                        {"error": failure.message},
                    )
                )
            return
        s.ambiguous = s.ambiguous or failure.ambiguous
        s.error = failure.message
        delay = step.retry.delay_ms(s.attempt)
        retry_at = now + delay / 1000
        within_total = (
            step.total_timeout_ms is None
            or s.first_started is None
            or retry_at < s.first_started + step.total_timeout_ms / 1000
        )
        if (
            failure.retryable
            and s.attempt < self._attempts_of(step)
            and within_total
            and not self._halted()
        ):
            s.status = StepStatus.RETRYING
            s.retry_at = retry_at
            self._history.append(
                Record(
                    "step.retried",
                    call.step_id,
                    call.attempt,
                    {"error": failure.message, "delay_ms": delay},
                )
            )
            return
        note = None if within_total else f"all attempts exceeded {step.total_timeout_ms} ms"
        self._final_failure(step, s, failure.message, now, note=note)

    def signal(self, step_id: str, ok: bool, data: Any, now: float) -> bool:
        """A completion event for ``step_id`` (saga.step.completed or .failed). Returns
        whether it changed anything (a late or repeated event does not)."""
        s = self.state.steps.get(step_id)
        if s is None or self.status is not Status.RUNNING:
            return False
        if s.status not in (StepStatus.WAITING, StepStatus.RUNNING):
            return False
        step = self._steps[step_id]
        if step.completion is not Completion.EVENT:
            return False
        if ok:
            self._complete(step_id, s, data, s.attempt)
        else:
            s.ambiguous = True
            self._final_failure(step, s, str(data or "the step reported failure"), now)
        return True

    def cancel(self, reason: str, now: float) -> bool:
        """Stop the execution: nothing new starts, and with compensation the completed
        steps are undone. Returns False when it already ended or is compensating."""
        if self.status is not Status.RUNNING:
            return False
        self.state.cancelled = True
        self._history.append(Record("execution.cancel_requested", data={"reason": reason}))
        self._fail_forward(f"cancelled: {reason}")
        self._abandon_active(f"cancelled: {reason}", now)
        return True

    def retry_compensations(self) -> list[str]:
        """Reopen the compensations that failed (after a person fixed the cause); returns
        their steps. The execution is compensating again."""
        reopened = [
            step_id for step_id, s in self.state.steps.items() if s.comp is CompStatus.FAILED
        ]
        for step_id in reopened:
            s = self.state.steps[step_id]
            s.comp = CompStatus.PENDING
            s.comp_attempt = 0
            s.comp_retry_at = None
        if reopened:
            self.status = Status.COMPENSATING
            self._history.append(Record("compensation.reopened", data={"steps": reopened}))
        return reopened

    # -- helpers ---------------------------------------------------------------------------

    def _compensating(self) -> bool:
        return self.status is Status.COMPENSATING

    def _halted(self) -> bool:
        state = self.state
        return state.failure is not None and (
            self.plan.error_handling is not ErrorHandling.CONTINUE_ON_ERROR
            or state.cancelled
            or state.timed_out
        )

    def _start(self, step: PlanStep, s: StepState, now: float) -> StepCall:
        if s.order is None:
            self.state.started += 1
            s.order = self.state.started
            s.first_started = now
        s.status = StepStatus.RUNNING
        s.attempt += 1
        s.retry_at = None
        self._history.append(Record("step.started", step.step_id, s.attempt))
        return StepCall(step.step_id, s.attempt)

    def _start_compensation(self, step_id: str, s: StepState) -> StepCall:
        s.comp = CompStatus.RUNNING
        s.comp_attempt += 1
        s.comp_retry_at = None
        self._history.append(Record("compensation.started", step_id, s.comp_attempt))
        return StepCall(step_id, s.comp_attempt, compensation=True)

    def _complete(self, step_id: str, s: StepState, result: Any, attempt: int) -> None:
        s.status = StepStatus.COMPLETED
        s.result = result
        s.error = None
        s.deadline = None
        context = self.state.context
        context[step_id] = result
        if isinstance(result, dict):
            updates = result.get("context_updates", result.get("contextUpdates"))
            if isinstance(updates, dict):
                context.update(updates)
        self._history.append(Record("step.completed", step_id, attempt, {"result": result}))

    def _final_failure(
        self, step: PlanStep, s: StepState, message: str, now: float, *, note: str | None = None
    ) -> None:
        s.status = StepStatus.FAILED
        s.error = message
        s.retry_at = None
        s.deadline = None
        data: dict[str, Any] = {"error": message, "optional": step.optional}
        if note:
            data["note"] = note
        self._history.append(Record("step.failed", step.step_id, s.attempt, data))
        if not step.optional:
            self._fail_forward(f"step {step.step_id} failed: {message}")

    def _fail_forward(self, reason: str) -> None:
        if self.state.failure is None:
            self.state.failure = reason

    def _abandon_active(self, reason: str, now: float) -> None:
        for step_id, s in self.state.steps.items():
            if s.status.active:
                if s.status is not StepStatus.RETRYING:
                    s.ambiguous = True
                self._final_failure(self._steps[step_id], s, reason, now, note="abandoned")

    def _finish(self, status: Status, data: dict[str, Any] | None = None) -> None:
        self.status = status
        payload = dict(data or {})
        if self.state.failure is not None:
            payload["reason"] = self.state.failure
        self._history.append(Record(f"execution.{status.value}", data=payload or None))


__all__ = [
    "MIN_COMPENSATION_ATTEMPTS",
    "CompStatus",
    "ExecutionState",
    "Failure",
    "Machine",
    "Record",
    "Status",
    "StepCall",
    "StepState",
    "StepStatus",
]
