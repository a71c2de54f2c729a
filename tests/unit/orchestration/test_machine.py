"""The execution state machine: ordering, retries, joins, error modes, compensation."""

from __future__ import annotations

from hybridmesh.core.serialization import loads
from hybridmesh.orchestration._machine import (
    CompStatus,
    ExecutionState,
    Failure,
    Machine,
    Status,
    StepCall,
    StepState,
    StepStatus,
)
from hybridmesh.orchestration.plan import (
    Completion,
    ErrorHandling,
    Kind,
    Operation,
    Plan,
    PlanStep,
    RetrySpec,
)

UNDO = Operation(endpoint="/undo")


def step(step_id: str, *deps: str, **options: object) -> PlanStep:
    return PlanStep(
        step_id=step_id,
        name=step_id,
        service="svc",
        architecture="microservice",
        operation=Operation(endpoint=f"/{step_id}"),
        dependencies=deps,
        **options,  # type: ignore[arg-type]
    )


def plan(*steps: PlanStep, handling: ErrorHandling, timeout_ms: int | None = None) -> Plan:
    kind = Kind.SAGA if handling is ErrorHandling.COMPENSATION else Kind.WORKFLOW
    return Plan(kind, "p", 1, steps, handling, timeout_ms=timeout_ms)


def machine(p: Plan, now: float = 0.0) -> Machine:
    return Machine(p, Status.RUNNING, ExecutionState.new(p, {"x": 1}, now))


def saga(*steps: PlanStep) -> Plan:
    chained = []
    previous: tuple[str, ...] = ()
    for s in steps:
        chained.append(
            PlanStep(**{**{f: getattr(s, f) for f in s.__slots__}, "dependencies": previous})
        )
        previous = (s.step_id,)
    return plan(*chained, handling=ErrorHandling.COMPENSATION)


def ids(calls: list[StepCall]) -> list[str]:
    return [("undo " if c.compensation else "") + c.step_id for c in calls]


def types(m: Machine) -> list[str]:
    return [r.type + (f" {r.step_id}" if r.step_id else "") for r in m.take_history()]


def test_saga_runs_its_steps_in_order_and_completes() -> None:
    m = machine(saga(step("a"), step("b"), step("c")))
    for expected in ("a", "b", "c"):
        calls = m.advance(0)
        assert ids(calls) == [expected]
        m.succeeded(calls[0], {"id": expected}, 0)
    assert m.advance(0) == []
    assert m.status is Status.COMPLETED
    assert m.state.context["b"] == {"id": "b"}
    assert types(m)[-1] == "execution.completed"


def test_failed_step_compensates_completed_steps_in_reverse_order() -> None:
    m = machine(saga(step("a", compensation=UNDO), step("b"), step("c", compensation=UNDO)))
    m.succeeded(m.advance(0)[0], None, 0)
    m.succeeded(m.advance(0)[0], None, 0)
    c = m.advance(0)[0]
    m.failed(c, Failure("boom", retryable=False, ambiguous=False), 0)
    assert m.advance(0) == [StepCall("a", 1, compensation=True)]  # b has no compensation
    assert m.status is Status.COMPENSATING
    m.succeeded(StepCall("a", 1, compensation=True), None, 0)
    assert m.advance(0) == []
    assert m.status is Status.COMPENSATED
    assert m.state.failure == "step c failed: boom"


def test_a_step_that_may_have_acted_is_compensated_too() -> None:
    m = machine(saga(step("a", compensation=UNDO), step("b", compensation=UNDO)))
    m.succeeded(m.advance(0)[0], None, 0)
    m.failed(m.advance(0)[0], Failure("timeout", retryable=False, ambiguous=True), 0)
    assert ids(m.advance(0)) == ["undo b"]
    m.succeeded(StepCall("b", 1, compensation=True), None, 0)
    assert ids(m.advance(0)) == ["undo a"]


def test_retry_waits_for_its_backoff_then_runs_the_next_attempt() -> None:
    retry = RetrySpec(max_attempts=3, backoff_ms=1000, multiplier=2.0)
    m = machine(saga(step("a", retry=retry)))
    m.failed(m.advance(0)[0], Failure("503"), 0)
    assert m.state.steps["a"].status is StepStatus.RETRYING
    assert m.wake_at() == 1.0
    assert m.advance(0.5) == []
    assert m.advance(1.0) == [StepCall("a", 2)]
    m.failed(StepCall("a", 2), Failure("503"), 1.0)
    assert m.wake_at() == 3.0  # doubled
    m.advance(3.0)
    m.failed(StepCall("a", 3), Failure("503"), 3.0)
    m.advance(3.0)
    assert m.status is Status.COMPENSATED  # nothing to undo
    assert "timer.fired a" in types(m)


def test_a_non_retryable_failure_skips_the_remaining_attempts() -> None:
    m = machine(saga(step("a", retry=RetrySpec(max_attempts=5))))
    m.failed(m.advance(0)[0], Failure("400", retryable=False, ambiguous=False), 0)
    assert m.state.steps["a"].status is StepStatus.FAILED
    assert m.state.steps["a"].attempt == 1


