"""One conformance suite for the engine's recorders (one per database).

A test module subclasses :class:`RecorderConformance` as ``Test…`` and provides a
``database_url`` fixture: a fresh, empty database of the recorder's kind. The suite writes
through :func:`~hybridmesh.orchestration.recorders.recorder_for`, with the event log's
recorder for the same store, and reads what landed with plain queries.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from hybridmesh.core.serialization import loads
from hybridmesh.events import CloudEvent
from hybridmesh.events.backends.sql import LogRow, SqlEventBackend
from hybridmesh.events.outbox import Outbox
from hybridmesh.orchestration._machine import Record
from hybridmesh.orchestration.recorders import (
    Change,
    ExecutionRecorder,
    Save,
    Start,
    history_rows,
    recorder_for,
)
from hybridmesh.store import Store, open_store

NOW = 1_000.0
ME = "worker-a"
OTHER = "worker-b"


def start(execution_id: str, *, owner: str | None = ME, wake_at: float = NOW) -> Change:
    """A new execution held by ``owner`` (due at ``wake_at``), with one history record."""
    head = Start(
        id=execution_id,
        kind="saga",
        name="order",
        version=1,
        status="running",
        input='{"order_id": "o-1"}',
        state='{"steps": {}, "context": {}}',
        trace_context=None,
        wake_at=wake_at,
        lease_owner=owner,
        lease_until=NOW + 30 if owner else None,
        history_seq=1,
        created_at=NOW,
    )
    return Change(head, history_rows(execution_id, 0, [Record("execution.started")], NOW))


def save(
    execution_id: str,
    *,
    status: str | None = None,
    release: bool = False,
    wake: float | None = None,
    seq: int = 1,
    records: tuple[str, ...] = (),
    owner: str = ME,
    now: float = NOW + 1,
) -> Change:
    """A save by ``owner`` (held when ``status`` is None) with history ``records``."""
    head = Save(
        id=execution_id,
        status=status,
        state='{"steps": {}, "context": {"saved": true}}',
        error=None,
        history_seq=seq + len(records),
        now=now,
        ended_at=now if status in ("completed", "failed") else None,
        release=release,
        wake=wake,
        owner=owner,
    )
    rows = history_rows(execution_id, seq, [Record(type_) for type_ in records], now)
    return Change(head, rows)


class RecorderConformance:
    """The behaviour every recorder of the engine must show."""

    @pytest.fixture
    async def store(self, database_url: str) -> AsyncIterator[Store]:
        opened = await open_store(database_url)
        await opened.upgrade()
        try:
            yield opened
        finally:
            await opened.close()

    @pytest.fixture
    def log(self, store: Store) -> SqlEventBackend:
        return SqlEventBackend(store)

    @pytest.fixture
    def recorder(self, store: Store, log: SqlEventBackend) -> ExecutionRecorder:
        return recorder_for(store, log.recorder)

    async def row(self, store: Store, execution_id: str) -> dict[str, Any]:
        found = await store.fetch_one(
            "SELECT status, state, history_seq, wake_at, lease_owner, lease_until, ended_at, "
            "signals FROM orch_executions WHERE id = ?",
            execution_id,
        )
        assert found is not None
        return found

    async def history(self, store: Store, execution_id: str) -> list[str]:
        rows = await store.fetch_all(
            "SELECT type FROM orch_history WHERE execution_id = ? ORDER BY seq", execution_id
        )
        return [row["type"] for row in rows]

    def events(self, log: SqlEventBackend, *subjects: str) -> list[LogRow]:
        made = [
            CloudEvent.create("saga.completed", "/tests", {"saga_id": s}, subject=s)
            for s in subjects
        ]
        return log.log_rows(made)

    async def logged(self, store: Store) -> list[str]:
        rows = await store.fetch_all("SELECT body FROM event_log ORDER BY seq")
        return [loads(row["body"])["subject"] for row in rows]

    # -- starts ------------------------------------------------------------------------

    async def test_a_start_writes_the_execution_and_its_history_once(
        self, recorder: ExecutionRecorder, store: Store
    ) -> None:
        assert await recorder.write([start("e1")]) == [False]
        again = start("e1")
        again.history[0].type = "execution.again"
        assert await recorder.write([again]) == [None]  # already started: nothing of it
        row = await self.row(store, "e1")
        assert (row["status"], row["lease_owner"], row["history_seq"]) == ("running", ME, 1)
        assert await self.history(store, "e1") == ["execution.started"]

    async def test_of_two_starts_of_one_id_in_a_batch_the_first_counts(
        self, recorder: ExecutionRecorder, store: Store
    ) -> None:
        second = start("e1", owner=OTHER)
        assert await recorder.write([start("e1"), second, start("e2")]) == [False, None, False]
        assert (await self.row(store, "e1"))["lease_owner"] == ME

    # -- saves -------------------------------------------------------------------------

    async def test_a_save_counts_only_while_its_worker_holds_the_lease(
        self, recorder: ExecutionRecorder, store: Store, log: SqlEventBackend
    ) -> None:
        await recorder.write([start("mine"), start("theirs", owner=OTHER)])
        kept = save("mine", status="completed", release=True, records=("execution.completed",))
        lost = save("theirs", status="completed", release=True, records=("execution.completed",))
        kept.events = self.events(log, "mine")
        lost.events = self.events(log, "theirs")
        assert await recorder.write([lost, kept]) == [None, False]
        mine, theirs = await self.row(store, "mine"), await self.row(store, "theirs")
        assert (mine["status"], mine["lease_owner"], mine["ended_at"]) == (
            "completed",
            None,
            NOW + 1,
        )
        assert (theirs["status"], theirs["lease_owner"]) == ("running", OTHER)
        assert await self.history(store, "mine") == ["execution.started", "execution.completed"]
        assert await self.history(store, "theirs") == ["execution.started"]
        assert await self.logged(store) == ["mine"]

    async def test_a_held_save_writes_the_state_and_keeps_status_due_time_and_lease(
        self, recorder: ExecutionRecorder, store: Store
    ) -> None:
        await recorder.write([start("e1", wake_at=123.0)])
        assert await recorder.write([save("e1", records=("step.started",))]) == [False]
        row = await self.row(store, "e1")
        assert loads(row["state"])["context"] == {"saved": True}
        assert (row["status"], row["wake_at"], row["lease_owner"]) == ("running", 123.0, ME)
        assert row["history_seq"] == 2

    async def test_a_release_ends_the_lease_and_sets_the_due_time(
        self, recorder: ExecutionRecorder, store: Store
    ) -> None:
        await recorder.write([start("e1")])
        await recorder.write([save("e1", status="running", release=True, wake=5_000.0)])
        row = await self.row(store, "e1")
        assert (row["lease_owner"], row["lease_until"], row["wake_at"]) == (None, None, 5_000.0)

    async def test_a_save_reports_signals_and_deletes_those_it_consumed(
        self, recorder: ExecutionRecorder, store: Store
    ) -> None:
        await recorder.write([start("e1")])
        for signal in ("s1", "s2"):
            await store.execute(
                "INSERT INTO orch_signals (id, execution_id, kind, step_id, data, at) "
                "VALUES (?, 'e1', 'cancel', NULL, NULL, ?)",
                signal,
                NOW,
            )
        consumed = save("e1")
        consumed.consumed = ["s1"]
        assert await recorder.write([consumed]) == [True]  # s2 still waits
        left = await store.fetch_all("SELECT id FROM orch_signals")
        assert [row["id"] for row in left] == ["s2"]
        # Released while a signal waits: due now, not at its wake time.
        release = save("e1", status="running", release=True, wake=9_000.0, now=NOW + 2)
        assert await recorder.write([release]) == [True]
        row = await self.row(store, "e1")
        assert (row["lease_owner"], row["wake_at"], row["signals"]) == (None, NOW + 2, 1)

    async def test_other_rows_of_a_change_count_only_with_its_head(
        self, recorder: ExecutionRecorder, store: Store
    ) -> None:
        outbox = Outbox(store)
        await recorder.write([start("mine"), start("theirs", owner=OTHER)])
        kept, lost = save("mine"), save("theirs")
        kept.rows = [outbox.statement([CloudEvent.create("a.b", "/tests", {"to": "mine"})])]
        lost.rows = [outbox.statement([CloudEvent.create("a.b", "/tests", {"to": "theirs"})])]
        assert await recorder.write([kept, lost]) == [False, None]
        bodies = await store.fetch_all("SELECT body FROM event_outbox")
        assert [loads(row["body"])["data"] for row in bodies] == [{"to": "mine"}]

    # -- leases ------------------------------------------------------------------------

    async def test_a_claim_takes_due_executions_no_live_lease_holds(
        self, recorder: ExecutionRecorder, store: Store
    ) -> None:
        await recorder.write(
            [
                start("free", owner=None),
                start("later", owner=None, wake_at=NOW + 100),
                start("held", owner=OTHER),
            ]
        )
        claimed = await recorder.claim(ME, NOW + 30, NOW + 1, 10)
        assert [row["id"] for row in claimed] == ["free"]
        assert claimed[0]["history_seq"] == 1
        # The leases expire: executions whose holder died are claimed before new ones.
        await recorder.write([start("new", owner=None)])
        claimed = await recorder.claim(ME, NOW + 90, NOW + 60, 2)
        assert sorted(row["id"] for row in claimed) == ["free", "held"]
        claimed = await recorder.claim(ME, NOW + 90, NOW + 60, 2)
        assert [row["id"] for row in claimed] == ["new"]

    async def test_renewing_and_releasing_cover_every_lease_of_a_worker(
        self, recorder: ExecutionRecorder, store: Store
    ) -> None:
        await recorder.write([start("a"), start("b"), start("c", owner=OTHER)])
        renewed = await recorder.renew(ME, NOW + 300)
        assert sorted(row["id"] for row in renewed) == ["a", "b"]
        assert (await self.row(store, "a"))["lease_until"] == NOW + 300
        await recorder.release_all(ME, NOW + 5)
        for execution_id in ("a", "b"):
            row = await self.row(store, execution_id)
            assert (row["lease_owner"], row["wake_at"]) == (None, NOW + 5)
        assert (await self.row(store, "c"))["lease_owner"] == OTHER
        assert await recorder.reclaim("a", OTHER, NOW + 60) is False
        assert (await self.row(store, "a"))["lease_owner"] == OTHER
        assert await recorder.reclaim("c", ME, NOW + 60) is False  # held: not taken
        assert (await self.row(store, "c"))["lease_owner"] == OTHER
