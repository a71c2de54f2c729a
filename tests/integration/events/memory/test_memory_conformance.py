"""The conformance suite on the in-memory backend (the reference the others must match)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from tests.conformance.event_backend import EventBackendConformance, MakeBackend
from tests.waiting import eventually

from hybridmesh.core.clock import SystemClock
from hybridmesh.events.backend import EventBackend
from hybridmesh.events.backends.memory import MemoryEventBackend


@pytest.fixture
async def shared() -> MemoryEventBackend:
    return MemoryEventBackend()


@pytest.fixture
async def backend(shared: MemoryEventBackend) -> AsyncIterator[EventBackend]:
    await shared.start()
    yield shared


@pytest.fixture
def make_backend(shared: MemoryEventBackend) -> MakeBackend:
    async def make() -> EventBackend:
        return shared  # one process: every "consumer" shares the same dicts

    return make


class TestMemoryBackend(EventBackendConformance):
    pass


async def test_a_failing_settle_does_not_stop_the_consumer() -> None:
    """The store hiccups while settling: the batch is delivered again, the consumer lives."""

    from hybridmesh.events.backend import PartitionBatch, Settlement
    from hybridmesh.events.bus import EventBus
    from hybridmesh.events.envelope import CloudEvent

    class Flaky(MemoryEventBackend):
        failures = 1

        async def settle(self, batch: PartitionBatch, settlement: Settlement) -> None:
            if self.failures:
                self.failures -= 1
                raise ConnectionError("database went away")
            await super().settle(batch, settlement)

    backend = Flaky()
    bus = EventBus(backend, poll_wait=0.05, clock=_QuickClock())
    seen: list[str] = []

    async def handler(event: CloudEvent) -> None:
        seen.append(event.id)

    bus.subscribe(">", handler, group="g", ack_wait=0.3)
    sent = await bus.publish(CloudEvent.create("a.b", "/t", {}))
    async with bus:
        await eventually(lambda: len(seen) >= 2, what="a second delivery")
        task = bus.subscriptions["g"].task
        assert task is not None and not task.done()
    assert seen == [sent.id, sent.id]  # at least once: handled again after the lease expired


class _QuickClock(SystemClock):
    """The real clock, but the bus's pause after a failure is short."""

    async def sleep(self, seconds: float) -> None:
        await super().sleep(min(seconds, 0.05))
