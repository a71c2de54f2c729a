"""Event triggers on a real bus (the SQL log on SQLite) and cron triggers on a fake clock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from hybridmesh.core.clock import FakeClock
from hybridmesh.core.errors import ConfigurationError, ValidationError
from hybridmesh.core.ids import idempotency_key
from hybridmesh.events import CloudEvent, EventBus
from hybridmesh.events.backends.sql import SqlEventBackend
from hybridmesh.functions import (
    FunctionCall,
    FunctionNotFoundError,
    FunctionRegistry,
    FunctionTriggers,
)
from hybridmesh.functions.triggers import MAX_SLEEP, trigger_group
from hybridmesh.observability import MeshMetrics


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(wall=datetime(2026, 1, 1, 9, 58, 30, tzinfo=UTC))


@pytest.fixture
async def registry() -> AsyncIterator[FunctionRegistry]:
    functions = FunctionRegistry(metrics=MeshMetrics())
    yield functions
    await functions.close()


@pytest.fixture
async def bus(sqlite_url: str, clock: FakeClock) -> AsyncIterator[EventBus]:
    backend = await SqlEventBackend.open(sqlite_url, clock=clock)
    await backend.start()
    event_bus = EventBus(backend, clock=clock, metrics=MeshMetrics())
    yield event_bus
    await event_bus.close()


async def until(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    async with asyncio.timeout(seconds):
        while not condition():  # noqa: ASYNC110 - the schedule loop runs beside us
            await asyncio.sleep(0)


def at(hour: int, minute: int) -> datetime:
    return datetime(2026, 1, 1, hour, minute, tzinfo=UTC)


# -- event triggers ------------------------------------------------------------------------


async def test_an_event_invokes_the_function_with_its_data_and_attributes(
    registry: FunctionRegistry, bus: EventBus
) -> None:
    calls: list[FunctionCall] = []

    async def on_order(call: FunctionCall) -> None:
        calls.append(call)

    registry.register("on-order", on_order)
    triggers = FunctionTriggers(registry, bus=bus)
    sub = triggers.on_event("order.*", "on-order")
    assert (
        sub.spec.name == trigger_group("on-order", "order.*") == "function-on-order-order-8faa6854"
    )
    created = CloudEvent.create("order.created", "/orders", {"id": 7}, subject="order/7")
    listed = CloudEvent.create("order.listed", "/orders", [1, 2])
    await bus.publish_many([created, listed, CloudEvent.create("user.created", "/users", {})])
    assert await bus.drain() == 2
    by_type = {call.payload["event"]["type"]: call for call in calls}
    assert by_type["order.created"].payload == {
        "id": 7,
        "event": {
            "id": created.id,
            "type": "order.created",
            "source": "/orders",
            "subject": "order/7",
            "time": created.time.isoformat() if created.time else None,
        },
    }
    assert by_type["order.listed"].payload["data"] == [1, 2]
    call = by_type["order.created"]
    assert call.idempotency_key == idempotency_key("on-order", "/orders", created.id)
    assert call.request_id == created.id  # the bus binds the event id as the request id


async def test_a_failing_function_ends_in_the_dead_letters_after_max_deliveries(
    registry: FunctionRegistry, bus: EventBus, clock: FakeClock
) -> None:
    keys: list[str] = []

    def charge(call: FunctionCall) -> None:
        keys.append(call.idempotency_key)
        raise RuntimeError(f"card declined for order {call.payload['order']}")

    registry.register("charge", charge)
    triggers = FunctionTriggers(registry, bus=bus)
    sub = triggers.on_event("order.placed", "charge", group="charging", max_deliveries=3)
    event = await bus.publish(CloudEvent.create("order.placed", "/shop", {"order": 12}))
    for _ in range(3):
        await bus.drain()
        clock.advance(120)  # past the bus's backoff
    [letter] = await bus.dead_letters(group="charging")
    assert letter.event is not None and letter.event.id == event.id
    assert letter.attempts == 3
    assert "card declined for order 12" in letter.reason and "3 attempts" in letter.reason
    assert len(keys) == 3 and len(set(keys)) == 1  # every delivery carries the same key
    assert (sub.retried, sub.dead_lettered) == (2, 1)


async def test_a_function_that_recovers_acknowledges_the_redelivered_event(
    registry: FunctionRegistry, bus: EventBus, clock: FakeClock
) -> None:
    attempts: list[int] = []

    async def flaky(call: FunctionCall) -> str:
        attempts.append(len(attempts) + 1)
        if len(attempts) == 1:
            raise ConnectionError("database restarting")
        return "ok"

    registry.register("flaky", flaky)
    FunctionTriggers(registry, bus=bus).on_event("job.>", "flaky", group="jobs")
    await bus.publish(CloudEvent.create("job.started", "/jobs", {}))
    await bus.drain()
    clock.advance(120)
    await bus.drain()
    assert attempts == [1, 2]
    assert await bus.dead_letters(group="jobs") == []


async def test_event_triggers_need_a_bus_and_a_known_function(registry: FunctionRegistry) -> None:
    registry.register("known", lambda call: None)
    triggers = FunctionTriggers(registry)
    with pytest.raises(ConfigurationError, match="no bus"):
        triggers.on_event("a.b", "known")
    with pytest.raises(FunctionNotFoundError):
        triggers.on_event("a.b", "unknown")
    with pytest.raises(FunctionNotFoundError):
        triggers.on_schedule("* * * * *", "unknown")
    with pytest.raises(ValidationError, match="field 'hour'"):
        triggers.on_schedule("0 24 * * *", "known")


# -- cron triggers -------------------------------------------------------------------------


async def test_a_schedule_fires_at_the_matching_minutes_with_its_payload(
    registry: FunctionRegistry, clock: FakeClock
) -> None:
    fired: list[tuple[datetime, Any, str]] = []

    async def report(call: FunctionCall) -> None:
        fired.append((clock.now(), call.payload, call.idempotency_key))

    registry.register("report", report)
    triggers = FunctionTriggers(registry, clock=clock)
    scheduled = triggers.on_schedule("*/15 * * * *", "report", {"kind": "sales"})
    await triggers.start()
    await until(lambda: len(fired) >= 3)
    await triggers.stop()
    assert [when for when, _, _ in fired[:3]] == [at(10, 0), at(10, 15), at(10, 30)]
    _, payload, key = fired[0]
    assert payload == {
        "kind": "sales",
        "schedule": {"cron": "*/15 * * * *", "time": "2026-01-01T10:00:00+00:00"},
    }
    assert key == idempotency_key("report", "*/15 * * * *", "2026-01-01T10:00:00+00:00")
    assert scheduled.fired >= 3 and scheduled.failed == 0
    assert clock.sleeps[:2] == [MAX_SLEEP, 30.0]  # 09:58:30 to 10:00 in bounded steps
    assert scheduled.task is None


async def test_a_failing_run_is_counted_and_the_schedule_keeps_going(
    registry: FunctionRegistry, clock: FakeClock
) -> None:
    runs: list[datetime] = []

    def nightly(call: FunctionCall) -> None:
        runs.append(clock.now())
        if len(runs) == 1:
            raise ValueError("no data for yesterday")

    registry.register("nightly", nightly)
    triggers = FunctionTriggers(registry, clock=clock)
    scheduled = triggers.on_schedule("@daily", "nightly")
    await triggers.start()
    await until(lambda: len(runs) >= 2)
    await triggers.stop()
    assert runs[:2] == [datetime(2026, 1, 2, tzinfo=UTC), datetime(2026, 1, 3, tzinfo=UTC)]
    assert scheduled.failed == 1
    assert scheduled.last_error is not None and "no data for yesterday" in scheduled.last_error
    assert "FunctionFailedError" in scheduled.last_error


async def test_a_run_that_outlasts_the_next_minute_skips_it_instead_of_overlapping(
    registry: FunctionRegistry, clock: FakeClock
) -> None:
    starts: list[datetime] = []
    running = peak = 0

    async def long_job(call: FunctionCall) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        starts.append(clock.now())
        await clock.sleep(20 * 60)  # runs 20 minutes on a 15-minute schedule
        running -= 1

    registry.register("long-job", long_job)
    triggers = FunctionTriggers(registry, clock=clock)
    triggers.on_schedule("*/15 * * * *", "long-job")
    await triggers.start()
    await until(lambda: len(starts) >= 3)
    await triggers.stop()
    assert starts[:3] == [at(10, 0), at(10, 30), at(11, 0)]
    assert peak == 1


async def test_stop_lets_a_run_in_flight_finish(
    registry: FunctionRegistry, clock: FakeClock
) -> None:
    started, finish = asyncio.Event(), asyncio.Event()
    finished: list[bool] = []

    async def job(call: FunctionCall) -> None:
        started.set()
        await finish.wait()
        finished.append(True)

    registry.register("job", job)
    triggers = FunctionTriggers(registry, clock=clock)
    triggers.on_schedule("@hourly", "job")
    await triggers.start()
    await started.wait()
    stopping = asyncio.create_task(triggers.stop())
    for _ in range(20):  # stop runs as far as it can: up to waiting for the run
        await asyncio.sleep(0)
    assert not stopping.done()
    finish.set()
    await stopping
    assert finished == [True]


async def test_a_schedule_added_while_running_starts_at_once(
    registry: FunctionRegistry, clock: FakeClock
) -> None:
    fired: list[datetime] = []

    async def tick(call: FunctionCall) -> None:
        fired.append(clock.now())

    registry.register("tick", tick)
    triggers = FunctionTriggers(registry, clock=clock)
    await triggers.start()
    triggers.on_schedule("0 12 * * *", "tick")
    await until(lambda: len(fired) >= 1)
    await triggers.stop()
    assert fired[0] == at(12, 0)
