"""analytics-reporting counts the event stream into aggregates, each event exactly once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from tests.integration.tanqory.helpers import FAST_CONSUMER, getter, until

from hybridmesh.events import CloudEvent, EventBus
from tanqory.apps import RunningService, analytics_reporting

DAY_1 = datetime(2025, 1, 30, 23, 59, tzinfo=UTC)
DAY_2 = datetime(2025, 1, 31, 8, 0, tzinfo=UTC)


def _event(type: str, when: datetime, **data: Any) -> CloudEvent:
    return CloudEvent.create(type, "/test", data, time=when)


STREAM = [
    _event("user.registered", DAY_1, user_id="U-1"),
    _event("user.registered", DAY_2, user_id="U-2"),
    _event("user.deactivated", DAY_2, user_id="U-1"),
    _event("order.created", DAY_2, user_id="U-2", order_id="O-1", total=19.99),
    _event("order.created", DAY_2, user_id="U-2", order_id="O-2", total="40.01"),
    _event("order.created", DAY_2, user_id="U-2", order_id="O-3"),
    _event("order.created", DAY_2, user_id="U-2", order_id="O-4", total="n/a"),
    _event("inventory.reserved", DAY_2, sku="SKU-1"),
]

SUMMARY = {
    "events": {
        "total": 8,
        "by_type": {
            "inventory.reserved": 1,
            "order.created": 4,
            "user.deactivated": 1,
            "user.registered": 2,
        },
    },
    "by_day": {
        "2025-01-30": {"total": 1, "by_type": {"user.registered": 1}},
        "2025-01-31": {
            "total": 7,
            "by_type": {
                "inventory.reserved": 1,
                "order.created": 4,
                "user.deactivated": 1,
                "user.registered": 1,
            },
        },
    },
    "users": {"registered": 2, "deactivated": 1, "active": 1},
    "orders": {"created": 4, "revenue": 60.0},
}


@pytest.fixture
async def analytics(tmp_path: Path, bus: EventBus) -> AsyncIterator[RunningService]:
    async with await analytics_reporting.start(
        tmp_path / "analytics.db", bus=bus, consumer=FAST_CONSUMER
    ) as service:
        yield service


async def _handled(http: aiohttp.ClientSession, service: RunningService, count: int) -> Any:
    return await until(
        getter(http, f"{service.url}/_admin/consumer"), lambda s: s["handled"] == count
    )


async def test_the_summary_is_exact_after_duplicate_deliveries(
    http: aiohttp.ClientSession, analytics: RunningService, bus: EventBus
) -> None:
    await bus.publish_many(STREAM)
    await bus.publish_many(STREAM)  # the bus itself drops a republished (source, id)
    # As the bus does after a consumer died holding events: deliver them to the group again.
    await bus.backend.publish(STREAM, group=analytics_reporting.NAME)
    status = await _handled(http, analytics, 2 * len(STREAM))
    assert status["duplicates"] == len(STREAM)
    assert status["dead_letters"] == []
    assert await getter(http, f"{analytics.url}/reports/summary")() == SUMMARY


async def test_event_counts_by_type_or_pattern(
    http: aiohttp.ClientSession, analytics: RunningService, bus: EventBus
) -> None:
    await bus.publish_many(STREAM)
    await _handled(http, analytics, len(STREAM))
    counts = getter(http, f"{analytics.url}/reports/events")
    assert (await counts())["count"] == 8
    by_pattern = await getter(http, f"{analytics.url}/reports/events?type=user.*")()
    assert by_pattern == {
        "type": "user.*",
        "count": 3,
        "by_type": {"user.deactivated": 1, "user.registered": 2},
    }
    exact = await getter(http, f"{analytics.url}/reports/events?type=order.created")()
    assert exact == {"type": "order.created", "count": 4, "by_type": {"order.created": 4}}
    none = await getter(http, f"{analytics.url}/reports/events?type=payment.*")()
    assert none == {"type": "payment.*", "count": 0, "by_type": {}}
    async with http.get(f"{analytics.url}/reports/events?type=user.>.x") as resp:
        assert resp.status == 422


async def test_an_empty_summary(http: aiohttp.ClientSession, analytics: RunningService) -> None:
    assert await getter(http, f"{analytics.url}/reports/summary")() == {
        "events": {"total": 0, "by_type": {}},
        "by_day": {},
        "users": {"registered": 0, "deactivated": 0, "active": 0},
        "orders": {"created": 0, "revenue": 0.0},
    }


async def test_aggregates_and_receipts_survive_a_restart(
    http: aiohttp.ClientSession, tmp_path: Path, bus: EventBus
) -> None:
    db = tmp_path / "analytics.db"
    async with await analytics_reporting.start(db, bus=bus, consumer=FAST_CONSUMER) as service:
        await bus.publish_many(STREAM)
        await _handled(http, service, len(STREAM))
    async with await analytics_reporting.start(db, bus=bus, consumer=FAST_CONSUMER) as service:
        await bus.backend.publish(STREAM[:2], group=analytics_reporting.NAME)
        status = await _handled(http, service, 2)
        assert status["duplicates"] == 2
        assert await getter(http, f"{service.url}/reports/summary")() == SUMMARY
