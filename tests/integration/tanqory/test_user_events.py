"""user-service announces user changes through a transactional outbox in its own database."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from tests.integration.tanqory.helpers import FAST_RELAY, Sink, getter, until

from hybridmesh.events import CloudEvent, EventBus
from tanqory.apps import RunningService, user_service

ADA = {"email": "ada@example.com", "name": "Ada Lovelace"}
GRACE = {"email": "grace@example.com", "name": "Grace Hopper"}
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


class FlakyPublish:
    """A ``publish`` that fails its first ``failures`` calls, then hands events to ``bus``."""

    def __init__(self, bus: EventBus | None = None, *, failures: int = 0) -> None:
        self.bus = bus
        self.failures = failures
        self.calls: list[list[str]] = []

    async def __call__(self, events: Sequence[CloudEvent]) -> object:
        self.calls.append([e.id for e in events])
        if self.bus is None or len(self.calls) <= self.failures:
            raise ConnectionError("the bus is unreachable")
        return await self.bus.publish_many(events)


@pytest.fixture
async def publishing(tmp_path: Path, bus: EventBus) -> AsyncIterator[RunningService]:
    """user-service publishing to ``bus``."""
    db = tmp_path / "user-service.db"
    async with await user_service.start(db, publish=bus.publish_many, relay=FAST_RELAY) as svc:
        yield svc


async def _published(bus: EventBus) -> list[CloudEvent]:
    """Every event on ``bus`` so far, in order (read by a fresh group)."""
    sink = Sink()
    bus.subscribe(">", sink, group=f"test-{len(bus.subscriptions)}")
    await bus.drain()
    return sorted(sink.events, key=lambda e: str(e.time))


async def _outbox(http: aiohttp.ClientSession, users: RunningService) -> dict[str, Any]:
    result: dict[str, Any] = await getter(http, f"{users.url}/_admin/outbox")()
    return result


async def _drained(http: aiohttp.ClientSession, users: RunningService, published: int) -> None:
    await until(
        getter(http, f"{users.url}/_admin/outbox"),
        lambda box: box["published"] == published and not box["pending"],
    )


async def test_registering_a_user_publishes_user_registered_once(
    http: aiohttp.ClientSession, publishing: RunningService, bus: EventBus
) -> None:
    headers = {"traceparent": TRACEPARENT, "Idempotency-Key": "register-ada"}
    for _ in range(2):  # the repeat is answered from the idempotency store: no new event
        async with http.post(f"{publishing.url}/users", json=ADA, headers=headers) as resp:
            assert resp.status == 201
    await _drained(http, publishing, published=1)

    [event] = await _published(bus)
    assert (event.type, event.source, event.subject) == ("user.registered", "/user-service", "U-1")
    assert event.partition_key == "U-1"
    assert event.traceparent == TRACEPARENT
    assert event.data == {
        "user_id": "U-1",
        "email": "ada@example.com",
        "name": "Ada Lovelace",
        "status": "active",
    }


async def test_graphql_registration_publishes_too(
    http: aiohttp.ClientSession, publishing: RunningService, bus: EventBus
) -> None:
    query = 'mutation { registerUser(email: "ada@example.com", name: "Ada") { id } }'
    async with http.post(f"{publishing.url}/graphql", json={"query": query}) as resp:
        assert (await resp.json())["data"] == {"registerUser": {"id": "U-1"}}
    await _drained(http, publishing, published=1)
    assert [(e.type, e.subject) for e in await _published(bus)] == [("user.registered", "U-1")]


async def test_updates_and_deactivations_are_announced(
    http: aiohttp.ClientSession, publishing: RunningService, bus: EventBus
) -> None:
    url = f"{publishing.url}/users"
    for body in (ADA, GRACE):
        async with http.post(url, json=body) as resp:
            assert resp.status == 201
    async with http.patch(f"{url}/U-1", json={"name": "Augusta Ada King"}) as resp:
        assert resp.status == 200
    async with http.patch(f"{url}/U-1", json={"status": "inactive"}) as resp:
        assert resp.status == 200
    async with http.delete(f"{url}/U-1") as resp:  # already inactive: nothing new to say
        assert resp.status == 204
    async with http.delete(f"{url}/U-2") as resp:
        assert resp.status == 204
    await _drained(http, publishing, published=5)

    events = await _published(bus)
    assert [(e.type, e.subject) for e in events] == [
        ("user.registered", "U-1"),
        ("user.registered", "U-2"),
        ("user.updated", "U-1"),
        ("user.deactivated", "U-1"),
        ("user.deactivated", "U-2"),
    ]
    assert events[2].data["name"] == "Augusta Ada King"
    assert events[3].data["status"] == "inactive"
    assert events[4].data["email"] == "grace@example.com"


async def test_a_failed_change_writes_no_outbox_row(
    http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    publish = FlakyPublish()  # never succeeds, so every row written stays visible
    async with await user_service.start(
        tmp_path / "u.db", publish=publish, relay=FAST_RELAY
    ) as users:
        async with http.post(f"{users.url}/users", json=ADA) as resp:
            assert resp.status == 201
        async with http.post(f"{users.url}/users", json=ADA) as resp:
            assert resp.status == 409
        async with http.post(f"{users.url}/users", json={"email": "x@example.com"}) as resp:
            assert resp.status == 422
        async with http.patch(f"{users.url}/users/U-9", json={"name": "Nobody"}) as resp:
            assert resp.status == 404
        box = await _outbox(http, users)
    assert box["publishing"] is True
    assert [row["type"] for row in box["pending"]] == ["user.registered"]


async def test_the_user_row_and_its_event_commit_together(
    http: aiohttp.ClientSession, tmp_path: Path, bus: EventBus
) -> None:
    db = tmp_path / "u.db"
    async with await user_service.start(db):
        pass
    with sqlite3.connect(db) as conn:  # from now on, writing an event fails
        conn.execute(
            "CREATE TRIGGER outbox_broken BEFORE INSERT ON outbox"
            " BEGIN SELECT RAISE(ABORT, 'outbox unavailable'); END"
        )
    async with await user_service.start(db, publish=bus.publish_many, relay=FAST_RELAY) as users:
        async with http.post(f"{users.url}/users", json=ADA) as resp:
            assert resp.status == 500
        async with http.get(f"{users.url}/users") as resp:
            assert await resp.json() == []
        assert (await _outbox(http, users))["pending"] == []


async def test_the_relay_retries_until_publishing_succeeds(
    http: aiohttp.ClientSession, tmp_path: Path, bus: EventBus
) -> None:
    publish = FlakyPublish(bus, failures=2)
    async with await user_service.start(
        tmp_path / "u.db", publish=publish, relay=FAST_RELAY
    ) as users:
        async with http.post(f"{users.url}/users", json=ADA) as resp:
            assert resp.status == 201
        await _drained(http, users, published=1)
    assert len(publish.calls) == 3
    assert publish.calls[0] == publish.calls[1] == publish.calls[2]  # the same event each time
    assert [e.id for e in await _published(bus)] == publish.calls[0]


async def test_failed_attempts_show_in_the_outbox(
    http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    async with await user_service.start(
        tmp_path / "u.db", publish=FlakyPublish(), relay=FAST_RELAY
    ) as users:
        async with http.post(f"{users.url}/users", json=ADA) as resp:
            assert resp.status == 201
        box = await until(getter(http, f"{users.url}/_admin/outbox"), _attempted)
    [row] = box["pending"]
    assert row["last_error"] == "ConnectionError: the bus is unreachable"


def _attempted(box: dict[str, Any]) -> bool:
    return bool(box["pending"]) and box["pending"][0]["attempts"] >= 2


async def test_unpublished_events_survive_a_restart(
    http: aiohttp.ClientSession, tmp_path: Path, bus: EventBus
) -> None:
    db = tmp_path / "u.db"
    async with (
        await user_service.start(db, publish=FlakyPublish(), relay=FAST_RELAY) as users,
        http.post(f"{users.url}/users", json=ADA) as resp,
    ):
        assert resp.status == 201
    async with await user_service.start(db, publish=bus.publish_many, relay=FAST_RELAY) as users:
        await _drained(http, users, published=1)
    assert [e.type for e in await _published(bus)] == ["user.registered"]


async def test_without_publish_nothing_is_queued(
    http: aiohttp.ClientSession, users: RunningService
) -> None:
    async with http.post(f"{users.url}/users", json=ADA) as resp:
        assert resp.status == 201
    assert await _outbox(http, users) == {"publishing": False, "published": 0, "pending": []}
