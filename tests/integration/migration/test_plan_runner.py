"""Migration plans driven by the runner on a real store (SQLite and PostgreSQL): the
gateway's weights move step by step, gates read the per-second windows the gateway writes,
failures roll back, too little traffic pauses, leases fence runners, every action is
audited and queued as a CloudEvent.

The clock is the test's: windows are written for the seconds the test chooses and the
runner is ticked by hand, so a five-step plan runs without waiting.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from hybridmesh.core.errors import ValidationError
from hybridmesh.gateway.config import parse_routes
from hybridmesh.gateway.state import GatewayState
from hybridmesh.gateway.stats import WindowRecorder
from hybridmesh.migration.plans import PlanSpec, build_plan, parse_plans
from hybridmesh.migration.runner import PlanRunner
from hybridmesh.migration.state import LeaseLostError, MigrationState, PlanConflictError, Status
from hybridmesh.store import Store

ROUTES = """
routes:
  - name: content-delivery
    match: {path: {prefix: /content}}
    backends:
      - {name: monolith, url: "http://127.0.0.1:9001", weight: 100}
      - {name: delivery, url: "http://127.0.0.1:9002", weight: 0}
"""

T0 = 1_900_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def rig(store: Store) -> AsyncIterator[Rig]:
    gateway = GatewayState(store)
    await gateway.apply(parse_routes(ROUTES, "routes.yaml"))
    yield Rig(store, gateway)


class Rig:
    def __init__(self, store: Store, gateway: GatewayState) -> None:
        self.store = store
        self.gateway = gateway
        self.clock = Clock()
        self.state = MigrationState(store, clock=self.clock)
        self.replicas = 0

    def runner(self, owner: str = "runner-a", lease: float = 30.0) -> PlanRunner:
        return PlanRunner(self.store, owner=owner, lease_seconds=lease, clock=self.clock)

    async def plan(self, **spec: Any) -> str:
        data: dict[str, Any] = {
            "name": "split-delivery",
            "source": "content-management",
            "strategy": "strangler_fig",
            "targets": [
                {
                    "service": "content-delivery",
                    "backend": "delivery",
                    "source_backend": "monolith",
                    "steps": [10, 50, 100],
                }
            ],
            "criteria": {"interval": 2, "window": 4, "min_requests": 10},
        }
        data.update(spec)
        routes = {s.route.name: s.route for s in await self.gateway.routes()}
        plan = build_plan(PlanSpec.model_validate(data), routes)
        await self.state.save(plan, actor="alice")
        await self.state.control(plan.name, "start", actor="alice", reason=None)
        return plan.name

    async def traffic(self, backend: str, ok: int, failed: int = 0, seconds: float = 0.01) -> None:
        """Requests to ``backend`` counted in the second before the clock's, as a gateway
        replica writes them."""
        self.replicas += 1
        recorder = WindowRecorder(
            self.store, replica=f"replica-{self.replicas}", clock=lambda: self.clock.now - 1
        )
        for _ in range(ok):
            recorder.observe("content-delivery", backend, 200, seconds)
        for _ in range(failed):
            recorder.observe("content-delivery", backend, 503, seconds)
        await recorder.close()

    async def weight(self, backend: str = "delivery") -> float:
        route = (await self.gateway.route("content-delivery")).route
        return route.backend(backend).weight

    async def run(
        self, runner: PlanRunner, name: str, *, seconds: float, healthy: bool = True
    ) -> None:
        """Tick the plan for ``seconds`` of the clock, one second at a time, with healthy (or
        failing) traffic to the target in every second."""
        epoch = await self.state.claim(name, runner.owner, runner.lease_seconds)
        assert epoch is not None
        for _ in range(int(seconds)):
            self.clock.now += 1
            await self.traffic("delivery", ok=20, failed=0 if healthy else 20)
            while (wait := await runner.tick(name, epoch)) == 0.0:
                pass
            if wait is None:
                break
        await self.state.release(name, runner.owner, epoch)

    async def actions(self, name: str) -> list[str]:
        return [entry.action for entry in await self.state.audit(name)]


async def test_a_healthy_plan_moves_traffic_step_by_step_and_retires_the_source(rig: Rig) -> None:
    name = await rig.plan()
    runner = rig.runner()
    seen = []
    epoch = await rig.state.claim(name, runner.owner, runner.lease_seconds)
    assert epoch is not None
    for _ in range(40):
        rig.clock.now += 1
        await rig.traffic("delivery", ok=20)
        wait = await runner.tick(name, epoch)
        seen.append(await rig.weight())
        if wait is None:
            break
    record = await rig.state.get(name)
    # The source's retirement waits for a person.
    assert record.status is Status.WAITING_APPROVAL
    assert record.plan.steps[record.step].name == "retire content-management from content-delivery"
    assert sorted(set(seen)) == [0.0, 10.0, 50.0, 100.0]
    assert seen == sorted(seen), "the target's weight only ever grows"

    await rig.state.control(name, "approve", actor="bob", reason="old path unused")
    await rig.run(runner, name, seconds=3)
    record = await rig.state.get(name)
    assert record.status is Status.COMPLETED
    route = (await rig.gateway.route("content-delivery")).route
    assert [(b.name, b.weight) for b in route.backends] == [("delivery", 100.0)]
    actions = await rig.actions(name)
    assert actions.count("migration.step.started") == 5  # prepare, 10, 50, 100, retire
    assert actions.count("migration.step.completed") == 5
    assert actions[-1] == "migration.completed"
    approvals = [e for e in await rig.state.audit(name) if e.action == "migration.approve"]
    assert approvals[0].actor == "bob" and approvals[0].reason == "old path unused"
    queued = await rig.store.fetch_all(
        "SELECT type FROM event_outbox WHERE source = 'hybridmesh/migration'"
    )
    assert {"migration.step.started", "migration.completed"} <= {r["type"] for r in queued}


async def test_a_failing_gate_rolls_back_to_the_previous_step_and_stops(rig: Rig) -> None:
    name = await rig.plan()
    runner = rig.runner()
    await rig.run(runner, name, seconds=7)  # prepare, 10 % passes its window
    assert await rig.weight() == 50.0
    await rig.run(runner, name, seconds=5, healthy=False)
    record = await rig.state.get(name)
    assert record.status is Status.ROLLED_BACK
    assert await rig.weight() == 10.0  # back to the step before
    assert "error rate 50.00%" in (record.reason or "")
    actions = await rig.actions(name)
    assert actions[-2:] == ["migration.gate.failed", "migration.rolled_back"]
    failed = [e for e in await rig.state.audit(name) if e.action == "migration.gate.failed"]
    assert failed[0].details["failures"][0]["error_rate"] == 0.5


async def test_rollback_to_zero_takes_all_traffic_back_at_once(rig: Rig) -> None:
    name = await rig.plan(rollback="zero")
    runner = rig.runner()
    await rig.run(runner, name, seconds=7)
    assert await rig.weight() == 50.0
    await rig.run(runner, name, seconds=5, healthy=False)
    assert (await rig.state.get(name)).status is Status.ROLLED_BACK
    assert await rig.weight() == 0.0


async def test_too_little_traffic_pauses_the_plan_instead_of_passing(rig: Rig) -> None:
    name = await rig.plan()
    runner = rig.runner()
    epoch = await rig.state.claim(name, runner.owner, runner.lease_seconds)
    assert epoch is not None
    for _ in range(10):
        rig.clock.now += 1
        await rig.traffic("delivery", ok=1)  # 1 request a second: under min_requests
        if await runner.tick(name, epoch) is None:
            break
    record = await rig.state.get(name)
    assert record.status is Status.PAUSED
    assert "inconclusive" in (record.reason or "")
    assert await rig.weight() == 10.0  # it stays where it was: nothing passed silently
    assert "migration.gate.inconclusive" in await rig.actions(name)

    # A person resumes: a new window is measured, this time with traffic.
    await rig.state.control(name, "resume", actor="alice", reason="traffic is back")
    await rig.run(runner, name, seconds=7)
    assert await rig.weight() == 50.0


async def test_a_weight_changed_by_hand_is_put_back_while_a_step_is_monitored(rig: Rig) -> None:
    name = await rig.plan()
    runner = rig.runner()
    await rig.run(runner, name, seconds=2)  # prepared, 10 % being monitored
    assert await rig.weight() == 10.0
    await rig.gateway.set_weight("content-delivery", "delivery", 80)
    await rig.run(runner, name, seconds=1)
    assert await rig.weight() == 10.0
    assert "migration.weights.reconciled" in await rig.actions(name)


async def test_a_runner_that_lost_its_lease_changes_nothing(rig: Rig) -> None:
    name = await rig.plan()
    first, second = rig.runner("runner-a", lease=5), rig.runner("runner-b", lease=5)
    epoch_a = await rig.state.claim(name, first.owner, first.lease_seconds)
    assert epoch_a is not None
    assert await rig.state.claim(name, second.owner, second.lease_seconds) is None
    # runner-a stalls past its lease; runner-b takes the plan over and executes a step.
    rig.clock.now += 6
    epoch_b = await rig.state.claim(name, second.owner, second.lease_seconds)
    assert epoch_b is not None and epoch_b > epoch_a
    await second.tick(name, epoch_b)
    before = await rig.state.get(name)
    with pytest.raises(LeaseLostError):
        await first.tick(name, epoch_a)
    after = await rig.state.get(name)
    assert (after.step, after.phase, after.gate) == (before.step, before.phase, before.gate)
    started = [e for e in await rig.state.audit(name) if e.action == "migration.step.started"]
    assert [e.actor for e in started] == ["runner:runner-b"]


async def test_a_new_runner_resumes_at_the_step_the_store_holds(rig: Rig) -> None:
    name = await rig.plan()
    await rig.run(rig.runner("runner-a"), name, seconds=3)
    held = await rig.state.get(name)
    assert held.phase.value == "monitoring"
    # runner-a is gone (its lease released or expired); runner-b goes on from there.
    await rig.run(rig.runner("runner-b"), name, seconds=20)
    record = await rig.state.get(name)
    assert record.status is Status.WAITING_APPROVAL
    started = [e.step for e in await rig.state.audit(name) if e.action == "migration.step.started"]
    assert started == sorted(set(started)), "no step executed twice"


async def test_abort_rolls_back_and_ends_the_plan(rig: Rig) -> None:
    name = await rig.plan()
    runner = rig.runner()
    await rig.run(runner, name, seconds=7)
    assert await rig.weight() == 50.0
    await rig.state.control(name, "abort", actor="carol", reason="customer complaints")
    await rig.run(runner, name, seconds=1)
    record = await rig.state.get(name)
    assert record.status is Status.ABORTED
    assert await rig.weight() == 10.0
    assert (await rig.actions(name))[-1] == "migration.aborted"


async def test_pause_stops_the_runner_until_resume(rig: Rig) -> None:
    name = await rig.plan()
    runner = rig.runner()
    await rig.run(runner, name, seconds=2)
    await rig.state.control(name, "pause", actor="alice", reason="holiday freeze")
    assert await rig.state.claimable(rig.clock.now + 100) == []
    await rig.state.control(name, "resume", actor="alice", reason=None)
    assert await rig.state.claimable(rig.clock.now + 100) == [name]


async def test_plans_are_versioned_and_not_changed_under_a_run(rig: Rig) -> None:
    routes = {s.route.name: s.route for s in await rig.gateway.routes()}
    spec = {
        "name": "p",
        "source": "content-management",
        "strategy": "strangler_fig",
        "targets": [
            {"service": "content-delivery", "backend": "delivery", "source_backend": "monolith"}
        ],
    }
    plan = build_plan(PlanSpec.model_validate(spec), routes)
    first, changed = await rig.state.save(plan, actor="alice")
    assert (first.version, changed) == (1, True)
    again, changed = await rig.state.save(plan, actor="alice")
    assert (again.version, changed) == (1, False)
    spec["rollback"] = "zero"
    second, changed = await rig.state.save(
        build_plan(PlanSpec.model_validate(spec), routes), actor="alice"
    )
    assert (second.version, changed) == (2, True)
    assert [v for v, _ in await rig.state.versions("p")] == [1, 2]
    await rig.state.control("p", "start", actor="alice", reason=None)
    spec["rollback"] = "previous_step"
    with pytest.raises(PlanConflictError):
        await rig.state.save(build_plan(PlanSpec.model_validate(spec), routes), actor="alice")


async def test_a_target_without_a_route_or_backend_is_refused_when_the_plan_is_made(
    rig: Rig,
) -> None:
    routes = {s.route.name: s.route for s in await rig.gateway.routes()}
    text = (
        "name: p\nsource: content-management\nstrategy: strangler_fig\ntargets:\n"
        "  - service: content-delivery\n    backend: delivery\n    source_backend: monolith\n"
        "  - service: content-workflow\n"
    )
    (loaded,) = parse_plans(text, "plans/p.yaml")
    with pytest.raises(ValidationError) as refused:
        build_plan(loaded.spec, routes)
    (problem,) = refused.value.problems
    assert problem.field == "targets.1.route"
    assert "no route 'content-workflow'" in problem.message


class Hooks:
    """A webhook receiver on loopback: answers each type with the status the test sets."""

    def __init__(self) -> None:
        self.status = {"pre": 200, "confirm": 200, "rollback": 404}
        self.calls: list[dict[str, Any]] = []
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        kind = request.match_info["kind"]
        self.calls.append({"kind": kind, **await request.json()})
        return web.Response(status=self.status[kind])


@pytest.fixture
async def hooks() -> AsyncIterator[Hooks]:
    receiver = Hooks()
    app = web.Application()
    app.router.add_post("/{kind}", receiver.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    receiver.url = f"http://127.0.0.1:{port}"
    yield receiver
    await runner.cleanup()


def _webhooks(hooks: Hooks, *kinds: str) -> list[dict[str, Any]]:
    types = {"pre": "pre_step", "confirm": "confirm_step", "rollback": "rollback"}
    return [
        {"name": kind, "type": types[kind], "url": f"{hooks.url}/{kind}", "metadata": {"k": "v"}}
        for kind in kinds
    ]


async def test_a_failing_pre_step_webhook_pauses_the_plan_before_the_step(
    rig: Rig, hooks: Hooks
) -> None:
    name = await rig.plan(webhooks=_webhooks(hooks, "pre"))
    runner = rig.runner()
    await rig.run(runner, name, seconds=7)  # prepare (no gate: no hook), then 10 % passes
    assert await rig.weight() == 50.0
    hooks.status["pre"] = 500
    await rig.run(runner, name, seconds=8)
    record = await rig.state.get(name)
    assert record.status is Status.PAUSED
    assert "pre_step webhook pre answered HTTP 500" in (record.reason or "")
    # The step did not execute, and no runner takes the plan up until a person resumes it.
    started = [e for e in await rig.state.audit(name) if e.action == "migration.step.started"]
    assert started[-1].step == record.step - 1
    assert await rig.state.claim(name, "runner-b", 5) is None
    assert hooks.calls[0]["plan"] == name and hooks.calls[0]["metadata"] == {"k": "v"}
    await runner.close()


async def test_a_step_waits_for_its_confirmation_webhook(rig: Rig, hooks: Hooks) -> None:
    hooks.status["confirm"] = 403
    name = await rig.plan(webhooks=_webhooks(hooks, "confirm"))
    runner = rig.runner()
    await rig.run(runner, name, seconds=4)
    record = await rig.state.get(name)
    assert record.status is Status.RUNNING and await rig.weight() == 0.0
    assert "confirm_step webhook confirm answered HTTP 403" in (record.reason or "")
    assert (await rig.actions(name)).count("migration.gate.awaiting_confirmation") == 1
    hooks.status["confirm"] = 200
    await rig.run(runner, name, seconds=2)
    assert await rig.weight() == 10.0
    await runner.close()


async def test_a_rollback_webhook_rolls_the_step_back(rig: Rig, hooks: Hooks) -> None:
    name = await rig.plan(webhooks=_webhooks(hooks, "rollback"))
    runner = rig.runner()
    await rig.run(runner, name, seconds=7)
    assert await rig.weight() == 50.0
    hooks.status["rollback"] = 200  # an outside alert fires
    await rig.run(runner, name, seconds=3)
    record = await rig.state.get(name)
    assert record.status is Status.ROLLED_BACK and await rig.weight() == 10.0
    assert "rollback webhook rollback asked" in (record.reason or "")
    assert "migration.webhook.rollback" in await rig.actions(name)
    await runner.close()


async def test_testers_reach_the_target_before_any_traffic_moves(rig: Rig) -> None:
    targets = [
        {
            "service": "content-delivery",
            "backend": "delivery",
            "source_backend": "monolith",
            "steps": [10, 100],
            "testers": {"header": "x-canary", "value": "always"},
        }
    ]
    name = await rig.plan(targets=targets)
    runner = rig.runner()
    await rig.run(runner, name, seconds=1)  # the route is prepared
    route = (await rig.gateway.route("content-delivery")).route
    assert [(r.header, r.exact, r.backend) for r in route.header_routes] == [
        ("x-canary", "always", "delivery")
    ]
    assert await rig.weight() in (0.0, 10.0)


async def _mirrored(rig: Rig, compared: int, mismatched: int) -> None:
    """Mirrored copies to delivery counted in the second before the clock's."""
    rig.replicas += 1
    recorder = WindowRecorder(
        rig.store, replica=f"replica-{rig.replicas}", clock=lambda: rig.clock.now - 1
    )
    for n in range(compared):
        recorder.observe("content-delivery", "mirror:delivery", 200, 0.01)
        recorder.compared("content-delivery", "mirror:delivery", n < mismatched)
    await recorder.close()


