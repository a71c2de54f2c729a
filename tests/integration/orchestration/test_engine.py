"""The engine end to end: real services on loopback, the store on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from typing import Any

from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from tests.integration.orchestration.conftest import Rig, until

from hybridmesh.core.ids import idempotency_key
from hybridmesh.core.serialization import loads
from hybridmesh.events import CloudEvent
from hybridmesh.observability import MeshMetrics
from hybridmesh.observability.slo import slo_report
from hybridmesh.orchestration import (
    Completion,
    ErrorHandling,
    Execution,
    Kind,
    Operation,
    Orchestrator,
    Plan,
    PlanStep,
    RetrySpec,
    Status,
)

FAST = RetrySpec(max_attempts=3, backoff_ms=20, multiplier=2.0)


def op(name: str, payload: dict[str, Any] | None = None) -> Operation:
    return Operation(endpoint=f"/operations/{name}", payload=payload or {})


def saga_step(step_id: str, service: str, *, undo: str | None = None, **options: Any) -> PlanStep:
    options.setdefault("retry", FAST)
    return PlanStep(
        step_id=step_id,
        name=step_id,
        service=service,
        architecture=None,
        operation=op(step_id, {"order": "{{ input.order_id }}"}),
        compensation=op(undo, {"order": "{{ input.order_id }}"}) if undo else None,
        **options,
    )


def saga(*steps: PlanStep, name: str = "order") -> Plan:
    chained = []
    previous: tuple[str, ...] = ()
    for s in steps:
        chained.append(
            PlanStep(**{**{f: getattr(s, f) for f in s.__slots__}, "dependencies": previous})
        )
        previous = (s.step_id,)
    return Plan(Kind.SAGA, name, 1, tuple(chained), ErrorHandling.COMPENSATION)


ORDER = saga(
    saga_step("reserve", "inventory", undo="release"),
    saga_step("charge", "payments", undo="refund"),
    saga_step("confirm", "users"),
)


async def run_order(rig: Rig, order_id: str) -> Execution:
    """Run the ORDER saga for ``order_id`` on a fresh engine, to its end."""
    engine = rig.engine()
    await engine.register(ORDER)
    async with engine:
        execution_id = await engine.start_saga("order", {"order_id": order_id})
        return await engine.wait(execution_id, timeout=10)


async def events_of(rig: Rig, *types: str) -> list[Any]:
    """The engine's events published so far, as (type, data), waiting for ``types``."""
    seen: list[Any] = []

    async def collect(event: Any) -> None:
        seen.append((event.type, event.data))

    rig.bus.subscribe("saga.>", collect, group=f"t-{len(types)}-{id(seen)}")
    rig.bus.subscribe("workflow.>", collect, group=f"w-{len(types)}-{id(seen)}")
    await until(lambda: all(any(t == s[0] for s in seen) for t in types))
    return seen


async def test_saga_completes_with_one_idempotency_key_per_step(rig: Rig) -> None:
    done = await run_order(rig, "o-1")
    execution_id = done.id
    assert done.status is Status.COMPLETED
    assert rig.ops.paths() == ["/operations/reserve", "/operations/charge", "/operations/confirm"]
    for call in rig.ops.calls:
        assert call.key == idempotency_key(execution_id, call.step or "")
        assert call.execution == execution_id
        assert call.body == {"order": "o-1"}
    history = [h.type for h in await rig.engine().history(execution_id)]
    assert history[0] == "execution.started"
    assert history[-1] == "execution.completed"
    assert history.count("step.completed") == 3


async def test_every_step_is_a_child_of_the_executions_trace(
    rig: Rig, spans: InMemorySpanExporter
) -> None:
    execution = await run_order(rig, "o-1")
    assert execution.trace_context is not None
    trace_id = execution.trace_context.split("-")[1]
    assert {c.traceparent.split("-")[1] for c in rig.ops.calls if c.traceparent} == {trace_id}
    finished = spans.get_finished_spans()
    root = next(s for s in finished if s.name == "saga order")
    steps = [s for s in finished if s.name.startswith("step ")]
    assert sorted(s.name for s in steps) == ["step charge", "step confirm", "step reserve"]
    assert all(s.parent is not None and s.parent.span_id == root.context.span_id for s in steps)


