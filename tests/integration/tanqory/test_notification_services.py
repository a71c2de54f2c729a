"""notification-services turns user and order events into notifications, pushed live."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from tests.integration.tanqory.helpers import (
    FAST_CONSUMER,
    WAIT,
    getter,
    next_event,
    send,
    until,
)

from hybridmesh.api.websocket import Principal, StaticTokens
from hybridmesh.events import CloudEvent, DeadLetter, EventBus
from tanqory.apps import RunningService, notification_services, user_service

ADA = {"id": "U-1", "email": "ada@example.com", "name": "Ada", "status": "active"}


@pytest.fixture
async def notifier(tmp_path: Path, bus: EventBus) -> AsyncIterator[RunningService]:
    async with await notification_services.start(
        tmp_path / "notifications.db", bus=bus, consumer=FAST_CONSUMER
    ) as service:
        yield service


def _registered(user: dict[str, Any] = ADA) -> CloudEvent:
    return user_service.user_event("user.registered", user)


def _order_event(type: str, order_id: str) -> CloudEvent:
    # One order's events share a partition key, so they are handled in the order published.
    data = {"user_id": "U-1", "order_id": order_id}
    return CloudEvent.create(type, "/order-processing", data, partition_key=order_id)


async def _notifications(
    http: aiohttp.ClientSession, service: RunningService, count: int, user: str = "U-1"
) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = await until(
        getter(http, f"{service.url}/notifications?user_id={user}"), lambda n: len(n) == count
    )
    return found


async def _consumer(http: aiohttp.ClientSession, service: RunningService) -> dict[str, Any]:
    status: dict[str, Any] = await getter(http, f"{service.url}/_admin/consumer")()
    return status


async def _dead_letters(bus: EventBus, count: int) -> list[DeadLetter]:
    async def fetch() -> list[DeadLetter]:
        return await bus.dead_letters(group=notification_services.NAME)

    return await until(fetch, lambda letters: len(letters) == count)


async def test_a_registration_becomes_a_welcome_notification_pushed_live(
    http: aiohttp.ClientSession, notifier: RunningService, bus: EventBus
) -> None:
    ws_url = f"{notifier.url}/ws/notifications"
    async with (
        http.ws_connect(f"{ws_url}?token=U-1") as ada,
        http.ws_connect(ws_url, headers={"Authorization": "Bearer ops"}) as ops,
    ):
        assert (await ada.receive_json(timeout=WAIT)) == {"type": "welcome", "user_id": "U-1"}
        assert (await ops.receive_json(timeout=WAIT))["type"] == "welcome"
        assert await send(ada, {"action": "join", "room": "user:U-1"}) == {
            "type": "joined",
            "room": "user:U-1",
        }
        reply = await send(ops, {"action": "subscribe", "patterns": ["notification.*"]})
        assert reply["type"] == "subscribed"

        await bus.publish(_registered())

        [notification] = await _notifications(http, notifier, 1)
        for client in (ada, ops):
            pushed = (await next_event(client))["event"]
            assert (pushed["type"], pushed["source"]) == (
                "notification.sent",
                "/notification-services",
            )
            assert pushed["data"] == notification
    assert notification["template"] == "welcome"
    assert notification["channel"] == "email"
    assert notification["address"] == "ada@example.com"
    assert notification["status"] == "sent"
    assert notification["event_type"] == "user.registered"


async def test_order_events_use_their_templates_and_other_events_are_ignored(
    http: aiohttp.ClientSession, notifier: RunningService, bus: EventBus
) -> None:
    await bus.publish(CloudEvent.create("inventory.reserved", "/inventory", {"user_id": "U-1"}))
    await bus.publish(_order_event("order.created", order_id="O-1"))
    await bus.publish(_order_event("order.cancelled", order_id="O-1"))
    found = await _notifications(http, notifier, 2)
    assert [(n["template"], n["channel"]) for n in found] == [
        ("order-confirmation", "email"),
        ("order-cancelled", "push"),
    ]
    status = await until(
        getter(http, f"{notifier.url}/_admin/consumer"), lambda s: s["handled"] == 3
    )
    assert status["dead_letters"] == []


async def test_a_redelivered_event_notifies_once(
    http: aiohttp.ClientSession, notifier: RunningService, bus: EventBus
) -> None:
    event = _registered()
    async with http.ws_connect(f"{notifier.url}/ws/notifications?token=U-1") as ws:
        await ws.receive_json(timeout=WAIT)
        await send(ws, {"action": "join", "room": "user:U-1"})
        await bus.publish(event)
        await next_event(ws)
        # As the bus does after a consumer died holding the event: deliver it to the group again.
        await bus.backend.publish([event], group=notification_services.NAME)
        await until(getter(http, f"{notifier.url}/_admin/consumer"), lambda s: s["duplicates"] == 1)
        # Replies come in order after pushes, so a second push would arrive before the pong.
        assert await send(ws, {"action": "ping"}) == {"type": "pong"}
    assert len(await _notifications(http, notifier, 1)) == 1


async def test_a_missing_template_dead_letters_until_it_is_added_and_replayed(
    http: aiohttp.ClientSession, notifier: RunningService, bus: EventBus
) -> None:
    await bus.publish(_order_event("order.shipped", order_id="O-7"))
    [letter] = await _dead_letters(bus, 1)
    assert letter.type == "order.shipped"
    assert letter.attempts == FAST_CONSUMER.max_deliveries
    assert letter.reason.startswith("TemplateMissing: no template for event type 'order.shipped'")
    status = await _consumer(http, notifier)
    assert [d["id"] for d in status["dead_letters"]] == [letter.id]
    assert await getter(http, f"{notifier.url}/notifications")() == []

    template = {"event_type": "order.shipped", "template": "order-shipped", "channel": "push"}
    async with http.post(f"{notifier.url}/_admin/templates", json=template) as resp:
        assert resp.status == 201
    await bus.replay(letter.id)

    [notification] = await _notifications(http, notifier, 1)
    assert (notification["template"], notification["channel"]) == ("order-shipped", "push")
    assert notification["event_id"] == letter.event_id
    assert len(await bus.dead_letters(group=notification_services.NAME)) == 1  # no new one


async def test_an_event_without_its_data_dead_letters_and_replaying_cannot_fix_it(
    http: aiohttp.ClientSession, notifier: RunningService, bus: EventBus
) -> None:
    await bus.publish(
        CloudEvent.create("user.registered", "/user-service", {"user_id": "U-1"}, subject="U-1")
    )
    [letter] = await _dead_letters(bus, 1)
    assert letter.reason.startswith("MissingEventData:")
    assert "'email'" in letter.reason

    async with http.post(f"{notifier.url}/_admin/dead-letters/{letter.id}/replay") as resp:
        assert resp.status == 200
        assert (await resp.json())["replayed_at"] is not None
    await _dead_letters(bus, 2)
    async with http.post(f"{notifier.url}/_admin/dead-letters/nope/replay") as resp:
        assert resp.status == 404


async def test_templates_can_be_listed_and_replaced_but_not_made_up(
    http: aiohttp.ClientSession, notifier: RunningService
) -> None:
    url = f"{notifier.url}/_admin/templates"
    templates = await getter(http, url)()
    assert {"event_type": "user.registered", "template": "welcome", "channel": "email"} in templates
    assert "order.shipped" not in {t["event_type"] for t in templates}

    replaced = {"event_type": "user.registered", "template": "welcome-v2", "channel": "push"}
    async with http.post(url, json=replaced) as resp:
        assert resp.status == 200
    assert replaced in await getter(http, url)()

    for bad, field in [
        ({"event_type": "system.alert", "template": "t", "channel": "email"}, "event_type"),
        ({"event_type": "user.*", "template": "t", "channel": "email"}, "event_type"),
        ({"event_type": "user.x", "template": "t", "channel": "pigeon"}, "channel"),
        ({"event_type": "user.x", "channel": "email"}, "template"),
    ]:
        async with http.post(url, json=bad) as resp:
            assert resp.status == 422
            problem = await resp.json(content_type=None)
        assert [e["field"] for e in problem["errors"]] == [field]


async def test_the_websocket_needs_a_known_token(tmp_path: Path, bus: EventBus) -> None:
    tokens = StaticTokens({"secret": Principal(user_id="U-1")})
    async with (
        await notification_services.start(tmp_path / "n.db", bus=bus, tokens=tokens) as service,
        aiohttp.ClientSession() as http,
    ):
        for query in ("", "?token=guess"):
            async with http.ws_connect(f"{service.url}/ws/notifications{query}") as ws:
                await ws.receive(timeout=WAIT)
                assert ws.close_code == 4401
        async with http.ws_connect(f"{service.url}/ws/notifications?token=secret") as ws:
            assert await ws.receive_json(timeout=WAIT) == {"type": "welcome", "user_id": "U-1"}
            reply = await send(ws, {"action": "join", "room": "user:U-2"})
            assert reply["type"] == "error"


async def test_notifications_and_receipts_survive_a_restart(
    http: aiohttp.ClientSession, tmp_path: Path, bus: EventBus
) -> None:
    db = tmp_path / "n.db"
    event = _registered()
    async with await notification_services.start(db, bus=bus, consumer=FAST_CONSUMER) as service:
        await bus.publish(event)
        await _notifications(http, service, 1)
    async with await notification_services.start(db, bus=bus, consumer=FAST_CONSUMER) as service:
        await bus.backend.publish([event], group=notification_services.NAME)
        await until(getter(http, f"{service.url}/_admin/consumer"), lambda s: s["duplicates"] == 1)
        assert len(await _notifications(http, service, 1)) == 1


async def test_listing_notifications_checks_the_limit(
    http: aiohttp.ClientSession, notifier: RunningService
) -> None:
    for limit in ("0", "abc", "501"):
        async with http.get(f"{notifier.url}/notifications?limit={limit}") as resp:
            assert resp.status == 422
