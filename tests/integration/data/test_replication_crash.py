"""A replicator killed with SIGKILL, mid-backfill or mid-stream, while the legacy application
keeps writing, loses nothing: `hybridmesh replicate start` runs as a real process, is
killed, and once started again (`--until-caught-up`) the new service's table holds exactly
the legacy table's rows, through the mapping. SQLite into SQLite and PostgreSQL into
PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from tests.integration.data.replication_load import (
    NAME,
    Writer,
    assert_same_rows,
    create_accounts,
    definitions,
)
from tests.waiting import eventually

from hybridmesh.core.errors import StoreError
from hybridmesh.data.control import DataControl
from hybridmesh.data.databases import open_database
from hybridmesh.store import Store, open_store

ROWS = 20_000
CHUNK = 500
WAIT = 30.0  # seconds: only a hang takes this long


@pytest.fixture
def rows() -> int:
    """The accounts in the legacy table at the start: enough for a backfill of many
    chunks, so that a kill lands in the middle of it."""
    return ROWS


@pytest.fixture
async def sides(urls: tuple[str, str], rows: int) -> AsyncIterator[tuple[Store, Store]]:
    """The legacy database, with ``rows`` accounts, and the new service's, both open."""
    source = await open_database(urls[0])
    target = await open_database(urls[1])
    try:
        await create_accounts(source, rows)
        yield source, target
    finally:
        await source.close()
        await target.close()


class ReplicatorProcess:
    """`hybridmesh replicate start` as a process of its own, on a state store of the test's
    own."""

    def __init__(self, tmp_path: Path, urls: tuple[str, str]) -> None:
        self.tmp_path = tmp_path
        self.file = tmp_path / "replications.yaml"
        self.file.write_text(definitions(*urls, chunk_size=CHUNK))
        self.store_url = f"sqlite:///{tmp_path / 'mesh.db'}"
        self.env = {
            **os.environ,
            "HYBRIDMESH_DATABASE_URL": self.store_url,
            "HYBRIDMESH_LOG_LEVEL": "WARNING",
        }
        self.runs = 0
        self.processes: list[asyncio.subprocess.Process] = []

    def _command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "hybridmesh", "replicate", "start", NAME, *args]

    async def start(self) -> asyncio.subprocess.Process:
        """Start replicating, in the background (its output goes to a file)."""
        self.runs += 1
        log = self.tmp_path / f"run-{self.runs}.log"
        with log.open("wb") as out:
            process = await asyncio.create_subprocess_exec(
                *self._command("--file", str(self.file)),
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
                env=self.env,
            )
        self.processes.append(process)
        return process

    async def close(self) -> None:
        """Kill what still runs (a test that failed half-way)."""
        for process in self.processes:
            if process.returncode is None:
                process.kill()
                await process.wait()

    async def write_until_free(self, writer: Writer) -> None:
        """Let the application write on while no replicator runs, until the killed one's
        claim on the replication has lapsed (it reports no more): only then does a new
        `start` take the replication up."""
        done = writer.committed
        store = await open_store(self.store_url, create=False)
        try:
            control = DataControl(store)

            async def free() -> bool:
                return not (await control.get(NAME)).running_now()

            await eventually(free, WAIT, "the killed process's claim lapsed")
        finally:
            await store.close()
        await eventually(
            lambda: writer.alive() and writer.committed >= done + 100,
            WAIT,
            "writes while it was down",
        )

    async def until_caught_up(self) -> dict[str, Any]:
        """Run until caught up and return the status it prints."""
        process = await asyncio.create_subprocess_exec(
            *self._command("--until-caught-up", "--json"),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self.env,
        )
        out, err = await asyncio.wait_for(process.communicate(), WAIT)
        assert process.returncode == 0, err.decode()
        status: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
        return status


@pytest.fixture
async def replicator(tmp_path: Path, urls: tuple[str, str]) -> AsyncIterator[ReplicatorProcess]:
    process = ReplicatorProcess(tmp_path, urls)
    try:
        yield process
    finally:
        await process.close()


async def kill(process: asyncio.subprocess.Process) -> None:
    os.kill(process.pid, signal.SIGKILL)
    assert await asyncio.wait_for(process.wait(), WAIT) == -signal.SIGKILL


async def progress(target: Store) -> dict[str, Any] | None:
    """What the replicator last committed in the target: its phase, the rows its backfill
    copied and its position in the log (None before it committed anything)."""
    try:
        row = await target.fetch_one(
            "SELECT s.phase, s.rows_copied, p.position FROM hm_replication_state s "
            "JOIN hm_replication_position p ON p.name = s.name WHERE s.name = ?",
            NAME,
        )
    except StoreError:  # its tables are not there yet
        return None
    return row


@pytest.fixture
async def writer(sides: tuple[Store, Store], rows: int) -> AsyncIterator[Writer]:
    """The application, writing to the legacy database from one connection on SQLite (it
    takes one writer at a time), four on PostgreSQL."""
    source = sides[0]
    writer = Writer(source, first_free_id=rows, connections=1 if source.dialect == "sqlite" else 4)
    writer.start()
    try:
        yield writer
    finally:
        await writer.close()


async def test_killed_mid_backfill_under_writes_then_restarted_loses_nothing(
    sides: tuple[Store, Store], writer: Writer, replicator: ReplicatorProcess
) -> None:
    source, target = sides
    process = await replicator.start()

    async def some_chunks_copied() -> bool:
        state = await progress(target)
        return state is not None and state["rows_copied"] >= 3 * CHUNK

    await eventually(some_chunks_copied, WAIT, "three chunks copied")
    await kill(process)
    at_kill = await progress(target)
    assert at_kill is not None and at_kill["phase"] == "backfill", at_kill
    assert at_kill["rows_copied"] < ROWS

    # The application goes on while no replicator runs, then stops for the catch-up.
    await replicator.write_until_free(writer)
    await writer.finish()
    status = await replicator.until_caught_up()

    assert status["phase"] == "streaming" and status["lag_changes"] == 0
    assert status["position"] > at_kill["position"]
    assert status["tables"][0]["rows_copied"] >= at_kill["rows_copied"]
    assert await assert_same_rows(source, target) > ROWS // 2


@pytest.mark.parametrize("rows", [5_000])  # the backfill only has to be over
async def test_killed_mid_stream_under_writes_then_restarted_loses_nothing(
    sides: tuple[Store, Store], writer: Writer, replicator: ReplicatorProcess, rows: int
) -> None:
    source, target = sides
    process = await replicator.start()

    async def streaming() -> bool:
        state = await progress(target)
        return state is not None and state["phase"] == "streaming"

    await eventually(streaming, WAIT, "the backfill done")
    first = await progress(target)
    assert first is not None

    async def streamed_on() -> bool:
        state = await progress(target)
        assert state is not None
        return bool(state["position"] > first["position"] + 200)

    await eventually(streamed_on, WAIT, "changes applied while streaming")
    await kill(process)
    at_kill = await progress(target)
    assert at_kill is not None

    await replicator.write_until_free(writer)
    await writer.finish()
    status = await replicator.until_caught_up()

    assert status["lag_changes"] == 0 and status["position"] > at_kill["position"]
    assert await assert_same_rows(source, target) > rows // 2
