"""The user-onboarding workflow end to end: user-service publishes through its outbox,
notification-services and analytics-reporting consume, a browser sees the welcome live."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from tests.integration.tanqory.helpers import (
    FAST_CONSUMER,
    FAST_RELAY,
    WAIT,
    getter,
    next_event,
    send,
    until,
)

from hybridmesh.events import EventBus
from hybridmesh.events.backends.memory import MemoryEventBackend
from hybridmesh.events.backends.sql import SqlEventBackend
from tanqory.apps import (
    EVENT_SERVICES,
    SERVICES,
    analytics_reporting,
    notification_services,
    user_service,
)
from tanqory.apps.__main__ import starters

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.fixture(params=["memory", "sqlite"])
async def shared_bus(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[EventBus]:
    """The bus the three services share: in memory, or the SQL log on a SQLite file."""
    if request.param == "memory":
        backend: MemoryEventBackend | SqlEventBackend = MemoryEventBackend()
    else:
        backend = await SqlEventBackend.open(f"sqlite:///{tmp_path / 'events.db'}")
    bus = EventBus(backend, poll_wait=0.05)
    try:
        yield bus
    finally:
        await bus.close()


async def test_a_registration_reaches_notifications_and_analytics(
    http: aiohttp.ClientSession, tmp_path: Path, shared_bus: EventBus
) -> None:
    async with (
        await user_service.start(
            tmp_path / "users.db", publish=shared_bus.publish_many, relay=FAST_RELAY
        ) as users,
        await notification_services.start(
            tmp_path / "notifications.db", bus=shared_bus, consumer=FAST_CONSUMER
        ) as notifier,
        await analytics_reporting.start(
            tmp_path / "analytics.db", bus=shared_bus, consumer=FAST_CONSUMER
        ) as analytics,
        http.ws_connect(f"{notifier.url}/ws/notifications?token=U-1") as browser,
    ):
        await browser.receive_json(timeout=WAIT)
        await send(browser, {"action": "join", "room": "user:U-1"})

        body = {"email": "ada@example.com", "name": "Ada"}
        headers = {"traceparent": TRACEPARENT}
        async with http.post(f"{users.url}/users", json=body, headers=headers) as resp:
            assert resp.status == 201
        welcome = (await next_event(browser))["event"]["data"]
        assert (welcome["user_id"], welcome["template"]) == ("U-1", "welcome")

        async with http.patch(f"{users.url}/users/U-1", json={"status": "inactive"}) as resp:
            assert resp.status == 200
        goodbye = (await next_event(browser))["event"]["data"]
        assert goodbye["template"] == "account-deactivated"

        summary = await until(
            getter(http, f"{analytics.url}/reports/summary"),
            lambda s: s["users"]["deactivated"] == 1,
        )
    assert summary["users"] == {"registered": 1, "deactivated": 1, "active": 0}
    assert summary["events"]["by_type"] == {"user.deactivated": 1, "user.registered": 1}


def test_the_runner_wires_every_service_to_the_bus() -> None:
    bus = EventBus(MemoryEventBackend())
    wired = starters(bus)
    assert set(wired) == {*SERVICES, *EVENT_SERVICES}
    assert len(wired) == 5
