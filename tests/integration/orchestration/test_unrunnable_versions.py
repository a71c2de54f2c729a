"""Executions whose stored definition version can no longer be read or built: they end
failed and go to review, once, and the worker goes on with the others. On SQLite and
PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from tests.integration.orchestration.conftest import Rig, until
from tests.integration.orchestration.test_engine import ORDER, events_of, saga, saga_step

from hybridmesh.core.errors import StoreError
from hybridmesh.core.serialization import dumps, loads
from hybridmesh.orchestration import Orchestrator, Status
from hybridmesh.orchestration.catalog import DefinitionCatalog, UnrunnableDefinitionError


def infinite_multiplier(body: str) -> str:
    """What JSON made of ``multiplier: .inf`` in a release that stored it unchecked."""
    plan = loads(body)
    plan["steps"][0]["retry"]["multiplier"] = None
    return dumps(plan)


def cut_short(body: str) -> str:
    """A stored body that is no longer JSON."""
    return body[: len(body) // 2]


BROKEN: dict[str, tuple[Callable[[str], str], str]] = {
    "an infinite multiplier, stored as null": (
        infinite_multiplier,
        "[steps[0].retry.multiplier] must be a number",
    ),
    "a body that is not JSON": (cut_short, "its stored body is not JSON"),
}


async def break_version(rig: Rig, name: str, version: int, change: Callable[[str], str]) -> None:
    body = await rig.store.fetch_value(
        "SELECT body FROM orch_definitions WHERE kind = 'saga' AND name = ? AND version = ?",
        name,
        version,
    )
    await rig.store.execute(
        "UPDATE orch_definitions SET body = ? WHERE kind = 'saga' AND name = ? AND version = ?",
        change(str(body)),
        name,
        version,
    )


async def recorded_by_an_older_release(rig: Rig, change: Callable[[str], str]) -> tuple[str, str]:
    """An execution of ORDER whose version is then broken in the store, and one of another
    saga that is fine; both recorded by an engine that runs no worker, as a release that
    read the version could have. Their ids."""
    older = rig.engine()
    await older.register(ORDER)
    await older.register(saga(saga_step("greet", "users"), name="greeting"))
    broken = await older.start_saga("order", {"order_id": "o-1"})
    healthy = await older.start_saga("greeting", {"order_id": "o-2"})
    await break_version(rig, "order", 1, change)
    return broken, healthy


def newer_release(rig: Rig) -> Orchestrator:
    """An engine that has not read any version yet, with a short lease."""
    rig.catalog = DefinitionCatalog(rig.store)
    return rig.engine(lease_seconds=0.3)


@pytest.mark.parametrize("broken", list(BROKEN))
async def test_an_execution_whose_version_cannot_be_read_fails_into_review_once(
    rig: Rig, broken: str
) -> None:
    change, problem = BROKEN[broken]
    broken_id, healthy_id = await recorded_by_an_older_release(rig, change)
    engine = newer_release(rig)

    async with engine:
        done = await engine.wait(broken_id, timeout=10)
        healthy = await engine.wait(healthy_id, timeout=10)
        published = await events_of(rig, "saga.failed")

    assert healthy.status is Status.COMPLETED
    assert done.status is Status.FAILED
    assert done.error is not None
    assert done.error.startswith("saga 'order' version 1 cannot run: ")
    assert problem in done.error
    # Ended for good: no worker claims it again.
    stored = await rig.store.fetch_one(
        "SELECT wake_at, lease_owner, ended_at FROM orch_executions WHERE id = ?", broken_id
    )
    assert stored is not None
    assert (stored["wake_at"], stored["lease_owner"]) == (None, None)
    assert stored["ended_at"] is not None
    history = [(h.type, h.data) for h in await engine.history(broken_id)]
    assert history[0][0] == "execution.started"
    assert history[-1] == ("execution.failed", {"reason": done.error})
    # Nothing of it was called.
    assert "/operations/reserve" not in rig.ops.paths()
    assert "/operations/greet" in rig.ops.paths()

    (item,) = await rig.review.list(origin="saga")
    assert item.origin_ref == broken_id
    assert item.reason == done.error
    assert item.payload["execution_id"] == broken_id
    assert (item.payload["definition"], item.payload["version"]) == ("order", 1)
    assert item.payload["input"] == {"order_id": "o-1"}
    assert any(problem in p for p in item.payload["problems"])

    failed = [data for kind, data in published if kind == "saga.failed"]
    assert [data["saga_id"] for data in failed] == [broken_id]
    assert failed[0]["reason"] == done.error

    # Starting it again is refused with the same reason, and starts nothing.
    with pytest.raises(UnrunnableDefinitionError, match=r"saga 'order' version 1 cannot run"):
        await engine.start_saga("order", {"order_id": "o-3"})


async def test_a_worker_that_claims_it_again_ends_nothing_twice(rig: Rig) -> None:
    """A signal that reached the execution as it ended makes it due once more: the worker
    consumes it and lets go, without a second ending or review item."""
    broken_id, _ = await recorded_by_an_older_release(rig, cut_short)
    engine = newer_release(rig)
    async with engine:
        done = await engine.wait(broken_id, timeout=10)
        ended = await rig.store.fetch_one(
            "SELECT error, ended_at, history_seq FROM orch_executions WHERE id = ?", broken_id
        )
        await rig.store.execute(
            "INSERT INTO orch_signals (id, execution_id, kind, step_id, data, at) "
            "VALUES ('late', ?, 'cancel', NULL, NULL, 0)",
            broken_id,
        )
        await rig.store.execute(
            "UPDATE orch_executions SET signals = 1, wake_at = 0 WHERE id = ?", broken_id
        )
        engine._worker.poke()

        async def let_go() -> bool:
            waiting = await rig.store.fetch_value(
                "SELECT COUNT(*) FROM orch_signals WHERE execution_id = ?", broken_id
            )
            row = await rig.store.fetch_one(
                "SELECT wake_at, lease_owner FROM orch_executions WHERE id = ?", broken_id
            )
            assert row is not None
            return not waiting and row["wake_at"] is None and row["lease_owner"] is None

        await until(let_go)

    again = await rig.store.fetch_one(
        "SELECT status, error, ended_at, history_seq, wake_at, lease_owner FROM orch_executions "
        "WHERE id = ?",
        broken_id,
    )
    assert ended is not None and again is not None
    assert again["status"] == Status.FAILED.value == done.status.value
    assert (again["error"], again["ended_at"], again["history_seq"]) == (
        ended["error"],
        ended["ended_at"],
        ended["history_seq"],
    )
    assert (again["wake_at"], again["lease_owner"]) == (None, None)
    assert len(await rig.review.list(origin="saga")) == 1


async def test_an_execution_whose_state_cannot_be_read_fails_and_the_others_run(
    rig: Rig,
) -> None:
    broken_id, healthy_id = await recorded_by_an_older_release(rig, lambda body: body)
    stored_state = "{'steps': not json"
    await rig.store.execute(
        "UPDATE orch_executions SET state = ? WHERE id = ?", stored_state, broken_id
    )
    engine = newer_release(rig)

    async def ended() -> bool:
        status = await rig.store.fetch_value(
            "SELECT status FROM orch_executions WHERE id = ?", broken_id
        )
        return status != Status.RUNNING.value

    async with engine:
        healthy = await engine.wait(healthy_id, timeout=10)
        await until(ended)  # its view cannot be read until it has ended
    done = await engine.get(broken_id)

    assert healthy.status is Status.COMPLETED
    assert done.status is Status.FAILED
    assert done.error is not None
    assert done.error.startswith("saga 'order' version 1: its stored state cannot be read: ")
    (item,) = await rig.review.list(origin="saga")
    assert (item.origin_ref, item.reason) == (broken_id, done.error)
    # What was stored is kept for whoever looks into it.
    assert item.payload["stored_state"] == stored_state


async def test_a_definition_that_fails_to_load_once_is_let_go_and_runs_later(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read that fails for another reason (the store, say) may work next time: the
    execution is let go, not held (and renewed with the others) while the worker is busy."""
    older = rig.engine()
    await older.register(ORDER)
    await older.register(saga(saga_step("greet", "users"), name="greeting"))
    busy_id = await older.start_saga("greeting", {"order_id": "o-1"})
    flaky_id = await older.start_saga("order", {"order_id": "o-2"})
    held = rig.ops.gates["/operations/greet"] = asyncio.Event()  # in flight until set
    engine = newer_release(rig)
    read = engine.catalog.get
    failed: list[str] = []

    async def get_once_failing(kind: Any, name: str, version: int | None = None) -> Any:
        if name == "order" and not failed:
            failed.append(name)
            raise StoreError("the database went away for a moment")
        return await read(kind, name, version)

    monkeypatch.setattr(engine.catalog, "get", get_once_failing)

    async with engine:
        try:
            done = await engine.wait(flaky_id, timeout=10)
            busy = await engine.get(busy_id)
        finally:
            held.set()
        busy_done = await engine.wait(busy_id, timeout=10)

    assert failed == ["order"]
    assert done.status is Status.COMPLETED
    assert busy.status is Status.RUNNING  # the worker drove it all along
    assert busy_done.status is Status.COMPLETED
    assert await rig.review.list() == []
