"""A database_decomposition plan's data steps under the plan runner: gates that wait for the
replication, a verification that repairs, a failed data gate rolling back what its step
asked, and a replication's scheduled reconciliation."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from hybridmesh.data.capture import backlog, captured_tables, install_capture, register_consumer
from hybridmesh.data.config import parse_data
from hybridmesh.data.control import DataControl
from hybridmesh.data.databases import open_database
from hybridmesh.data.reconcile_records import ReconcileHistory
from hybridmesh.data.runner import DataSupervisor, run_stored
from hybridmesh.migration.plans import MigrationPlan, PlanSpec, build_plan
from hybridmesh.migration.runner import PlanRunner
from hybridmesh.migration.state import MigrationState, PlanRecord
from hybridmesh.store import Store, open_store


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = await open_store(f"sqlite:///{tmp_path / 'mesh.db'}")
    await s.upgrade()
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture
async def legacy_and_new(tmp_path: Path) -> AsyncIterator[tuple[Store, Store]]:
    legacy = await open_database(f"sqlite:///{tmp_path / 'legacy.db'}")
    new = await open_database(f"sqlite:///{tmp_path / 'new.db'}")
    await legacy.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
    await legacy.executemany(
        "INSERT INTO customers VALUES (?, ?)", [(n, f"c{n}") for n in range(1, 101)]
    )
    try:
        yield legacy, new
    finally:
        await legacy.close()
        await new.close()


async def define(
    store: Store,
    legacy: Store,
    new: Store,
    extra: str = "",
    tables: str = "[{source: customers}]",
) -> None:
    text = f"""
replications:
  - name: erp-customers
    source: {{url: "{legacy.url}", system: legacy-erp}}
    target: {{url: "{new.url}", system: user-service}}
    chunk_size: 25
    tables: {tables}
{extra}"""
    await DataControl(store).apply(parse_data(text, "replication.yaml"))


async def settled(
    fetch: Callable[[], Awaitable[Any]], ok: Callable[[Any], bool], seconds: float = 30
) -> Any:
    """``fetch()``'s value once ``ok`` says so; fails after ``seconds``."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + seconds
    while True:
        value = await fetch()
        if ok(value):
            return value
        assert loop.time() < give_up, f"not settled in {seconds} s: {value!r}"
        await asyncio.sleep(0.1)


def plan_of(steps: list[dict[str, Any]]) -> MigrationPlan:
    spec = PlanSpec.model_validate(
        {
            "name": "customers-out",
            "source": "legacy-erp",
            "strategy": "database_decomposition",
            "steps": steps,
        }
    )
    return build_plan(spec, {})


async def drive(
    store: Store, plan: MigrationPlan, *, supervise: bool, until: Callable[[PlanRecord], bool]
) -> PlanRecord:
    state = MigrationState(store)
    await state.save(plan, actor="test")
    await state.control(plan.name, "start", actor="test", reason=None)
    stop = asyncio.Event()
    tasks = [asyncio.create_task(PlanRunner(store, owner="test-runner").run(stop))]
    if supervise:
        tasks.append(asyncio.create_task(DataSupervisor(store, look_every=0.1).run(stop)))
    try:
        record: PlanRecord = await settled(lambda: state.get(plan.name), until)
    finally:
        stop.set()
        await asyncio.gather(*tasks)
    return record


def gate(condition: str, **more: Any) -> dict[str, Any]:
    return {"replication": "erp-customers", "condition": condition, "interval": 0.2, **more}


async def test_the_data_steps_wait_for_the_replication_and_verification_repairs(
    store: Store, legacy_and_new: tuple[Store, Store]
) -> None:
    legacy, new = legacy_and_new
    await define(store, legacy, new)
    await new.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
    await new.execute("INSERT INTO customers VALUES (999, 'left over from a test')")
    plan = plan_of(
        [
            {
                "name": "replicate",
                "type": "data",
                "action": {
                    "do": "set_replication",
                    "replication": "erp-customers",
                    "desired": "running",
                },
                "until": gate("running"),
            },
            {
                "name": "backfill",
                "type": "data",
                "action": {"do": "check"},
                "until": gate("backfilled", max_lag_changes=0),
            },
            {
                "name": "verify",
                "type": "validation",
                "action": {"do": "check"},
                "until": gate("reconciled"),
            },
        ]
    )

    record = await drive(store, plan, supervise=True, until=lambda r: r.status.ended)

    assert record.status.value == "completed"
    rows = await new.fetch_all("SELECT id, name FROM customers ORDER BY id")
    assert rows == await legacy.fetch_all("SELECT id, name FROM customers ORDER BY id")
    (run,) = await ReconcileHistory(store).runs("erp-customers")
    assert (run.extra, run.repaired, run.remaining) == (1, 1, 0)


