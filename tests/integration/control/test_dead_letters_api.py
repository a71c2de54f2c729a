"""Dead letters over HTTP, on the served bus (the SQL log in the test's database): listed
and shown as `dlq list|show --json` prints them, replayed to their group and handled,
purged; and the errors of each operation."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from tests.cli_in_process import run_cli_parts
from tests.integration.control.conftest import OpenPlane, Plane

from hybridmesh.control.routes.dead_letters import DeadLetterList, DeadLetterOut
from hybridmesh.events import CloudEvent, EventBus


@dataclass
class Consumer:
    """A handler that fails until it is fixed."""

    broken: bool = True
    handled: list[str] = field(default_factory=list)

    async def __call__(self, event: CloudEvent) -> None:
        if self.broken:
            raise ValueError(f"no template for {event.type}")
        self.handled.append(event.id)


@dataclass
class Lettered:
    plane: Plane
    bus: EventBus
    mailer: Consumer
    poison: CloudEvent


@pytest.fixture
async def lettered(
    open_plane: OpenPlane, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Lettered]:
    """A plane over its runtime's bus, where group `mailer` dead-lettered one order event
    and group `billing` another."""
    monkeypatch.delenv("HYBRIDMESH_EVENTS_URL", raising=False)
    async with open_plane(events=True) as plane:
        bus = plane.runtime.bus
        assert bus is not None
        mailer = Consumer()
        bus.subscribe("order.*", mailer, group="mailer", max_deliveries=1)
        bus.subscribe("invoice.*", Consumer(), group="billing", max_deliveries=1)
        poison = await bus.publish(CloudEvent.create("order.shipped", "/orders", {"order": 1}))
        await bus.publish(CloudEvent.create("invoice.sent", "/billing", {"invoice": 7}))
        await bus.drain()
        yield Lettered(plane, bus, mailer, poison)


async def cli_json(capsys: pytest.CaptureFixture[str], database_url: str, *args: str) -> object:
    code, out, err = await run_cli_parts(capsys, database_url, *args, "--json")
    assert code == 0, err
    return json.loads(out)


async def test_listed_and_shown_as_the_cli_prints_them(
    lettered: Lettered, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    plane = lettered.plane
    status, letters = await plane.call("GET", "/api/v1/dead-letters", role="read")
    assert status == 200
    DeadLetterList.model_validate(letters)
    assert letters == await cli_json(capsys, database_url, "dlq", "list")
    assert sorted(x["group"] for x in letters) == ["billing", "mailer"]

    status, mailer = await plane.call("GET", "/api/v1/dead-letters?group=mailer", role="read")
    assert status == 200
    [letter] = mailer
    assert letter["event"] == lettered.poison.to_dict()
    assert letter["attempts"] == 1 and "no template for order.shipped" in letter["reason"]
    assert mailer == await cli_json(capsys, database_url, "dlq", "list", "--group", "mailer")

    status, shown = await plane.call("GET", f"/api/v1/dead-letters/{letter['id']}", role="read")
    assert status == 200
    DeadLetterOut.model_validate(shown)
    assert shown == await cli_json(capsys, database_url, "dlq", "show", letter["id"])


async def test_a_replayed_letter_is_delivered_to_its_group_and_handled(
    lettered: Lettered, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    plane = lettered.plane
    [letter] = await lettered.bus.dead_letters(group="mailer")
    lettered.mailer.broken = False

    status, replayed = await plane.call(
        "POST", f"/api/v1/dead-letters/{letter.id}/replay", role="operate"
    )
    assert status == 200, replayed
    assert replayed["replayed_at"] is not None
    await lettered.bus.drain()

    assert lettered.mailer.handled == [lettered.poison.id]
    shown = await cli_json(capsys, database_url, "dlq", "show", letter.id)
    assert shown == replayed
    [entry, *_] = await plane.runtime.store.fetch_all(
        "SELECT operation, target, status FROM api_audit ORDER BY at DESC"
    )
    assert dict(entry) == {"operation": "replay_dead_letter", "target": letter.id, "status": 200}


async def test_purge_deletes_one_groups_letters_then_all(
    lettered: Lettered, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    plane = lettered.plane
    status, purged = await plane.call(
        "POST", "/api/v1/dead-letters/purge", role="operate", json={"group": "billing"}
    )
    assert (status, purged) == (200, {"purged": 1, "group": "billing"})
    left = await cli_json(capsys, database_url, "dlq", "list")
    assert [x["group"] for x in left] == ["mailer"]  # type: ignore[union-attr]

    status, purged = await plane.call("POST", "/api/v1/dead-letters/purge", role="operate")
    assert (status, purged) == (200, {"purged": 1, "group": None})
    assert await cli_json(capsys, database_url, "dlq", "list") == []

    status, problem = await plane.call(
        "POST",
        f"/api/v1/dead-letters/{left[0]['id']}/replay",
        role="operate",  # type: ignore[index]
    )
    assert status == 404, problem  # a purged letter is gone


async def test_a_letter_that_never_parsed_cannot_be_replayed(open_plane: OpenPlane) -> None:
    async with open_plane(events=True) as plane:
        bus = plane.runtime.bus
        assert bus is not None
        bus.subscribe("user.*", Consumer(broken=False), group="watchers")
        await bus.drain()  # the group exists, from the start of the log
        await plane.runtime.store.execute(
            "INSERT INTO event_log (event_id, source, type, partition, body, published_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            "bad-1", "/tests", "user.registered", 0, '{"specversion": "1.0"', 0.0,
        )  # fmt: skip
        await bus.drain()
        [letter] = await bus.dead_letters()
        assert letter.event is None

        status, problem = await plane.call(
            "POST", f"/api/v1/dead-letters/{letter.id}/replay", role="operate"
        )
        assert (status, problem["status"]) == (409, 409)
        assert "not a CloudEvent" in problem["detail"]
        assert (await bus.dead_letter(letter.id)).replayed_at is None


async def test_errors_of_each_operation(lettered: Lettered) -> None:
    plane = lettered.plane
    [letter] = await lettered.bus.dead_letters(group="mailer")
    for method, path in (
        ("GET", "/api/v1/dead-letters"),
        ("GET", f"/api/v1/dead-letters/{letter.id}"),
        ("POST", f"/api/v1/dead-letters/{letter.id}/replay"),
        ("POST", "/api/v1/dead-letters/purge"),
    ):
        status, _ = await plane.call(method, path, role=None)
        assert status == 401, path
    for path in (f"/api/v1/dead-letters/{letter.id}/replay", "/api/v1/dead-letters/purge"):
        status, problem = await plane.call("POST", path, role="read")
        assert (status, problem["status"]) == (403, 403), path
    assert len(await lettered.bus.dead_letters()) == 2  # nothing was replayed or purged
    assert (await lettered.bus.dead_letter(letter.id)).replayed_at is None

    for method, path in (
        ("GET", "/api/v1/dead-letters/nope"),
        ("POST", "/api/v1/dead-letters/nope/replay"),
    ):
        status, problem = await plane.call(method, path, role="operate")
        assert (status, problem["status"]) == (404, 404), path
        assert "nope" in problem["detail"]

    for path, field_name in (
        ("/api/v1/dead-letters?limit=0", "limit"),
        ("/api/v1/dead-letters?grop=mailer", "grop"),
    ):
        status, problem = await plane.call("GET", path, role="read")
        assert status == 400, path
        assert [e["field"] for e in problem["errors"]] == [field_name]
    status, problem = await plane.call(
        "POST", "/api/v1/dead-letters/purge", role="operate", json={"groups": "mailer"}
    )
    assert status == 400
    assert [e["field"] for e in problem["errors"]] == ["groups"]
    assert len(await lettered.bus.dead_letters()) == 2
