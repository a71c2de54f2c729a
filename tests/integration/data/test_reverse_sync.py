"""The reverse-sync window of a cut-over: the new owner's writes go back to the legacy
database, nothing goes round in circles, and a row changed on both sides is a conflict that
is resolved as configured, counted and filed for review with both versions."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from tests.integration.data.test_replication import make_customers, spec_for

from hybridmesh.data.replication import Conflict, Replicator, reverse_spec
from hybridmesh.data.runner import conflict_filer
from hybridmesh.review import ReviewQueue
from hybridmesh.store import Store, open_store


async def both_ways(
    source: Store, target: Store, conflicts: str = "last_writer_wins"
) -> tuple[Replicator, Replicator, list[Conflict]]:
    spec = spec_for(source, target, extra=f"    conflicts: {conflicts}\n")
    initial = Replicator(spec, source, target)
    await initial.run(until_caught_up=True)
    met: list[Conflict] = []

    async def keep(conflict: Conflict) -> None:
        met.append(conflict)

    back = reverse_spec(spec)
    forward = Replicator(spec, source, target, peer=back.name, on_conflict=keep)
    reverse = Replicator(
        back,
        target,
        source,
        peer=spec.name,
        legacy_is_source=False,
        on_conflict=keep,
        backfill=False,
    )
    await forward.prepare()
    await reverse.prepare()
    return forward, reverse, met


async def settle(*replicators: Replicator) -> int:
    """Step every replicator until none reads anything; returns the rounds it took."""
    for rounds in range(1, 50):
        read = 0
        for replicator in replicators:
            read += await replicator.step()
        if not read:
            return rounds
    raise AssertionError("the replications never settled: changes go round in circles")


async def test_the_new_owners_writes_reach_the_legacy_database_and_stop_there(
    pair: tuple[Store, Store],
) -> None:
    legacy, new = pair
    await make_customers(legacy, 3)
    forward, reverse, met = await both_ways(legacy, new)

    await new.execute(
        "INSERT INTO users (id, full_name, email, initials) "
        "VALUES (7, 'Eve Fox', 'eve@x.org', 'EF')"
    )
    await new.execute("UPDATE users SET full_name = 'Ada King' WHERE id = 1")
    await legacy.execute("UPDATE customers SET name = 'Bo Lee' WHERE id = 2")
    rounds = await settle(forward, reverse)

    assert rounds <= 3
    rows = {r["id"]: r for r in await legacy.fetch_all("SELECT * FROM customers")}
    assert rows[7]["name"] == "Eve Fox" and rows[7]["email"] == "EVE@X.ORG"
    assert rows[1]["name"] == "Ada King"
    users = {r["id"]: r for r in await new.fetch_all("SELECT * FROM users")}
    assert users[2]["full_name"] == "Bo Lee"
    assert met == []


@pytest.mark.parametrize("newer", ["legacy", "new"])
async def test_last_writer_wins_on_both_sides(pair: tuple[Store, Store], newer: str) -> None:
    legacy, new = pair
    await make_customers(legacy, 3)
    forward, reverse, met = await both_ways(legacy, new)

    async def on_legacy() -> None:
        await legacy.execute("UPDATE customers SET name = 'From Legacy' WHERE id = 1")

    async def on_new() -> None:
        await new.execute("UPDATE users SET full_name = 'From New' WHERE id = 1")

    first, second = (on_new, on_legacy) if newer == "legacy" else (on_legacy, on_new)
    await first()
    await asyncio.sleep(0.02)
    await second()
    await settle(forward, reverse)

    winner = "From Legacy" if newer == "legacy" else "From New"
    assert await legacy.fetch_value("SELECT name FROM customers WHERE id = 1") == winner
    assert await new.fetch_value("SELECT full_name FROM users WHERE id = 1") == winner
    assert len(met) == 1
    (conflict,) = met
    versions = {conflict.incoming["name" if "name" in (conflict.incoming or {}) else "full_name"]}
    assert versions <= {"From Legacy", "From New"}
    assert forward.conflicts + reverse.conflicts == 1


async def test_the_source_wins_when_configured(pair: tuple[Store, Store]) -> None:
    legacy, new = pair
    await make_customers(legacy, 3)
    forward, reverse, met = await both_ways(legacy, new, conflicts="source_wins")

    await legacy.execute("UPDATE customers SET name = 'From Legacy' WHERE id = 2")
    await asyncio.sleep(0.02)
    await new.execute("UPDATE users SET full_name = 'From New' WHERE id = 2")
    await settle(reverse, forward)

    assert await legacy.fetch_value("SELECT name FROM customers WHERE id = 2") == "From Legacy"
    assert await new.fetch_value("SELECT full_name FROM users WHERE id = 2") == "From Legacy"
    assert len(met) == 1


async def test_conflicts_are_filed_for_review_with_both_versions_once(tmp_path: Path) -> None:
    store = await open_store(f"sqlite:///{tmp_path / 'mesh.db'}")
    await store.upgrade()
    try:
        file = conflict_filer(store)
        conflict = Conflict(
            replication="erp-customers",
            table="customers",
            key=(1,),
            incoming={"id": 1, "name": "From Legacy"},
            incoming_at=10.0,
            local={"id": 1, "full_name": "From New"},
            local_at=11.0,
            winner="local",
        )
        await file(conflict)
        await file(conflict)  # the same batch applied again after a crash

        items = await ReviewQueue(store).list(origin="replication")
    finally:
        await store.close()
    (item,) = items
    assert item.payload["incoming"] == {"id": 1, "name": "From Legacy"}
    assert item.payload["local"] == {"id": 1, "full_name": "From New"}
    assert item.payload["winner"] == "local"
    assert "customers" in item.reason and "target's change won" in item.reason