async def test_a_failed_data_gate_rolls_back_what_its_step_asked(
    store: Store, legacy_and_new: tuple[Store, Store]
) -> None:
    """Nobody runs the replication, so reverse sync never starts: the step fails once its
    timeout is up, and its rollback turns reverse sync off and stops the replication."""
    legacy, new = legacy_and_new
    await define(store, legacy, new)
    plan = plan_of(
        [
            {
                "name": "reverse sync",
                "type": "data",
                "action": {
                    "do": "set_replication",
                    "replication": "erp-customers",
                    "desired": "running",
                    "reverse": True,
                },
                "until": gate("reverse_running", timeout=1),
            }
        ]
    )

    record = await drive(store, plan, supervise=False, until=lambda r: r.status.ended)

    assert record.status.value == "rolled_back"
    assert record.reason is not None and "not reverse_running within 1 s" in record.reason
    assert "no process runs replication" in record.reason
    stored = await DataControl(store).get("erp-customers")
    assert stored.desired == "stopped" and stored.reverse is False


async def test_a_step_naming_an_unknown_replication_pauses_the_plan(store: Store) -> None:
    plan = plan_of(
        [
            {
                "name": "replicate",
                "type": "data",
                "action": {"do": "set_replication", "replication": "nowhere", "desired": "running"},
                "until": {"replication": "nowhere", "condition": "running"},
            }
        ]
    )

    record = await drive(store, plan, supervise=False, until=lambda r: r.status.value == "paused")

    assert record.reason is not None and "no replication 'nowhere'" in record.reason


async def test_a_scheduled_reconciliation_repairs_drift_while_the_replication_runs(
    store: Store, legacy_and_new: tuple[Store, Store]
) -> None:
    legacy, new = legacy_and_new
    await define(store, legacy, new, extra="    reconcile: {every: 0.3, repair: true}\n")
    control = DataControl(store)
    await control.set_desired("erp-customers", "running")
    stop = asyncio.Event()
    running = asyncio.create_task(run_stored(store, "erp-customers", stop=stop))
    try:
        await settled(
            lambda: control.get("erp-customers"),
            lambda r: (r.status or {}).get("phase") == "streaming",
        )
        await new.execute("UPDATE customers SET name = 'drifted' WHERE id = 7")
        await settled(
            lambda: new.fetch_value("SELECT name FROM customers WHERE id = 7"),
            lambda name: name == "c7",
        )
    finally:
        stop.set()
        await running
    runs = await ReconcileHistory(store).runs("erp-customers")
    assert any(run.different == 1 and run.repaired == 1 for run in runs)


async def test_retiring_keeps_the_capture_an_event_bridge_still_reads(
    store: Store, legacy_and_new: tuple[Store, Store]
) -> None:
    legacy, new = legacy_and_new
    await legacy.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, total INTEGER)")
    await define(store, legacy, new, tables="[{source: customers}, {source: orders}]")
    bridge = f"""bridges:
  - name: erp-events
    source: {{url: "{legacy.url}", system: legacy-erp}}
    prefix: erp
    tables: [customers]
"""
    control = DataControl(store)
    await control.apply(parse_data(bridge, "bridges.yaml"))
    await control.set_desired("erp-events", "running")
    # As the replication (both ways) and the bridge left the two databases:
    await install_capture(legacy, ["customers", "orders"])
    await register_consumer(legacy, "erp-customers")
    await register_consumer(legacy, "erp-events")
    await new.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
    await new.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, total INTEGER)")
    await install_capture(new, ["customers", "orders"])
    await register_consumer(new, "erp-customers-reverse")
    plan = plan_of(
        [
            {
                "name": "retire",
                "type": "data",
                "action": {"do": "retire_replication", "replication": "erp-customers"},
            }
        ]
    )

    record = await drive(store, plan, supervise=False, until=lambda r: r.status.ended)

    assert record.status.value == "completed"
    assert await captured_tables(legacy) == ["customers"]  # the bridge still reads it
    assert await captured_tables(new) == []
    assert set((await backlog(legacy)).consumers) == {"erp-events"}
    assert (await backlog(new)).consumers == {}
    stored = await control.get("erp-customers")
    assert stored.desired == "stopped" and not stored.reverse