def test_total_timeout_bounds_all_attempts_together() -> None:
    retry = RetrySpec(max_attempts=10, backoff_ms=1000, multiplier=1.0)
    m = machine(saga(step("a", retry=retry, total_timeout_ms=2500)))
    m.failed(m.advance(0)[0], Failure("x"), 0.1)  # retry at 1.1
    m.failed(m.advance(1.1)[0], Failure("x"), 1.2)  # retry at 2.2
    m.failed(m.advance(2.2)[0], Failure("x"), 2.3)  # 3.3 is past 2.5: give up
    assert m.state.steps["a"].status is StepStatus.FAILED
    assert m.state.steps["a"].attempt == 3


def test_independent_ready_steps_start_together() -> None:
    m = machine(plan(step("a"), step("b", "a"), step("c", "a"), handling=ErrorHandling.FAIL_FAST))
    m.succeeded(m.advance(0)[0], None, 0)
    assert ids(m.advance(0)) == ["b", "c"]


def test_join_waits_for_every_dependency_even_when_an_optional_one_failed() -> None:
    m = machine(
        plan(
            step("a"),
            step("slow", "a"),
            step("opt", "a", optional=True),
            step("join", "slow", "opt"),
            handling=ErrorHandling.FAIL_FAST,
        )
    )
    m.succeeded(m.advance(0)[0], None, 0)
    slow, opt = m.advance(0)
    m.failed(opt, Failure("nope", retryable=False), 0)
    assert m.advance(0) == []  # slow still runs: the join waits
    m.succeeded(slow, None, 0)
    assert ids(m.advance(0)) == ["join"]
    m.succeeded(StepCall("join", 1), None, 0)
    m.advance(0)
    assert m.status is Status.COMPLETED  # an optional failure does not fail the workflow


def test_continue_on_error_skips_dependents_and_runs_the_rest() -> None:
    m = machine(
        plan(
            step("a"),
            step("b", "a"),
            step("c"),
            step("d", "c"),
            handling=ErrorHandling.CONTINUE_ON_ERROR,
        )
    )
    a, c = m.advance(0)
    m.failed(a, Failure("down", retryable=False), 0)
    m.succeeded(c, None, 0)
    assert ids(m.advance(0)) == ["d"]
    assert m.state.steps["b"].status is StepStatus.SKIPPED
    m.succeeded(StepCall("d", 1), None, 0)
    m.advance(0)
    assert m.status is Status.FAILED


def test_fail_fast_starts_nothing_new_and_fails_when_running_steps_end() -> None:
    m = machine(plan(step("a"), step("b"), step("c", "b"), handling=ErrorHandling.FAIL_FAST))
    a, b = m.advance(0)
    m.failed(a, Failure("down", retryable=False), 0)
    assert m.advance(0) == []
    assert m.status is Status.RUNNING
    m.succeeded(b, None, 0)
    assert m.advance(0) == []
    assert m.status is Status.FAILED
    assert m.state.steps["c"].status is StepStatus.PENDING


def test_execution_timeout_abandons_running_steps_and_compensates() -> None:
    p = plan(
        step("a", compensation=UNDO),
        step("b", "a", compensation=UNDO),
        handling=ErrorHandling.COMPENSATION,
        timeout_ms=10_000,
    )
    m = machine(p)
    m.succeeded(m.advance(0)[0], None, 1)
    b = m.advance(1)[0]
    assert m.wake_at() == 10.0
    assert ids(m.advance(10.0)) == ["undo b"]  # b was in flight: it may have acted
    assert not m.in_flight(b)
    assert m.state.failure == "execution timed out after 10000 ms"


def test_event_completion_waits_for_its_event() -> None:
    p = saga(step("a", completion=Completion.EVENT, completion_timeout_ms=5000))
    m = machine(p)
    call = m.advance(0)[0]
    m.accepted(call, {"accepted": True}, 0)
    assert m.state.steps["a"].status is StepStatus.WAITING
    assert m.wake_at() == 5.0
    assert m.signal("a", True, {"tracking": "T1"}, 1)
    assert not m.signal("a", True, {"tracking": "T1"}, 1)  # a repeated event changes nothing
    m.advance(1)
    assert m.status is Status.COMPLETED
    assert m.state.steps["a"].result == {"tracking": "T1"}


def test_event_completion_times_out() -> None:
    m = machine(saga(step("a", completion=Completion.EVENT, completion_timeout_ms=5000)))
    m.accepted(m.advance(0)[0], None, 0)
    m.advance(5.0)
    assert m.state.steps["a"].error == "no completion event within 5000 ms"
    assert m.status is Status.COMPENSATED


def test_cancel_compensates_a_saga_and_ends_cancelled() -> None:
    m = machine(saga(step("a", compensation=UNDO), step("b")))
    m.succeeded(m.advance(0)[0], None, 0)
    m.advance(0)
    assert m.cancel("customer asked", 0)
    assert ids(m.advance(0)) == ["undo a"]
    m.succeeded(StepCall("a", 1, compensation=True), None, 0)
    m.advance(0)
    assert m.status is Status.CANCELLED


