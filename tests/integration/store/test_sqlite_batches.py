"""SQLite batches: small ones commit on the event loop's thread, and that must not cost
waiting for other writers, in-memory databases or checkpoints."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tests.waiting import eventually

from hybridmesh.store import Statement, open_store
from hybridmesh.store import sqlite as sqlite_store

INSERT = (
    "INSERT INTO services (name, architecture, version, base_url, definition, updated_at) "
    "VALUES (?, 'microservice', 'v1', 'http://x', ?, 'now')"
)


def row(name: str, size: int = 10) -> Statement:
    return Statement(INSERT, (name, "x" * size))


async def test_a_batch_waits_for_another_writer_then_commits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "mesh.db"
    async with await open_store(f"sqlite:///{path}") as store:
        await store.upgrade()
        on_thread = threading.Event()  # the batch went to the worker thread to wait
        call = store._call  # type: ignore[attr-defined]

        async def watched(sql: str, work: Callable[[sqlite3.Connection], Any]) -> Any:
            def run(conn: sqlite3.Connection) -> Any:
                on_thread.set()
                return work(conn)

            return await call(sql, run)

        monkeypatch.setattr(store, "_call", watched)
        other = sqlite3.connect(path, isolation_level=None)  # another process, as SQLite sees it
        try:
            other.execute("BEGIN IMMEDIATE")
            other.execute(INSERT, ("theirs", "{}"))
            batch = asyncio.create_task(store.batch([row("ours")]))
            await eventually(on_thread.is_set, what="the batch waiting on the worker thread")
            assert not batch.done()  # waiting for the lock, not failed
            other.execute("COMMIT")
            assert await batch == [1]
        finally:
            other.close()
        names = await store.fetch_all("SELECT name FROM services ORDER BY name")
        assert [r["name"] for r in names] == ["ours", "theirs"]


async def test_batches_on_an_in_memory_database_are_its_own(tmp_path: Path) -> None:
    async with await open_store("sqlite:///:memory:") as store:
        await store.upgrade()
        assert await store.batch([row("a"), row("b")]) == [1, 1]
        assert await store.fetch_value("SELECT COUNT(*) FROM services") == 2


async def test_small_batches_reach_the_database_file_by_checkpoints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_store, "WAL_CHECKPOINT_PAGES", 64)  # 256 KiB
    path, wal = tmp_path / "mesh.db", tmp_path / "mesh.db-wal"
    async with await open_store(f"sqlite:///{path}") as store:
        await store.upgrade()
        empty = path.stat().st_size
        for n in range(1_500):
            await store.batch([row(f"svc-{n:05d}", size=2_000)])
            checkpoint = store._checkpointing  # type: ignore[attr-defined]
            if n % 10 == 0 and checkpoint is not None:
                # The checkpoint runs beside the writes; here it gets its turn however busy
                # the machine is.
                await checkpoint
        await store.fetch_value("SELECT 1")  # queued on the thread after any checkpoint
        # Some 3 MB were committed; without checkpoints they would all be in the WAL.
        assert path.stat().st_size - empty > 1_000_000
        assert wal.stat().st_size < 2_000_000  # it started over, too
        assert await store.fetch_value("SELECT COUNT(*) FROM services") == 1_500