@pytest.mark.parametrize(("mismatched", "passes"), [(0, True), (3, False)])
async def test_a_parallel_run_gates_on_the_mismatch_rate_before_traffic_moves(
    rig: Rig, mismatched: int, passes: bool
) -> None:
    targets = [
        {
            "service": "content-delivery",
            "backend": "delivery",
            "source_backend": "monolith",
            "steps": [10, 100],
            "parallel_run": {"max_mismatch_rate": 0.05, "min_compared": 10},
        }
    ]
    name = await rig.plan(targets=targets)
    runner = rig.runner()
    epoch = await rig.state.claim(name, runner.owner, runner.lease_seconds)
    assert epoch is not None
    mirrored_while_running = False
    for _ in range(9):
        rig.clock.now += 1
        await _mirrored(rig, compared=20, mismatched=mismatched)
        while (wait := await runner.tick(name, epoch)) == 0.0:
            pass
        route = (await rig.gateway.route("content-delivery")).route
        if route.mirror is not None and route.mirror.backend == "delivery":
            mirrored_while_running = True
        if wait is None:
            break
    record = await rig.state.get(name)
    route = (await rig.gateway.route("content-delivery")).route
    assert mirrored_while_running
    started = [
        record.plan.steps[e.step].name
        for e in await rig.state.audit(name)
        if e.action == "migration.step.started" and e.step is not None
    ]
    if passes:
        # The run passed and ended before any real traffic moved.
        assert started[:4] == [
            "prepare content-delivery",
            "parallel run content-delivery",
            "end parallel run content-delivery",
            "content-delivery 10%",
        ]
        assert route.mirror is None
    else:
        assert await rig.weight() == 0.0  # no real traffic ever moved
        assert record.status is Status.ROLLED_BACK
        assert "mismatch rate 15.00%" in (record.reason or "")
        assert route.mirror is None  # rolling back stopped the copies