def test_failing_compensation_ends_compensation_failed_after_the_others_ran() -> None:
    retry = RetrySpec(max_attempts=1, backoff_ms=10)
    m = machine(
        saga(
            step("a", compensation=UNDO, retry=retry),
            step("b", compensation=UNDO, retry=retry),
            step("c", retry=retry),
        )
    )
    m.succeeded(m.advance(0)[0], None, 0)
    m.succeeded(m.advance(0)[0], None, 0)
    m.failed(m.advance(0)[0], Failure("no", retryable=False, ambiguous=False), 0)
    now = 0.0
    for _ in range(3):  # compensations get at least three attempts
        undo_b = m.advance(now)
        assert ids(undo_b) == ["undo b"]
        m.failed(undo_b[0], Failure("still down"), now)
        now += 1
    assert ids(m.advance(now)) == ["undo a"]
    m.succeeded(StepCall("a", 1, compensation=True), None, now)
    m.advance(now)
    assert m.status is Status.COMPENSATION_FAILED
    assert m.retry_compensations() == ["b"]
    assert ids(m.advance(now)) == ["undo b"]


def test_recover_runs_the_interrupted_attempt_again() -> None:
    m = machine(saga(step("a"), step("b")))
    m.succeeded(m.advance(0)[0], None, 0)
    m.advance(0)  # b attempt 1 is in flight when the worker dies
    restored = Machine(m.plan, m.status, ExecutionState.from_dict(loads(m.state.to_json())))
    assert restored.recover() == [StepCall("b", 1)]
    assert restored.advance(0) == []


def test_the_stored_state_reads_back_as_it_was_at_every_round() -> None:
    m = machine(saga(step("a", compensation=UNDO), step("b"), step("c")))
    seen = []
    for _ in range(2):
        m.succeeded(m.advance(0)[0], {"n": len(seen)}, 0)
        seen.append(loads(m.state.to_json()))
        assert ExecutionState.from_dict(seen[-1]) == m.state
    m.failed(m.advance(0)[0], Failure("boom", retryable=False, ambiguous=False), 0)
    m.advance(0)
    assert ExecutionState.from_dict(loads(m.state.to_json())) == m.state
    assert seen[0]["steps"]["a"]["status"] == "completed"
    assert seen[1]["steps"]["b"]["result"] == {"n": 1}


def test_a_state_stored_with_only_its_set_fields_reads_back() -> None:
    # States saved by earlier versions left out the fields at their defaults.
    stored = {"steps": {"a": {"status": "completed", "attempt": 1}, "b": {}}, "started": 1}
    state = ExecutionState.from_dict(stored)
    assert state.steps["a"] == StepState(status=StepStatus.COMPLETED, attempt=1)
    assert state.steps["b"] == StepState()
    assert state.deadline is None and not state.cancelled


def test_a_state_with_every_field_set_reads_back_whole() -> None:
    state = machine(saga(step("a", compensation=UNDO), step("b"))).state
    state.deadline, state.failure, state.started = 9.5, "boom", 2
    state.cancelled = state.timed_out = True
    state.steps["a"] = StepState(
        status=StepStatus.COMPLETED,
        attempt=2,
        order=0,
        first_started=1.5,
        retry_at=2.5,
        deadline=3.5,
        result={"id": 7},
        error="late",
        ambiguous=True,
        comp=CompStatus.FAILED,
        comp_attempt=3,
        comp_retry_at=4.5,
        comp_error="still down",
    )
    stored = loads(state.to_json())
    assert ExecutionState.from_dict(stored) == state


def test_a_step_that_runs_alone_waits_for_the_others_and_holds_back_the_rest() -> None:
    m = machine(
        plan(
            step("a"),
            step("b", "a"),
            step("solo", "a", alone=True),
            step("c", "a"),
            handling=ErrorHandling.FAIL_FAST,
        )
    )
    m.succeeded(m.advance(0)[0], None, 0)
    b, c = m.advance(0)
    assert ids([b, c]) == ["b", "c"]  # solo waits: other steps are under way
    m.succeeded(b, None, 0)
    assert m.advance(0) == []  # c still runs
    m.succeeded(c, None, 0)
    assert ids(m.advance(0)) == ["solo"]
    m.succeeded(StepCall("solo", 1), None, 0)
    m.advance(0)
    assert m.status is Status.COMPLETED


def test_nothing_starts_beside_a_step_that_runs_alone_not_even_during_its_retries() -> None:
    m = machine(
        plan(
            step("solo", alone=True, retry=RetrySpec(max_attempts=2, backoff_ms=1000)),
            step("b"),
            step("c"),
            handling=ErrorHandling.FAIL_FAST,
        )
    )
    assert ids(m.advance(0)) == ["solo"]
    m.failed(StepCall("solo", 1), Failure("busy"), 0)
    assert m.advance(0.5) == []  # solo waits for its retry: b and c wait for solo
    assert ids(m.advance(1.0)) == ["solo"]
    m.succeeded(StepCall("solo", 2), None, 1.0)
    assert ids(m.advance(1.0)) == ["b", "c"]