async def test_retries_and_compensations_are_children_of_the_executions_trace(
    rig: Rig, spans: InMemorySpanExporter
) -> None:
    # A retry, then a refusal. The first attempt may have charged, so the refund runs too.
    rig.ops.fail("/operations/charge", 503, 402)
    done = await run_order(rig, "o-t")
    assert done.status is Status.COMPENSATED
    finished = spans.get_finished_spans()
    root = next(s for s in finished if s.name == "saga order")
    ours = [s for s in finished if s.name.startswith(("step ", "compensate "))]
    assert sorted(s.name for s in ours) == [
        "compensate charge",
        "compensate reserve",
        "step charge",
        "step charge",
        "step reserve",
    ]
    assert all(s.parent is not None and s.parent.span_id == root.context.span_id for s in ours)
    assert {s.context.trace_id for s in ours} == {root.context.trace_id}


async def test_payment_failure_compensates_in_reverse_and_publishes(rig: Rig) -> None:
    rig.ops.fail("/operations/charge", 402)  # a definite refusal: no retry, no refund
    engine = rig.engine()
    await engine.register(ORDER)
    async with engine:
        execution_id = await engine.start_saga("order", {"order_id": "o-2"})
        done = await engine.wait(execution_id, timeout=10)
        seen = await events_of(rig, "saga.compensated")
    assert done.status is Status.COMPENSATED
    assert rig.ops.paths() == ["/operations/reserve", "/operations/charge", "/operations/release"]
    release = rig.ops.calls[-1]
    assert release.key == idempotency_key(execution_id, "reserve", "compensation")
    assert done.error is not None and "step charge failed" in done.error
    compensated = [data for kind, data in seen if kind == "saga.compensated"]
    assert compensated[0]["saga_id"] == execution_id


async def test_retries_wait_and_reuse_the_key(rig: Rig) -> None:
    rig.ops.fail("/operations/charge", 503, 503)
    done = await run_order(rig, "o-3")
    assert done.status is Status.COMPLETED
    charges = [c for c in rig.ops.calls if c.path == "/operations/charge"]
    assert len(charges) == 3
    assert len({c.key for c in charges}) == 1
    history = [(h.type, h.step_id, h.attempt) for h in await rig.engine().history(done.id)]
    assert ("step.retried", "charge", 1) in history
    assert ("step.retried", "charge", 2) in history
    assert ("step.completed", "charge", 3) in history


async def test_compensation_that_keeps_failing_goes_to_review(rig: Rig) -> None:
    rig.ops.fail("/operations/confirm", 400)
    rig.ops.fail("/operations/refund", 500, 500, 500)
    engine = rig.engine()
    await engine.register(ORDER)
    async with engine:
        execution_id = await engine.start_saga("order", {"order_id": "o-4"})
        done = await engine.wait(execution_id, timeout=10)
        assert done.status is Status.COMPENSATION_FAILED
        # The other compensation still ran.
        assert rig.ops.paths()[-1] == "/operations/release"
        items = await rig.review.list(origin="saga")
        assert [item.origin_ref for item in items] == [execution_id]
        assert "refund" not in items[0].reason or "charge" in items[0].reason
        # The cause is fixed; retrying runs the failed compensation again.
        await engine.retry_compensations(execution_id)
        again = await engine.wait(execution_id, timeout=10)
    assert again.status is Status.COMPENSATED
    assert rig.ops.paths()[-1] == "/operations/refund"


async def test_a_restarted_worker_resumes_the_interrupted_step_with_the_same_key(
    rig: Rig, spans: InMemorySpanExporter
) -> None:
    rig.ops.delays["/operations/charge"] = 2.0  # the first worker dies during this call
    first = rig.engine(lease_seconds=0.5)
    await first.register(ORDER)
    await first.start_worker()
    execution_id = await first.start_saga("order", {"order_id": "o-5"})
    await until(lambda: "/operations/charge" in rig.ops.paths())
    # Killed: tasks gone, nothing released, nothing saved.
    killed = first._worker
    for task in [killed._loop, *killed._helpers, *killed._driving.values()]:
        assert task is not None
        task.cancel()
    killed._loop = None
    killed._helpers.clear()
    rig.ops.delays.clear()
    second = rig.engine(lease_seconds=5)
    async with second:
        done = await second.wait(execution_id, timeout=10)
    assert done.status is Status.COMPLETED
    # The new worker's calls are still children of the execution's trace.
    assert done.trace_context is not None
    trace_id = done.trace_context.split("-")[1]
    assert {c.traceparent.split("-")[1] for c in rig.ops.calls if c.traceparent} == {trace_id}
    assert rig.ops.paths() == [
        "/operations/reserve",
        "/operations/charge",
        "/operations/charge",
        "/operations/confirm",
    ]
    charges = [c for c in rig.ops.calls if c.path == "/operations/charge"]
    assert charges[0].key == charges[1].key
    history = [(h.type, h.step_id) for h in await second.history(execution_id)]
    assert ("step.recovered", "charge") in history