class PrometheusAPI:
    """A stand-in for Prometheus's instant query API on loopback (no Prometheus server
    runs on the test machines): answers every query with ``value``, or no series."""

    def __init__(self) -> None:
        self.value: str | None = "0.1"
        self.queries: list[str] = []
        self.url = ""

    async def query(self, request: web.Request) -> web.Response:
        self.queries.append(request.query["query"])
        result = [] if self.value is None else [{"metric": {}, "value": [T0, self.value]}]
        return web.json_response(
            {"status": "success", "data": {"resultType": "vector", "result": result}}
        )


@pytest.fixture
async def prometheus() -> AsyncIterator[PrometheusAPI]:
    api = PrometheusAPI()
    app = web.Application()
    app.router.add_get("/api/v1/query", api.query)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    api.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
    yield api
    await runner.cleanup()


def _with_metric(prometheus: PrometheusAPI) -> dict[str, Any]:
    return {
        "prometheus": prometheus.url,
        "criteria": {
            "interval": 2,
            "window": 4,
            "min_requests": 10,
            "consecutive_error_limit": 1,
            "metrics": [
                {
                    "name": "queue-depth",
                    "query": "max(queue_depth{{backend='{backend}'}}[{interval}])",
                    "max": 50,
                }
            ],
        },
    }


