"""The SQL log on PostgreSQL after losing its connections: terminated by the server
(``pg_terminate_backend``), or refused while the database takes none. Publishing and
consuming go on; a publish is stored once the database is back within its deadline, or
refused with BackendUnavailableError, never acknowledged and lost."""

from __future__ import annotations

from typing import Any

import pytest
from tests.pg_outage import database_name, terminate_all
from tests.waiting import eventually

from hybridmesh.events.backend import BackendUnavailableError, GroupSpec, Settlement
from hybridmesh.events.backends.sql import SqlEventBackend
from hybridmesh.events.bus import EventBus
from hybridmesh.events.envelope import CloudEvent

pytestmark = pytest.mark.postgres


def event(n: int) -> CloudEvent:
    return CloudEvent.create("user.registered", "/tests", {"n": n})


async def fetch_numbers(backend: SqlEventBackend, group: GroupSpec) -> list[int]:
    seen: list[int] = []
    while batches := await backend.fetch(group, "c", max_events=100, wait=0.2):
        for batch in batches:
            seen += [d.event.data["n"] for d in batch.deliveries if d.event is not None]
            await backend.settle(batch, Settlement(len(batch.deliveries)))
    return seen


async def test_a_publish_right_after_the_sessions_were_terminated_is_stored(
    postgres_url: str, pg_admin: Any
) -> None:
    backend = await SqlEventBackend.open(postgres_url)
    await backend.start()
    try:
        group = GroupSpec("g")
        await backend.ensure_group(group)
        await backend.publish([event(1)])
        assert await terminate_all(pg_admin, postgres_url) >= 1
        await backend.publish([event(2)])  # on a connection the pool does not know is dead
        await backend.publish([event(3)])
        # Each is stored once; without a partition key they may sit in different partitions,
        # whose order among themselves is not kept.
        assert sorted(await fetch_numbers(backend, group)) == [1, 2, 3]
        await backend.check()
    finally:
        await backend.close()


async def test_the_bus_keeps_consuming_after_its_sessions_were_terminated(
    postgres_url: str, pg_admin: Any
) -> None:
    backend = await SqlEventBackend.open(postgres_url)
    seen: list[int] = []

    async def handler(e: CloudEvent) -> None:
        seen.append(e.data["n"])

    bus = EventBus(backend, poll_wait=0.2)
    # A lease taken just as its session ended comes back after ack_wait: keep it short.
    bus.subscribe(">", handler, group="g", ack_wait=2.0)
    async with bus:
        await bus.publish(event(1))
        await eventually(lambda: seen == [1], what="the first event")
        await terminate_all(pg_admin, postgres_url)
        await bus.publish(event(2))
        await eventually(lambda: seen == [1, 2], what="the event after the sessions ended")
        await terminate_all(pg_admin, postgres_url)  # the LISTEN connection too, while waiting
        await bus.publish(event(3))
        await eventually(lambda: seen == [1, 2, 3], what="the event after a second cut")


async def test_a_publish_while_the_database_takes_no_connections_is_refused_then_works(
    postgres_url: str, pg_admin: Any
) -> None:
    backend = await SqlEventBackend.open(postgres_url, publish_timeout=0.5)
    await backend.start()
    try:
        group = GroupSpec("g")
        await backend.ensure_group(group)
        await pg_admin.execute(
            f'ALTER DATABASE "{database_name(postgres_url)}" ALLOW_CONNECTIONS false'
        )
        await terminate_all(pg_admin, postgres_url)
        with pytest.raises(BackendUnavailableError, match="did not take the events within"):
            await backend.publish([event(1)])
        with pytest.raises(BackendUnavailableError):
            await backend.check()
        await pg_admin.execute(
            f'ALTER DATABASE "{database_name(postgres_url)}" ALLOW_CONNECTIONS true'
        )
        await backend.publish([event(2)])
        await backend.check()
        assert await fetch_numbers(backend, group) == [2]
    finally:
        await backend.close()


async def test_health_fails_while_the_database_is_away_and_recovers(
    postgres_url: str, pg_admin: Any
) -> None:
    backend = await SqlEventBackend.open(postgres_url)

    async def handler(e: CloudEvent) -> None:
        return None

    bus = EventBus(backend, poll_wait=0.1)
    bus.subscribe(">", handler, group="g")
    async with bus:
        assert (await bus.health()).ready
        await pg_admin.execute(
            f'ALTER DATABASE "{database_name(postgres_url)}" ALLOW_CONNECTIONS false'
        )
        await terminate_all(pg_admin, postgres_url)

        async def group_failing() -> bool:
            health = await bus.health()
            return not health.ready and "g" in health.failing_groups

        await eventually(group_failing, what="the group's fetches failing")
        health = await bus.health()
        assert health.status == "failing" and health.error is not None
        await pg_admin.execute(
            f'ALTER DATABASE "{database_name(postgres_url)}" ALLOW_CONNECTIONS true'
        )

        async def ready() -> bool:
            return (await bus.health()).ready

        await eventually(ready, what="the bus ready again")
