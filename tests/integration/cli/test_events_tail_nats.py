"""``hybridmesh events tail`` on NATS JetStream: a real tail process stopped by a signal
leaves no consumer behind on the events stream.

The CLI uses the default prefix (``hybridmesh``): the test tails a pattern of its own, and
deletes the prefix's streams afterwards only if it was the one that created them.
"""

from __future__ import annotations

import asyncio
import json
import os
import select
import signal
import subprocess
import sys
import uuid
from typing import Any

import nats
import pytest
from tests.waiting import HANG, eventually_sync

from hybridmesh.events.backends.nats import NatsEventBackend
from hybridmesh.events.envelope import CloudEvent

NATS_URL = os.environ.get("HYBRIDMESH_TEST_NATS_URL", "nats://127.0.0.1:4222")
REQUIRE_SERVICES = os.environ.get("HYBRIDMESH_REQUIRE_SERVICES", "") not in ("", "0", "false")
STREAMS = ("HYBRIDMESH_EVENTS", "HYBRIDMESH_LEASES", "HYBRIDMESH_DLQ")

TAIL = [sys.executable, "-m", "hybridmesh", "events", "tail"]

pytestmark = pytest.mark.nats


async def _streams() -> set[str]:
    nc = await asyncio.wait_for(nats.connect(NATS_URL, connect_timeout=2), 5)
    try:
        return {info.config.name or "" for info in await nc.jsm().streams_info()}
    finally:
        await nc.close()


async def _delete(streams: set[str]) -> None:
    nc = await nats.connect(NATS_URL)
    try:
        for name in streams:
            await nc.jsm().delete_stream(name)
    finally:
        await nc.close()


async def _consumers_reading(pattern: str) -> int:
    """How many consumers of the events stream filter on ``pattern``."""
    nc = await nats.connect(NATS_URL)
    try:
        infos = await nc.jsm().consumers_info("HYBRIDMESH_EVENTS")
        return sum(1 for info in infos if (info.config.filter_subject or "").endswith(pattern))
    finally:
        await nc.close()


async def _publish(event: CloudEvent) -> None:
    backend = NatsEventBackend(NATS_URL)
    await backend.start()
    try:
        await backend.publish([event])
    finally:
        await backend.close()


def _line(stream: Any) -> str:
    ready, _, _ = select.select([stream], [], [], HANG)
    assert ready, f"no output within {HANG} s"
    return str(stream.readline())


@pytest.fixture
def default_streams() -> Any:
    try:
        before = asyncio.run(_streams())
    except Exception as error:
        message = f"NATS JetStream is not reachable: {type(error).__name__}: {error}"
        if REQUIRE_SERVICES:
            pytest.fail(f"{message} (HYBRIDMESH_REQUIRE_SERVICES is set)", pytrace=False)
        pytest.skip(message)
    yield
    created = (set(STREAMS) & asyncio.run(_streams())) - before
    asyncio.run(_delete(created))


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_tail_stopped_by_a_signal_leaves_no_consumer(
    default_streams: None, stop: signal.Signals
) -> None:
    pattern = f"tailtest{uuid.uuid4().hex[:10]}.*"
    event = CloudEvent.create(pattern.replace("*", "seen"), "/tests", {"n": 1})
    asyncio.run(_publish(event))  # creates the streams when they are missing
    env = {**os.environ, "HYBRIDMESH_EVENTS_URL": NATS_URL, "HYBRIDMESH_LOG_LEVEL": "WARNING"}
    tail = subprocess.Popen(
        [*TAIL, pattern, "--json", "--from", "earliest"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert json.loads(_line(tail.stdout))["id"] == event.id
        assert asyncio.run(_consumers_reading(pattern)) == 1  # its ephemeral consumer
        tail.send_signal(stop)
        assert tail.wait(HANG) == 0
        assert "Traceback" not in tail.stderr.read()
    finally:
        if tail.poll() is None:
            tail.kill()
            tail.wait()
    eventually_sync(lambda: asyncio.run(_consumers_reading(pattern)) == 0, what="no consumer")