async def test_in_flight_executions_keep_their_version(rig: Rig) -> None:
    waiting = saga(
        saga_step(
            "reserve",
            "inventory",
            completion=Completion.EVENT,
            completion_timeout_ms=30_000,
        ),
        name="versioned",
    )
    engine = rig.engine()
    v1 = await engine.register(waiting)
    async with engine:
        old = await engine.start_saga("versioned", {"order_id": "o-6"})

        async def waiting() -> bool:
            return (await engine.get(old)).step("reserve").status == "waiting"

        await until(waiting)
        v2 = await engine.register(saga(saga_step("other", "users"), name="versioned"))
        assert (v1.version, v2.version) == (1, 2)
        new = await engine.start_saga("versioned", {"order_id": "o-7"})
        assert (await engine.wait(new, timeout=10)).version == 2
        await rig.bus.publish(
            CloudEvent.create(
                "saga.step.completed",
                "inventory",
                {"saga_id": old, "step_id": "reserve", "result": {"reserved": 2}},
            )
        )
        done = await engine.wait(old, timeout=10)
    assert done.version == 1
    assert done.status is Status.COMPLETED
    assert done.step("reserve").result == {"reserved": 2}


async def test_start_with_the_same_id_starts_once(rig: Rig) -> None:
    engine = rig.engine()
    await engine.register(ORDER)
    async with engine:
        first = await engine.start_saga("order", {"order_id": "o-8"}, execution_id="order-o-8")
        second = await engine.start_saga("order", {"order_id": "o-8"}, execution_id="order-o-8")
        await engine.wait(first, timeout=10)
    assert first == second == "order-o-8"
    assert rig.ops.paths().count("/operations/reserve") == 1


async def test_concurrent_starts_with_the_same_id_start_once(rig: Rig) -> None:
    # Another start commits first, alone; the four with one id share the next batch, where
    # only the first of them may count as the start.
    engine = rig.engine()
    await engine.register(ORDER)
    async with engine:
        ids = await asyncio.gather(
            engine.start_saga("order", {"order_id": "o-13"}, execution_id="order-o-13"),
            *(
                engine.start_saga("order", {"order_id": "o-12"}, execution_id="order-o-12")
                for _ in range(4)
            ),
        )
        for execution_id in ("order-o-12", "order-o-13"):
            await engine.wait(execution_id, timeout=10)
        listed = await engine.executions(name="order")
    assert ids == ["order-o-13"] + ["order-o-12"] * 4
    assert sorted(e.id for e in listed) == ["order-o-12", "order-o-13"]
    reserved = [c.body for c in rig.ops.calls if c.path == "/operations/reserve"]
    assert sorted(body["order"] for body in reserved) == ["o-12", "o-13"]
    # One started event per execution: the starts that did not count published nothing.
    started = await rig.store.fetch_all(
        "SELECT body FROM event_log WHERE type = 'saga.started' ORDER BY seq"
    )
    assert sorted(loads(row["body"])["data"]["saga_id"] for row in started) == [
        "order-o-12",
        "order-o-13",
    ]


def count_claims(engine: Orchestrator) -> list[int]:
    """The sizes of the engine's claims from now on (each asks for up to that many)."""
    asked: list[int] = []
    worker = engine._worker
    claim = worker._claim

    async def counted(limit: int) -> int:
        asked.append(limit)
        return await claim(limit)

    worker._claim = counted  # type: ignore[method-assign]
    return asked


