"""The bus's log lines about an event carry the trace the event was published in."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from hybridmesh.events import CloudEvent, EventBus
from hybridmesh.events.backends.memory import MemoryEventBackend
from hybridmesh.observability import JsonFormatter, continue_trace

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


@pytest.fixture
def written() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    log = logging.getLogger("hybridmesh.events")
    log.addHandler(handler)
    yield stream
    log.removeHandler(handler)


async def test_a_dead_lettered_event_is_logged_in_its_trace(written: io.StringIO) -> None:
    bus = EventBus(MemoryEventBackend())

    async def broken(event: CloudEvent) -> None:
        raise ValueError("no template")

    bus.subscribe("order.*", broken, group="mailer", max_deliveries=1)
    with continue_trace({"traceparent": f"00-{TRACE_ID}-00f067aa0ba902b7-01"}):
        event = await bus.publish(CloudEvent.create("order.shipped", "/orders", {"order": 1}))
    await bus.drain()
    await bus.close()
    lines = [json.loads(line) for line in written.getvalue().splitlines()]
    (dead,) = [line for line in lines if "dead-lettered" in line["message"]]
    assert dead["trace_id"] == TRACE_ID and dead["span_id"] is not None
    assert dead["request_id"] == event.id
