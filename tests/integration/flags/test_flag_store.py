"""Flags in the store, on SQLite and PostgreSQL: applying, setting, deleting, and every
process's FlagClient seeing a change made elsewhere without a restart."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from tests.waiting import eventually

from hybridmesh.core.errors import NotFoundError, ValidationError
from hybridmesh.flags import Flag, FlagClient, FlagStore, parse_flags
from hybridmesh.store import Store, open_store

FLAGS = """\
flags:
  - key: new-checkout
    variants: {"on": true, "off": false}
    default_variant: "off"
    targeting:
      - when: [{attribute: plan, equals: beta}]
        variant: "on"
  - key: banner
    variants: {plain: Hello, loud: HELLO}
    default_variant: plain
"""


def rollout(percent: int) -> Flag:
    return Flag.model_validate(
        {
            "key": "new-checkout",
            "variants": {"on": True, "off": False},
            "default_variant": "off",
            "targeting": [
                {
                    "fractional": [
                        {"variant": "on", "weight": percent},
                        {"variant": "off", "weight": 100 - percent},
                    ]
                }
            ],
        }
    )


async def test_apply_reports_what_changed_and_versions_count_changes(store: Store) -> None:
    flags = FlagStore(store)
    loaded = parse_flags(FLAGS, "flags.yaml")
    assert (await flags.apply(loaded, source="flags.yaml")).to_dict() == {
        "created": ["new-checkout", "banner"],
        "updated": [],
        "unchanged": [],
        "deleted": [],
    }
    revision = await flags.revision()
    assert (await flags.apply(loaded)).unchanged == ["new-checkout", "banner"]
    assert await flags.revision() == revision  # nothing changed: no new revision

    await flags.put(rollout(25))
    stored = await flags.get("new-checkout")
    assert (stored.version, stored.revision) == (2, revision + 1)
    assert stored.flag == rollout(25)
    assert (await flags.get("banner")).source == "flags.yaml"

    pruned = await flags.apply(loaded[1:], prune=True)
    assert pruned.deleted == ["new-checkout"] and pruned.unchanged == ["banner"]
    assert [s.flag.key for s in await flags.list()] == ["banner"]
    assert await flags.delete("banner") is True
    assert await flags.delete("banner") is False
    with pytest.raises(NotFoundError, match="no flag 'banner'"):
        await flags.get("banner")


async def test_apply_a_file_or_refuse_it_whole(store: Store, tmp_path: Path) -> None:
    flags = FlagStore(store)
    path = tmp_path / "flags.yaml"
    path.write_text(FLAGS.replace("default_variant: plain", "default_variant: shouty"))
    with pytest.raises(ValidationError) as raised:
        await flags.apply_file(path)
    assert [p.line for p in raised.value.problems] == [10]
    assert await flags.list() == [] and await flags.revision() == 0
    path.write_text(FLAGS)
    assert (await flags.apply_file(path)).created == ["new-checkout", "banner"]
    assert (await flags.get("banner")).source == str(path)


async def test_concurrent_changes_to_one_flag_are_all_kept(store: Store) -> None:
    flags = FlagStore(store)
    await flags.put(rollout(0))

    def adding(name: str) -> Any:
        def change(current: Flag | None) -> Flag:
            assert current is not None
            spec = current.definition()
            spec["variants"][name] = False
            return Flag.model_validate(spec)

        return change

    names = [f"extra-{i}" for i in range(6)]
    await asyncio.gather(*(flags.update("new-checkout", adding(n)) for n in names))
    stored = await flags.get("new-checkout")
    assert set(names) <= set(stored.flag.variants)
    assert stored.version == 1 + len(names)


async def test_two_clients_see_a_change_made_through_a_third_connection(
    database_url: str,
) -> None:
    writer_store = await open_store(database_url)
    await writer_store.upgrade()
    first_store = await open_store(database_url)
    second_store = await open_store(database_url)
    writer = FlagStore(writer_store)
    await writer.apply(parse_flags(FLAGS, "flags.yaml"))
    first = await FlagClient(first_store).start()
    second = await FlagClient(second_store).start()
    changes: list[frozenset[str]] = []
    second.on_change(changes.append)
    try:
        for client in (first, second):
            assert client.boolean("new-checkout", {"plan": "beta"}) is True
            assert client.boolean("new-checkout", {"targetingKey": "u1"}) is False

        await writer.put(rollout(100))
        for client in (first, second):
            await eventually(
                lambda c=client: (
                    c.evaluate("new-checkout", {"targetingKey": "u1"}).reason == "SPLIT"
                ),
                what="the rollout reaching every client",
            )
            assert client.boolean("new-checkout", {"targetingKey": "u1"}) is True
        assert changes == [frozenset({"new-checkout"})]

        await writer.delete("banner")
        await eventually(lambda: "banner" not in second.flags(), what="the deletion")
        assert second.evaluate("banner", {}, "gone").error_code == "FLAG_NOT_FOUND"
        assert changes[-1] == frozenset({"banner"})
    finally:
        await first.close()
        await second.close()
        for s in (writer_store, first_store, second_store):
            await s.close()


async def test_a_client_keeps_its_flags_when_the_store_goes_away(sqlite_url: str) -> None:
    store = await open_store(sqlite_url)
    await store.upgrade()
    await FlagStore(store).apply(parse_flags(FLAGS, "flags.yaml"))
    client = await FlagClient(store, poll_seconds=0.01).start()
    try:
        await store.close()
        await asyncio.sleep(0.05)  # a few failed polls
        assert client.string("banner", {}, "fallback") == "Hello"
    finally:
        await client.close()


@pytest.mark.postgres
async def test_on_postgresql_a_change_is_heard_at_once(postgres_url: str) -> None:
    store = await open_store(postgres_url)
    await store.upgrade()
    other = await open_store(postgres_url)
    client = await FlagClient(other, poll_seconds=30).start()
    changed = asyncio.Event()
    client.on_change(lambda _keys: changed.set())
    try:
        await FlagStore(store).put(rollout(100))
        # Polling every 30 s: only the NOTIFY can make this quick.
        await asyncio.wait_for(changed.wait(), 3)
        assert client.boolean("new-checkout", {"targetingKey": "u1"}) is True
    finally:
        await client.close()
        await other.close()
        await store.close()