async def test_a_full_worker_takes_queued_executions_as_room_frees_up(rig: Rig) -> None:
    # Six executions recorded by a process without a worker; one worker with room for two
    # that polls only every 30 s: each ending lets it claim the next one at once.
    recorder = rig.engine()
    await recorder.register(ORDER)
    ids = [await recorder.start_saga("order", {"order_id": f"q-{n}"}) for n in range(6)]
    rig.ops.delays["/operations/charge"] = 0.1
    worker = rig.engine(max_executions=2, poll_interval=30)
    busiest = 0

    async def all_ended() -> bool:
        nonlocal busiest
        busiest = max(busiest, worker.driving)
        ended = [await worker.get(execution_id) for execution_id in ids]
        return all(execution.status is Status.COMPLETED for execution in ended)

    async with worker:
        await until(all_ended, seconds=15)
    assert busiest <= 2
    assert rig.ops.paths().count("/operations/confirm") == 6


async def test_a_full_worker_with_nothing_queued_does_not_claim_at_every_ending(
    rig: Rig,
) -> None:
    worker = rig.engine(max_executions=2, poll_interval=30)
    await worker.register(ORDER)
    async with worker:
        await until(lambda: worker._worker.running)
        await until(lambda: not worker._worker._backlog)  # the first claim found nothing queued
        asked = count_claims(worker)
        for round_ in range(3):  # this worker's own starts keep it full, then end
            ids = [
                await worker.start_saga("order", {"order_id": f"f-{round_}-{n}"}) for n in range(2)
            ]
            for execution_id in ids:
                await worker.wait(execution_id, timeout=10)
    assert asked == []


async def test_a_worker_that_lost_the_lease_saves_and_publishes_nothing(rig: Rig) -> None:
    rig.ops.delays["/operations/confirm"] = 0.5
    engine = rig.engine()
    await engine.register(ORDER)
    async with engine:
        execution_id = await engine.start_saga("order", {"order_id": "o-14"})
        await until(lambda: "/operations/confirm" in rig.ops.paths())
        # Another worker took the execution over while the last step was in flight.
        await rig.store.execute(
            "UPDATE orch_executions SET lease_owner = 'other-worker' WHERE id = ?", execution_id
        )
        await until(lambda: engine.driving == 0)
        stored = await engine.get(execution_id)
        history = [h.type for h in await engine.history(execution_id)]
        ends = await rig.store.fetch_all(
            "SELECT type FROM event_log WHERE type LIKE 'saga.%' AND type <> 'saga.started'"
        )
    assert stored.status is Status.RUNNING
    assert stored.lease_owner == "other-worker"
    assert stored.step("confirm").status == "running"  # as saved before the call went out
    assert history.count("step.completed") == 2  # reserve and charge
    assert "execution.completed" not in history
    assert ends == []  # no saga.completed


async def test_cancel_compensates_and_ends_cancelled(rig: Rig) -> None:
    rig.ops.delays["/operations/charge"] = 0.3
    engine = rig.engine()
    await engine.register(ORDER)
    async with engine:
        execution_id = await engine.start_saga("order", {"order_id": "o-9"})
        await until(lambda: "/operations/charge" in rig.ops.paths())
        await engine.cancel(execution_id, "customer changed their mind")
        done = await engine.wait(execution_id, timeout=10)
    assert done.status is Status.CANCELLED
    assert "/operations/release" in rig.ops.paths()
    assert "/operations/confirm" not in rig.ops.paths()


async def test_cancel_interrupts_the_step_in_flight(rig: Rig) -> None:
    # The step would answer after 5 s; the cancel must not wait for it. The interrupted
    # call may have acted (no answer came), so it is compensated too.
    rig.ops.delays["/operations/charge"] = 5.0
    engine = rig.engine()
    await engine.register(ORDER)
    async with engine:
        execution_id = await engine.start_saga("order", {"order_id": "o-10"})
        await until(lambda: "/operations/charge" in rig.ops.paths())
        await engine.cancel(execution_id, "stop")
        done = await engine.wait(execution_id, timeout=3)
    assert done.status is Status.CANCELLED
    assert done.step("charge").status == "failed"
    assert {"/operations/refund", "/operations/release"} <= set(rig.ops.paths())


