"""A branch-by-abstraction plan on a real store (SQLite and PostgreSQL): the runner steps a
feature flag's rollout, the gate reads the windows the abstraction writes for its new
implementation, users stay on the side they were given, and a failing new implementation
rolls the rollout back."""

from __future__ import annotations

from typing import Any

from hybridmesh.flags.client import FlagClient
from hybridmesh.flags.files import parse_flags
from hybridmesh.flags.store import FlagStore
from hybridmesh.gateway.stats import WindowRecorder
from hybridmesh.migration.abstraction import Abstraction, flag_chooser
from hybridmesh.migration.plans import PlanSpec, build_plan
from hybridmesh.migration.runner import PlanRunner
from hybridmesh.migration.state import MigrationState, Status
from hybridmesh.store import Store

FLAG = """
key: pricing-engine
variants: {old: old, new: new}
default_variant: old
"""

T0 = 1_900_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


async def _setup(store: Store, clock: Clock) -> tuple[str, MigrationState]:
    await FlagStore(store).apply(parse_flags(FLAG, "flags.yaml"))
    spec: dict[str, Any] = {
        "name": "pricing",
        "source": "pricing-legacy",
        "strategy": "branch_by_abstraction",
        "targets": [{"service": "pricing-engine", "steps": [10, 50, 100]}],
        "criteria": {"interval": 1, "window": 2, "min_requests": 5},
    }
    plan = build_plan(PlanSpec.model_validate(spec), {})
    state = MigrationState(store, clock=clock)
    await state.save(plan, actor="alice")
    await state.control("pricing", "start", actor="alice", reason=None)
    return "pricing", state


async def _windows(store: Store, clock: Clock, ok: int, failed: int, replica: str) -> None:
    recorder = WindowRecorder(store, replica=replica, clock=lambda: clock.now - 1)
    for _ in range(ok):
        recorder.observe("abstraction:pricing-engine", "new", 200, 0.002)
    for _ in range(failed):
        recorder.observe("abstraction:pricing-engine", "new", 500, 0.002)
    await recorder.close()


async def _run(
    store: Store, clock: Clock, state: MigrationState, seconds: int, *, failing: bool = False
) -> None:
    runner = PlanRunner(store, owner="r", clock=clock)
    epoch = await state.claim("pricing", "r", 30)
    assert epoch is not None
    for _ in range(seconds):
        clock.now += 1
        await _windows(store, clock, 20, 20 if failing else 0, f"replica-{clock.now}")
        while (wait := await runner.tick("pricing", epoch)) == 0.0:
            pass
        if wait is None:
            break
    await state.release("pricing", "r", epoch)


def _share(client: FlagClient, users: int = 2000) -> tuple[float, set[str]]:
    chosen = flag_chooser(client, "pricing-engine")
    on_new = {f"user-{n}" for n in range(users) if chosen({"targetingKey": f"user-{n}"}) == "new"}
    return len(on_new) / users, on_new


async def test_the_plan_grows_the_flag_and_users_stay_on_the_new_side(store: Store) -> None:
    clock = Clock()
    name, state = await _setup(store, clock)
    flags = FlagStore(store)
    await _run(store, clock, state, seconds=1)  # 10 % executed, its window under way
    client = await FlagClient(store).start()
    try:
        share_10, new_at_10 = _share(client)
        assert 0.07 < share_10 < 0.13
        await _run(store, clock, state, seconds=4)  # 10 % passed, 50 % executed
        await client.reload()
        share_50, new_at_50 = _share(client)
        assert 0.45 < share_50 < 0.55
        assert new_at_10 <= new_at_50, "nobody on the new side went back"
        await _run(store, clock, state, seconds=8)
        assert (await state.get(name)).status is Status.COMPLETED
        await client.reload()
        assert _share(client)[0] == 1.0
        assert (await flags.get("pricing-engine")).version == 4  # 10, 50 and 100 %
    finally:
        await client.close()


async def test_a_failing_new_implementation_rolls_the_flag_back(store: Store) -> None:
    clock = Clock()
    name, state = await _setup(store, clock)
    await _run(store, clock, state, seconds=5)  # 10 % passed, 50 % executed
    await _run(store, clock, state, seconds=3, failing=True)
    record = await state.get(name)
    assert record.status is Status.ROLLED_BACK
    client = await FlagClient(store).start()
    try:
        assert 0.07 < _share(client)[0] < 0.13  # back to the previous step, 10 %
    finally:
        await client.close()


async def test_an_abstraction_served_by_the_flag_records_what_the_gate_reads(
    store: Store,
) -> None:
    clock = Clock()
    await _setup(store, clock)
    await _run(store, clock, state=MigrationState(store, clock=clock), seconds=1)
    client = await FlagClient(store).start()
    recorder = WindowRecorder(store, replica="app-1")

    async def old(amount: float) -> float:
        return round(amount * 1.2, 2)

    async def new(amount: float) -> float:
        return round(amount * 1.2, 2)

    pricing = Abstraction(
        "pricing-engine",
        old,
        new,
        choose=flag_chooser(client, "pricing-engine"),
        recorder=recorder,
    )
    try:
        served = [await pricing.call({"targetingKey": f"user-{n}"}, 10.0) for n in range(200)]
        assert served == [12.0] * 200
        stats = pricing.stats
        assert stats["new"].calls + stats["old"].calls == 200
        assert 5 < stats["new"].calls < 40  # about 10 %
    finally:
        await recorder.close()
        await client.close()
