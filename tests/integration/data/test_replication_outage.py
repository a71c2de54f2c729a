"""The legacy PostgreSQL database goes away for a while (every session ended, no new one
taken, as when its server restarts) while a replication backfills or streams under the
application's writes: run as `hybridmesh replicate start` runs it, the replication waits,
reconnects and loses nothing. Paused or asked to stop while the source is away, it neither
fails nor ends by itself; and preparing again after reconnecting does not deadlock with the
application's transactions."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from tests.integration.data.replication_load import (
    NAME,
    Writer,
    assert_same_rows,
    create_accounts,
    definitions,
)
from tests.pg_outage import bring_back, take_down
from tests.waiting import eventually

from hybridmesh.core.errors import StoreError
from hybridmesh.data.capture import sequence_changes
from hybridmesh.data.config import parse_data
from hybridmesh.data.control import DataControl
from hybridmesh.data.databases import open_database
from hybridmesh.data.replication import Desired, ReplicationStatus, Replicator
from hybridmesh.data.runner import run_stored
from hybridmesh.store import Store, open_store

pytestmark = pytest.mark.postgres

ROWS = 5_000


@pytest.fixture
async def sides(postgres_url: str, second_postgres_url: str) -> AsyncIterator[tuple[Store, Store]]:
    """The legacy database and the new service's, open."""
    source = await open_database(postgres_url)
    target = await open_database(second_postgres_url)
    try:
        yield source, target
    finally:
        await source.close()
        await target.close()


@pytest.fixture
async def mesh(tmp_path: Path) -> AsyncIterator[Store]:
    """The state store the replication is defined in."""
    store = await open_store(f"sqlite:///{tmp_path / 'mesh.db'}")
    await store.upgrade()
    try:
        yield store
    finally:
        await store.close()


class Running:
    """Replication :data:`NAME` run by :func:`run_stored` in a task, with every status it
    reported."""

    def __init__(self, mesh: Store) -> None:
        self.stop = asyncio.Event()
        self.statuses: list[dict[str, Any]] = []
        self.task = asyncio.create_task(
            run_stored(mesh, NAME, stop=self.stop, on_status=self._seen)
        )

    async def _seen(self, status: dict[str, Any]) -> None:
        self.statuses.append(status)

    @property
    def position(self) -> int:
        return int(self.statuses[-1]["position"]) if self.statuses else 0

    def alive(self) -> bool:
        if self.task.done():
            self.task.result()  # its error, if it failed
            raise AssertionError("the replication ended by itself")
        return True

    async def finish(self) -> dict[str, Any]:
        self.stop.set()
        return await self.task

    async def close(self) -> None:
        """End it however the test went (its outcome was asserted, or does not matter)."""
        self.stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.task, 30)


@contextlib.asynccontextmanager
async def running_replication(mesh: Store) -> AsyncIterator[Running]:
    running = Running(mesh)
    try:
        yield running
    finally:
        await running.close()


async def caught_up(source: Store, target: Store) -> bool:
    """Whether the replication, as committed in the target, is done with its backfill and
    has read the source's log to its head."""
    try:
        backfilling = await target.fetch_value(
            "SELECT COUNT(*) FROM hm_replication_state WHERE name = ? AND phase = 'backfill'",
            NAME,
        )
        position = await target.fetch_value(
            "SELECT position FROM hm_replication_position WHERE name = ?", NAME
        )
    except StoreError:  # its tables are not there yet
        return False
    head = await sequence_changes(source)
    return not backfilling and position is not None and int(position) == head


async def define(mesh: Store, source_url: str, target_url: str, **sizes: int) -> DataControl:
    """Store replication :data:`NAME` and ask for it to run."""
    control = DataControl(mesh)
    await control.apply(
        parse_data(definitions(source_url, target_url, **sizes), "replications.yaml")
    )
    await control.set_desired(NAME, "running")
    return control


@pytest.mark.parametrize("phase", ["backfill", "streaming"])
async def test_the_source_going_away_mid_replication_loses_nothing(
    phase: str,
    sides: tuple[Store, Store],
    postgres_url: str,
    second_postgres_url: str,
    pg_admin: Any,
    mesh: Store,
) -> None:
    source, target = sides
    await create_accounts(source, ROWS)
    chunk = 100 if phase == "backfill" else 1_000
    control = await define(mesh, postgres_url, second_postgres_url, chunk_size=chunk)
    writer = Writer(source, first_free_id=ROWS, connections=4, tolerate_outage=True)
    writer.start()
    try:
        async with running_replication(mesh) as running:

            def in_phase() -> bool:
                return (
                    running.alive()
                    and bool(running.statuses)
                    and running.statuses[-1]["phase"] == phase
                    and running.position > 0
                )

            await eventually(in_phase, what=f"the replication in its {phase}")
            before = running.position
            await take_down(pg_admin, postgres_url)
            assert phase == await target.fetch_value(
                "SELECT phase FROM hm_replication_state WHERE name = ?", NAME
            )
            await asyncio.sleep(2)  # the source stays away a while
            assert running.alive()
            await bring_back(pg_admin, postgres_url)
            assert writer.refused > 0  # the application did find the database away

            # It comes back by itself, and goes on while the application writes.
            committed = writer.committed
            await eventually(
                lambda: running.alive() and writer.alive() and writer.committed > committed + 200,
                what="writes after the source came back",
            )
            resumed = running.position
            await eventually(
                lambda: running.alive() and running.position > resumed,
                what="changes applied after the source came back",
            )
            await writer.finish()
            await eventually(lambda: caught_up(source, target), what="the replication caught up")
            last = await running.finish()
    finally:
        await writer.close()

    assert last["phase"] == "streaming" and last["lag_changes"] == 0
    positions = [s["position"] for s in running.statuses]
    assert positions == sorted(positions) and positions[-1] > before
    assert await assert_same_rows(source, target) > ROWS // 2
    assert (await control.get(NAME)).heartbeat_at is None  # it let go at the end


