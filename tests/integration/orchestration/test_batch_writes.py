"""The engine's batched writes: in a batch shared by several executions, a change counts
only when its execution's row was written, on SQLite and PostgreSQL alike."""

from __future__ import annotations

from tests.integration.orchestration.conftest import Rig
from tests.integration.orchestration.test_engine import ORDER

from hybridmesh.core.serialization import loads
from hybridmesh.orchestration import Status
from hybridmesh.orchestration._machine import Record
from hybridmesh.orchestration.engine import Orchestrator
from hybridmesh.orchestration.recorders import Change, Save, history_rows


def ending(engine: Orchestrator, execution_id: str, seq: int) -> Change:
    """What a driver writes when the execution completes: the lease-checked save, its
    history record and its event."""
    now = engine._now()
    save = Save(
        execution_id,
        Status.COMPLETED.value,
        '{"steps": {}, "context": {}}',
        None,
        seq + 1,
        now,
        now,
        True,
        None,
        engine.worker_id,
    )
    history = history_rows(execution_id, seq, [Record("execution.completed")], now)
    change = Change(save, history)
    event = engine._writer.event(ORDER, execution_id, None, "completed", {})
    assert event is not None
    event.attach(change)
    return change


async def two_leased(rig: Rig, engine: Orchestrator) -> tuple[str, str]:
    """Two running orders, the first held by ``engine``'s worker, the second by another
    worker; both due since 123.0."""
    await engine.register(ORDER)
    mine = await engine.start_saga("order", {"order_id": "o-1"}, execution_id="mine")
    theirs = await engine.start_saga("order", {"order_id": "o-2"}, execution_id="theirs")
    for execution_id, owner in ((mine, engine.worker_id), (theirs, "other-worker")):
        await rig.store.execute(
            "UPDATE orch_executions SET lease_owner = ?, lease_until = ?, wake_at = ? WHERE id = ?",
            owner,
            engine._now() + 30,
            123.0,
            execution_id,
        )
    return mine, theirs


async def test_a_change_whose_lease_was_lost_writes_nothing_of_its_batch(rig: Rig) -> None:
    engine = rig.engine()
    kept, lost = await two_leased(rig, engine)
    seq = {
        row["id"]: row["history_seq"]
        for row in await rig.store.fetch_all("SELECT id, history_seq FROM orch_executions")
    }
    results = await engine.recorder.write(
        [ending(engine, lost, seq[lost]), ending(engine, kept, seq[kept])]
    )
    assert results == [None, False]  # lost: not saved; kept: saved, no signals wait
    assert (await engine.get(kept)).status is Status.COMPLETED
    assert (await engine.get(lost)).status is Status.RUNNING
    assert [h.type for h in await engine.history(lost)][-1] == "execution.started"
    assert [h.type for h in await engine.history(kept)][-1] == "execution.completed"
    completed = await rig.store.fetch_all(
        "SELECT body FROM event_log WHERE type = 'saga.completed'"
    )
    assert [loads(row["body"])["data"]["saga_id"] for row in completed] == [kept]


def held(engine: Orchestrator, execution_id: str, state: str, seq: int) -> Change:
    """The save of a worker that keeps the lease and the status (a step's outcome)."""
    now = engine._now()
    save = Save(execution_id, None, state, None, seq, now, None, False, None, engine.worker_id)
    return Change(save, [])


async def test_a_held_save_writes_the_state_and_leaves_due_time_status_and_lease(
    rig: Rig,
) -> None:
    engine = rig.engine()
    mine, theirs = await two_leased(rig, engine)
    state = '{"steps": {}, "context": {"saved": true}}'
    results = await engine.recorder.write(
        [held(engine, mine, state, 7), held(engine, theirs, state, 7)]
    )
    assert results == [False, None]  # theirs: another worker holds it
    rows = {
        row["id"]: row
        for row in await rig.store.fetch_all(
            "SELECT id, status, state, history_seq, wake_at, lease_owner FROM orch_executions"
        )
    }
    assert loads(rows[mine]["state"])["context"] == {"saved": True}
    assert rows[mine]["history_seq"] == 7
    # Still due since its old wake time, so claimed again if this worker dies holding it.
    assert (rows[mine]["status"], rows[mine]["wake_at"]) == ("running", 123.0)
    assert rows[mine]["lease_owner"] == engine.worker_id
    assert rows[theirs]["history_seq"] != 7
