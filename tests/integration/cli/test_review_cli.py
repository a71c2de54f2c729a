"""``hybridmesh review`` on a SQLite file: list, show, resolve, discard and retry items."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest
from click.testing import CliRunner

from hybridmesh.cli._common import CliContext
from hybridmesh.cli.review import review
from hybridmesh.core.clock import FakeClock
from hybridmesh.core.errors import HybridMeshError, exit_code_for
from hybridmesh.core.settings import Settings
from hybridmesh.events import CloudEvent, EventBus
from hybridmesh.events.backends.sql import SqlEventBackend
from hybridmesh.review import Origin, ReviewItem, ReviewQueue, review_dead_letter
from hybridmesh.store import open_store

T = TypeVar("T")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(database_url=f"sqlite:///{tmp_path / 'mesh.db'}", events_url=None)


def invoke(settings: Settings, *args: str) -> tuple[int, str, str]:
    """Run ``review ARGS`` as the CLI would: a hybridmesh error becomes its exit code and
    its message (what ``hybridmesh.cli.main`` prints)."""
    result = CliRunner().invoke(review, list(args), obj=CliContext(settings))
    error = result.exception
    if isinstance(error, HybridMeshError):
        return exit_code_for(error), result.stdout, str(error)
    if error is not None and not isinstance(error, SystemExit):
        raise error
    return result.exit_code, result.stdout, result.stderr


def with_queue(settings: Settings, action: Callable[[ReviewQueue], Awaitable[T]]) -> T:
    async def run() -> T:
        async with await open_store(settings.database_url) as store:
            await store.upgrade()
            clock = FakeClock()
            # Each item a minute after the last, so newest-first is unambiguous.
            clock.advance(60 * await store.fetch_value("SELECT COUNT(*) FROM review_items"))
            return await action(ReviewQueue(store, clock=clock, actor="engine"))

    return asyncio.run(run())


def add(settings: Settings, origin: Origin = "saga", reason: str = "refund failed") -> ReviewItem:
    return with_queue(settings, lambda q: q.add(origin, reason, {"order": 7}, origin_ref="ex-1"))


def test_list_shows_open_items_newest_first_as_json(settings: Settings) -> None:
    older, newer = add(settings, "saga"), add(settings, "batch", "ERP rejected")
    code, out, _ = invoke(settings, "list", "--json")
    assert code == 0
    listed = json.loads(out)
    assert [i["id"] for i in listed] == [newer.id, older.id]
    assert listed[0] == {**newer.to_dict(), "actions": []}

    code, out, _ = invoke(settings, "list", "--origin", "saga", "--json")
    assert [i["id"] for i in json.loads(out)] == [older.id]


def test_list_as_a_table_and_when_empty(settings: Settings) -> None:
    code, _, err = invoke(settings, "list")
    assert code == 0 and "no open review items" in err
    item = add(settings, reason="refund failed")
    code, out, _ = invoke(settings, "list")
    assert code == 0 and item.id[:8] in out and "refund failed" in out


def test_list_status_all_includes_closed_items(settings: Settings) -> None:
    kept, closed = add(settings), add(settings)
    assert invoke(settings, "resolve", closed.id)[0] == 0

    def listed(*options: str) -> list[tuple[str, str]]:
        code, out, _ = invoke(settings, "list", *options, "--json")
        assert code == 0
        return [(i["id"], i["status"]) for i in json.loads(out)]

    assert listed() == [(kept.id, "open")]
    assert listed("--status", "all") == [(closed.id, "resolved"), (kept.id, "open")]
    assert listed("--status", "resolved") == [(closed.id, "resolved")]


def test_show_gives_the_item_and_its_timeline(settings: Settings) -> None:
    item = add(settings)
    invoke(settings, "discard", item.id, "--note", "duplicate order", "--actor", "ana")

    code, out, _ = invoke(settings, "show", item.id, "--json")
    assert code == 0
    shown = json.loads(out)
    assert shown["status"] == "discarded" and shown["payload"] == {"order": 7}
    assert [(a["action"], a["actor"], a["note"]) for a in shown["actions"]] == [
        ("created", "engine", None),
        ("discarded", "ana", "duplicate order"),
    ]

    code, out, _ = invoke(settings, "show", item.id)
    assert code == 0
    assert "discarded" in out and "duplicate order" in out and '"order": 7' in out


@pytest.mark.parametrize(("command", "status"), [("resolve", "resolved"), ("discard", "discarded")])
def test_resolve_and_discard_record_the_actor_from_the_environment(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, command: str, status: str
) -> None:
    monkeypatch.setenv("USER", "ana")
    item = add(settings)
    code, out, _ = invoke(settings, command, item.id, "--note", "done by hand")
    assert code == 0 and f"{status} {item.id}" in out

    stored = with_queue(settings, lambda q: q.get(item.id))
    assert stored.status == status
    assert (stored.actions[-1].actor, stored.actions[-1].note) == ("ana", "done by hand")

    code, _, err = invoke(settings, command, item.id)  # not open any more
    assert code == 2 and f"is {status}" in err


def test_the_actor_is_cli_without_a_user(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("USER", raising=False)
    item = add(settings)
    code, out, _ = invoke(settings, "resolve", item.id, "--json")
    assert code == 0 and json.loads(out)["actions"][-1]["actor"] == "cli"


def test_retry_whose_origin_is_gone_exits_1_and_keeps_the_item_open(settings: Settings) -> None:
    item = add(settings, "saga")  # names execution ex-1, which this database never had
    code, _, err = invoke(settings, "retry", item.id)
    assert code == 1 and "no execution 'ex-1'" in err
    assert with_queue(settings, lambda q: q.get(item.id)).status == "open"


async def _filed_dead_letter(url: str) -> tuple[str, str]:
    backend = await SqlEventBackend.open(url)
    bus = EventBus(backend)

    async def refuse(event: CloudEvent) -> None:
        raise ValueError("no template for order.shipped")

    bus.subscribe("order.*", refuse, group="mailer", max_deliveries=1)
    await bus.publish(CloudEvent.create("order.shipped", "/orders", {"order": 1}))
    await bus.drain()
    [letter] = await bus.dead_letters()
    item = await review_dead_letter(ReviewQueue(backend.store), letter)
    await bus.close()
    return item.id, letter.id


def test_retry_of_a_dead_letter_replays_it(settings: Settings) -> None:
    item_id, letter_id = asyncio.run(_filed_dead_letter(settings.database_url))

    code, out, _ = invoke(settings, "retry", item_id, "--note", "template added")

    assert code == 0 and f"retried {item_id} (dlq)" in out
    code, out, _ = invoke(settings, "show", item_id, "--json")
    assert [a["action"] for a in json.loads(out)["actions"]] == ["created", "retried"]

    async def replayed_at() -> object:
        backend = await SqlEventBackend.open(settings.database_url)
        try:
            return (await backend.get_dead_letter(letter_id)).replayed_at
        finally:
            await backend.close()

    assert asyncio.run(replayed_at()) is not None


@pytest.mark.parametrize("command", ["show", "retry", "resolve", "discard"])
def test_an_unknown_id_exits_1_naming_it(settings: Settings, command: str) -> None:
    code, _, err = invoke(settings, command, "nope")
    assert code == 1 and "no review item 'nope'" in err


@pytest.mark.parametrize(
    "args",
    [["list", "--status", "closed"], ["list", "--origin", "kafka"], ["list", "--limit", "0"]],
)
def test_a_bad_option_exits_2(settings: Settings, args: list[str]) -> None:
    code, _, err = invoke(settings, *args)
    assert code == 2 and "Invalid value" in err