async def test_a_custom_prometheus_metric_over_its_bound_rolls_back(
    rig: Rig, prometheus: PrometheusAPI
) -> None:
    name = await rig.plan(**_with_metric(prometheus))
    runner = rig.runner()
    await rig.run(runner, name, seconds=7)
    assert await rig.weight() == 50.0
    assert prometheus.queries[0] == "max(queue_depth{backend='delivery'}[2s])"
    prometheus.value = "80"
    await rig.run(runner, name, seconds=3)
    record = await rig.state.get(name)
    assert record.status is Status.ROLLED_BACK
    assert "queue-depth 80 is over 50" in (record.reason or "")
    await runner.close()


async def test_a_custom_metric_without_data_never_passes(
    rig: Rig, prometheus: PrometheusAPI
) -> None:
    prometheus.value = None
    name = await rig.plan(**_with_metric(prometheus))
    runner = rig.runner()
    await rig.run(runner, name, seconds=8)
    record = await rig.state.get(name)
    assert record.status is Status.PAUSED
    assert "could not measure" in (record.reason or "") and "0 series" in (record.reason or "")
    assert await rig.weight() == 10.0
    await runner.close()


async def _one_step_plan(rig: Rig, **criteria: Any) -> str:
    targets = [
        {
            "service": "content-delivery",
            "backend": "delivery",
            "source_backend": "monolith",
            "steps": [25],
            "retire": False,
        }
    ]
    gate = {"interval": 1, "window": 10, "min_requests": 3, **criteria}
    return await rig.plan(targets=targets, criteria=gate, rollback="zero")