async def test_a_paused_replication_outlives_the_source_going_away_and_can_stop_meanwhile(
    sides: tuple[Store, Store],
    postgres_url: str,
    second_postgres_url: str,
    pg_admin: Any,
    mesh: Store,
) -> None:
    source, target = sides
    await create_accounts(source, 100)
    control = await define(mesh, postgres_url, second_postgres_url)
    async with running_replication(mesh) as running:
        await eventually(lambda: caught_up(source, target), what="the replication caught up")
        await control.set_desired(NAME, "paused")
        await eventually(
            lambda: (
                running.alive()
                and bool(running.statuses)
                and running.statuses[-1]["desired"] == "paused"
            ),
            what="the replication paused",
        )

        # Paused, it still reports its status every second, which asks the source.
        await take_down(pg_admin, postgres_url)
        await asyncio.sleep(2.5)
        assert running.alive()
        await bring_back(pg_admin, postgres_url)
        await source.execute("UPDATE accounts SET balance = 7 WHERE id = 1")
        await control.set_desired(NAME, "running")
        await eventually(lambda: caught_up(source, target), what="caught up after resuming")
        assert await assert_same_rows(source, target) == 100

        # Asked to stop while the source is away, it stops, without an error.
        await take_down(pg_admin, postgres_url)
        await control.set_desired(NAME, "stopped")
        await asyncio.wait_for(running.task, 30)
        assert (await control.get(NAME)).heartbeat_at is None


async def test_preparing_again_while_the_application_is_mid_transaction_does_not_deadlock(
    sides: tuple[Store, Store], postgres_url: str, second_postgres_url: str
) -> None:
    source, target = sides
    await create_accounts(source, 10)
    spec = parse_data(
        definitions(postgres_url, second_postgres_url), "replications.yaml"
    ).replications[NAME]
    replicator = Replicator(spec, source, target)
    await replicator.prepare()
    application = await asyncpg.connect(postgres_url)
    try:
        transaction = application.transaction()
        await transaction.start()
        # The application has begun writing to the table (an update that matched no row).
        await application.execute("UPDATE accounts SET balance = 0 WHERE id = -1")
        replicator.reset()  # as after a lost connection: it prepares again
        # Capture is in place, so preparing again takes no lock on the table: it is done
        # while the application's transaction is still open.
        await asyncio.wait_for(replicator.prepare(), 30)
        await application.execute("UPDATE accounts SET balance = 99 WHERE id = 1")
        await transaction.commit()
    finally:
        await application.close()

    while await replicator.step():
        pass
    assert await target.fetch_value("SELECT balance FROM ledger WHERE id = 1") == 99


async def test_replicator_run_outlives_the_source_going_away_while_paused(
    sides: tuple[Store, Store], postgres_url: str, second_postgres_url: str, pg_admin: Any
) -> None:
    source, target = sides
    await create_accounts(source, 100)
    spec = parse_data(
        definitions(postgres_url, second_postgres_url), "replications.yaml"
    ).replications[NAME]
    replicator = Replicator(spec, source, target)
    asked: list[Desired] = ["running"]
    reports: list[ReplicationStatus] = []

    async def desired() -> Desired:
        return asked[-1]

    async def report(status: ReplicationStatus) -> None:
        reports.append(status)

    running = asyncio.create_task(replicator.run(desired=desired, report=report, report_every=0.1))
    try:
        await eventually(lambda: caught_up(source, target), what="the replication caught up")
        asked.append("paused")
        await take_down(pg_admin, postgres_url)
        await asyncio.sleep(2)  # paused, it reports its status: from the source that is away
        assert not running.done(), running.exception()
        await bring_back(pg_admin, postgres_url)
        await source.execute("UPDATE accounts SET balance = 7 WHERE id = 1")
        asked.append("running")
        await eventually(lambda: caught_up(source, target), what="caught up after resuming")
        assert await assert_same_rows(source, target) == 100
        assert reports[-1].position > 0

        await take_down(pg_admin, postgres_url)
        asked.append("stopped")  # while the source is away: it stops without an error
        await asyncio.wait_for(running, 30)
    finally:
        await bring_back(pg_admin, postgres_url)
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError, StoreError):
            await running