async def test_a_wait_that_times_out_leaves_the_execution_and_other_waits_alone(
    rig: Rig,
) -> None:
    rig.ops.delays["/operations/charge"] = 0.5
    engine = rig.engine()
    await engine.register(ORDER)
    async with engine:
        execution_id = await engine.start_saga("order", {"order_id": "o-12"})
        patient = asyncio.create_task(engine.wait(execution_id, timeout=10))
        try:
            await engine.wait(execution_id, timeout=0.1)
        except TimeoutError as error:
            assert execution_id in str(error)
        else:
            raise AssertionError("the wait did not time out")
        done = await patient
        assert done.status is Status.COMPLETED
        assert (await engine.wait(execution_id, timeout=1)).status is Status.COMPLETED


async def test_a_signal_that_changes_nothing_lets_the_step_finish(rig: Rig) -> None:
    # A completion event for a step that does not complete by event is ignored; the call it
    # interrupted is made again with the same key, and the saga goes on.
    rig.ops.delays["/operations/charge"] = 0.3
    engine = rig.engine()
    await engine.register(ORDER)
    async with engine:
        execution_id = await engine.start_saga("order", {"order_id": "o-11"})
        await until(lambda: "/operations/charge" in rig.ops.paths())
        await engine.signal_step(execution_id, "charge", ok=True, data={"early": True})
        done = await engine.wait(execution_id, timeout=10)
    assert done.status is Status.COMPLETED
    charges = [c for c in rig.ops.calls if c.path == "/operations/charge"]
    assert len({c.key for c in charges}) == 1
    assert done.step("charge").result == {"ok": True, "path": "/operations/charge"}


async def test_a_completion_event_starts_its_dependents_while_another_step_runs(
    rig: Rig,
) -> None:
    # "slow" is the only call of its round; "accept" waits for its completion event. When
    # the event comes, "after" must start at once, not when "slow" has answered.
    rig.ops.delays["/slow"] = 3.0

    def wf_step(step_id: str, endpoint: str, *deps: str, **kw: Any) -> PlanStep:
        return PlanStep(
            step_id=step_id,
            name=step_id,
            service="users",
            architecture=None,
            operation=Operation(endpoint=endpoint, payload={}),
            dependencies=deps,
            retry=FAST,
            **kw,
        )

    plan = Plan(
        Kind.WORKFLOW,
        "waits",
        1,
        (
            wf_step("accept", "/accept", completion=Completion.EVENT),
            wf_step("fast", "/fast"),
            wf_step("slow", "/slow", "fast"),
            wf_step("after", "/after", "accept"),
        ),
        ErrorHandling.FAIL_FAST,
    )
    engine = rig.engine()
    await engine.register(plan)
    async with engine:
        execution_id = await engine.start_workflow("waits", {})
        await until(lambda: "/slow" in rig.ops.paths())
        await engine.signal_step(execution_id, "accept", ok=True, data={"done": True})
        await until(lambda: "/after" in rig.ops.paths(), seconds=2.5)
        assert len([p for p in rig.ops.paths() if p == "/slow"]) == 1  # not interrupted
        done = await engine.wait(execution_id, timeout=10)
    assert done.status is Status.COMPLETED


async def test_workflow_runs_parallel_steps_and_passes_context(rig: Rig) -> None:
    rig.ops.answers["/users"] = lambda body: {"id": "u-1", "context_updates": {"user_id": "u-1"}}
    rig.ops.fail("/analytics", 500, 500)  # optional: its failure does not fail the workflow

    def wf_step(step_id: str, service: str, endpoint: str, *deps: str, **kw: Any) -> PlanStep:
        return PlanStep(
            step_id=step_id,
            name=step_id,
            service=service,
            architecture=None,
            operation=Operation(endpoint=endpoint, payload=kw.pop("payload", {})),
            dependencies=deps,
            retry=RetrySpec(max_attempts=2, backoff_ms=10),
            **kw,
        )

    plan = Plan(
        Kind.WORKFLOW,
        "onboarding",
        1,
        (
            wf_step("create", "users", "/users", payload={"email": "{{ input.email }}"}),
            wf_step(
                "welcome",
                "inventory",
                "/welcome",
                "create",
                payload={"user": "{{ context.user_id }}"},
            ),
            wf_step("track", "payments", "/analytics", "create", optional=True),
            wf_step("report", "users", "/report", "welcome", "track"),
        ),
        ErrorHandling.CONTINUE_ON_ERROR,
    )
    engine = rig.engine()
    await engine.register(plan)
    async with engine:
        execution_id = await engine.start_workflow("onboarding", {"email": "a@example.com"})
        done = await engine.wait(execution_id, timeout=10)
        seen = await events_of(rig, "workflow.completed")
    assert done.status is Status.COMPLETED
    assert done.step("track").status == "failed"
    assert done.context["user_id"] == "u-1"
    bodies = {c.path: c.body for c in rig.ops.calls}
    assert bodies["/users"] == {"email": "a@example.com"}
    assert bodies["/welcome"] == {"user": "u-1"}
    assert rig.ops.paths()[-1] == "/report"  # after both welcome and the failed optional
    assert any(kind == "workflow.started" for kind, _ in seen)