async def test_the_gate_sees_a_failing_second_within_an_interval_of_its_rows(rig: Rig) -> None:
    """The gateway writes each second (as counted so far) at .5 past; the runner looks at
    .2 past. Errors from T0+1.5 on must fail the gate at its next looks, not at the end of
    the window, whatever the two clocks' offset."""
    name = await _one_step_plan(rig)
    rig.clock.now = T0 + 0.2
    runner = rig.runner()
    epoch = await rig.state.claim(name, runner.owner, runner.lease_seconds)
    assert epoch is not None
    while await runner.tick(name, epoch) == 0.0:
        pass  # prepared, 25 % monitored from T0+0.2
    recorder = WindowRecorder(rig.store, replica="gw-1", clock=rig.clock)
    for second in range(1, 12):
        failing = second >= 2
        for n in range(100):
            recorder.observe("content-delivery", "delivery", 503 if failing and n % 2 else 200, 0)
        rig.clock.now = T0 + second + 0.2
        if await runner.tick(name, epoch) is None:
            break
        rig.clock.now = T0 + second + 0.5
        await recorder.flush()
    failed = [e for e in await rig.state.audit(name) if e.action == "migration.gate.failed"]
    assert failed, "the gate never failed"
    # Errors counted from T0+1.5; the second holding them written at T0+2.5, seen at T0+3.2.
    assert failed[0].at <= T0 + 3.2
    assert await rig.weight() == 0.0


