"""Read-model projections on NATS JetStream: the stream sequence is the position, an event
the stream holds twice is applied once, and a rebuild refuses when the stream has dropped
events the projection applied.

The tests use ``HYBRIDMESH_TEST_NATS_URL`` (default ``nats://127.0.0.1:4222``), each with a
prefix of its own whose streams are deleted afterwards; they skip when the server cannot be
reached, unless ``HYBRIDMESH_REQUIRE_SERVICES=1``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import nats
import pytest
from tests.waiting import eventually

from hybridmesh.data.projections import Projection, ProjectionGapError
from hybridmesh.events import CloudEvent, EventBus
from hybridmesh.events.backends.nats import NatsEventBackend
from hybridmesh.store import Store, open_store

from .order_totals import FAILING, order_totals, placed, totals

NATS_URL = os.environ.get("HYBRIDMESH_TEST_NATS_URL", "nats://127.0.0.1:4222")
REQUIRE_SERVICES = os.environ.get("HYBRIDMESH_REQUIRE_SERVICES", "") not in ("", "0", "false")

pytestmark = pytest.mark.nats


@dataclass
class OnJetStream:
    store: Store
    backend: NatsEventBackend
    bus: EventBus
    projection: Projection


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    """A prefix of the test's own (the server reachable, or the test skips); its streams
    are deleted afterwards."""
    try:
        nc = await asyncio.wait_for(nats.connect(NATS_URL, max_reconnect_attempts=1), 5)
        await nc.jetstream().account_info()
    except Exception as error:
        message = f"NATS JetStream is not reachable: {type(error).__name__}: {error}"
        if REQUIRE_SERVICES:
            pytest.fail(f"{message} (HYBRIDMESH_REQUIRE_SERVICES is set)", pytrace=False)
        pytest.skip(message)
    name = f"proj{uuid.uuid4().hex[:12]}"
    try:
        yield name
    finally:
        for suffix in ("EVENTS", "LEASES", "DLQ"):
            with contextlib.suppress(Exception):
                await nc.jetstream().delete_stream(f"{name.upper()}_{suffix}")
        await nc.close()


@pytest.fixture
async def on_jetstream(prefix: str, tmp_path: Path) -> AsyncIterator[OnJetStream]:
    FAILING.clear()
    store = await open_store(f"sqlite:///{tmp_path / 'mesh.db'}")
    await store.upgrade()
    # A short duplicate window, so that a test can make the stream hold an event twice.
    backend = NatsEventBackend(NATS_URL, prefix=prefix, dedupe_window=0.2)
    bus = EventBus(backend, poll_wait=0.05)
    await bus.start()
    await order_totals.open(store)
    order_totals.attach(bus)
    try:
        yield OnJetStream(store, backend, bus, order_totals)
    finally:
        await order_totals.close()
        await bus.close()
        await store.close()


async def stream_seqs(backend: NatsEventBackend) -> list[int]:
    """The stream sequence of every message the events stream holds, oldest first."""
    span = await backend.log_span()
    assert span.first is not None and span.last is not None
    return list(range(span.first, span.last + 1))


async def applied(on: OnJetStream, count: int) -> bool:
    return (await on.projection.info()).events_applied == count


async def test_an_event_the_stream_holds_twice_is_applied_once_and_rebuilt_alike(
    on_jetstream: OnJetStream,
) -> None:
    on = on_jetstream
    twice = placed("O-1", "ada", 30)
    await on.bus.publish(twice)
    await asyncio.sleep(0.5)  # past the duplicate window: the stream takes it again
    await on.bus.publish_many([twice, placed("O-2", "bob", 5)])
    assert len(await stream_seqs(on.backend)) == 3

    await eventually(lambda: applied(on, 2), what="two events applied")
    assert await totals(on.store) == {"ada": (1, 30), "bob": (1, 5)}
    info = await on.projection.info()
    assert info.checkpoint == (await stream_seqs(on.backend))[-1]

    await on.store.execute("DELETE FROM order_totals")
    result = await on.projection.rebuild(on.bus)
    assert (result.applied, result.skipped, result.lost) == (2, 1, None)
    assert await totals(on.store) == {"ada": (1, 30), "bob": (1, 5)}
    assert result.checkpoint == info.checkpoint


async def test_a_rebuild_refuses_when_the_stream_dropped_events_the_projection_applied(
    on_jetstream: OnJetStream,
) -> None:
    on = on_jetstream
    events = [placed(f"O-{n}", "ada", n) for n in range(1, 5)]
    await on.bus.publish_many([*events, CloudEvent.create("invoices.sent", "/billing", None)])
    await eventually(lambda: applied(on, 4), what="four events applied")
    first, second, third, *_ = await stream_seqs(on.backend)
    # The stream's limits drop its oldest messages: here, the two oldest.
    nc = await nats.connect(NATS_URL)
    try:
        await nc.jetstream().purge_stream(on.backend.layout.events_stream, seq=third)
    finally:
        await nc.close()

    with pytest.raises(ProjectionGapError) as refused:
        await on.projection.rebuild(on.bus)
    assert refused.value.gap.count == 2
    assert f"at log positions {first} to {second}, are gone" in str(refused.value)
    assert f"oldest event is now at position {third}" in str(refused.value)
    assert await totals(on.store) == {"ada": (4, 10)}  # unchanged

    result = await on.projection.rebuild(on.bus, allow_gap=True)
    assert (result.applied, result.missing_events, result.partial) == (2, 2, True)
    assert await totals(on.store) == {"ada": (2, 7)}