async def test_execution_timeout_fails_a_saga_into_compensation(rig: Rig) -> None:
    rig.ops.delays["/operations/charge"] = 1.0
    plan = Plan(
        Kind.SAGA,
        "slow",
        1,
        saga(
            saga_step("reserve", "inventory", undo="release"),
            saga_step("charge", "payments", undo="refund", timeout_ms=10_000),
        ).steps,
        ErrorHandling.COMPENSATION,
        timeout_ms=500,
    )
    engine = rig.engine()
    await engine.register(plan)
    async with engine:
        execution_id = await engine.start_saga("slow", {"order_id": "o-10"})
        done = await engine.wait(execution_id, timeout=10)
    assert done.status is Status.COMPENSATED
    assert done.error == "execution timed out after 500 ms"
    assert rig.ops.paths()[-2:] == ["/operations/refund", "/operations/release"]


async def test_a_template_that_cannot_resolve_fails_its_step_and_sends_nothing(
    rig: Rig,
) -> None:
    # Registered as a plan, so no definition's validation saw these templates.
    broken = saga(
        saga_step("reserve", "inventory", undo="release"),
        PlanStep(
            step_id="charge",
            name="charge",
            service="payments",
            architecture=None,
            operation=op("charge", {"amount": "{{ 1+1 }}", "order": "{{ input.order_id }}"}),
            retry=FAST,
        ),
        saga_step("confirm", "users"),
        name="broken-templates",
    )
    missing = saga(
        PlanStep(
            step_id="charge",
            name="charge",
            service="payments",
            architecture=None,
            operation=op("charge", {"amount": "total: {{ input.total }}"}),
            retry=FAST,
        ),
        name="missing-value",
    )
    engine = rig.engine()
    await engine.register(broken)
    await engine.register(missing)
    async with engine:
        first = await engine.wait(
            await engine.start_saga("broken-templates", {"order_id": "o-9"}), timeout=10
        )
        second = await engine.wait(
            await engine.start_saga("missing-value", {"order_id": "o-9"}), timeout=10
        )

    assert first.status is Status.COMPENSATED
    assert second.status is Status.COMPENSATED
    assert rig.ops.paths() == ["/operations/reserve", "/operations/release"]
    (charge,) = [s for s in first.steps if s.step_id == "charge"]
    assert charge.attempt == 1  # not retried
    assert charge.error is not None
    assert charge.error.startswith("invalid: template '{{ 1+1 }}': '1+1' is not a path")
    (only,) = second.steps
    assert (only.attempt, only.error) == (
        1,
        "invalid: template {{ input.total }}: nothing at 'input.total'",
    )


async def test_ended_executions_are_counted_for_the_completion_slo(rig: Rig) -> None:
    metrics = MeshMetrics()
    engine = rig.engine(metrics=metrics)
    await engine.register(ORDER)
    async with engine:
        completed = await engine.start_saga("order", {"order_id": "o-ok"})
        await engine.wait(completed, timeout=10)
        rig.ops.fail("/operations/charge", 402)  # refused: compensated
        compensated = await engine.start_saga("order", {"order_id": "o-refused"})
        await engine.wait(compensated, timeout=10)
    labels = {"kind": "saga", "name": "order"}
    for status in ("completed", "compensated"):
        assert metrics.sample("hybridmesh_executions_ended_total", **labels, status=status) == 1
    report = await slo_report(rig.store, "1h")
    [order] = report.get("workflow-completion").subjects
    assert (order.labels, order.good, order.total) == (labels, 1, 2)