async def test_a_runner_taking_over_judges_the_seconds_it_missed_once(rig: Rig) -> None:
    """Runner a dies after T0+1.2; runner b takes over at T0+5.2. One second holds
    failures: b must count it as one failed measurement, not once per missed interval."""
    name = await _one_step_plan(rig, failure_limit=2)
    rig.clock.now = T0 + 0.2
    first = rig.runner("a", lease=2)
    epoch = await rig.state.claim(name, first.owner, first.lease_seconds)
    assert epoch is not None
    while await first.tick(name, epoch) == 0.0:
        pass
    recorder = WindowRecorder(rig.store, replica="gw", clock=rig.clock)
    runner = first
    for second in range(1, 8):
        rig.clock.now = T0 + second - 1 + 0.5
        for n in range(20):
            bad = second - 1 == 4 and n % 2
            recorder.observe("content-delivery", "delivery", 503 if bad else 200, 0.002)
        rig.clock.now = T0 + second + 0.1
        await recorder.flush()
        rig.clock.now = T0 + second + 0.2
        if second in (2, 3, 4):
            continue  # runner a is gone
        if second == 5:
            runner = rig.runner("b", lease=2)
            epoch = await rig.state.claim(name, runner.owner, runner.lease_seconds)
            assert epoch is not None
        while (wait := await runner.tick(name, epoch)) == 0.0:
            pass
        if wait is None:
            break
    record = await rig.state.get(name)
    assert record.status is Status.RUNNING
    assert record.gate["failed"] == 1
