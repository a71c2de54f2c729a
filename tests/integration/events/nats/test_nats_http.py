"""``hybridmesh serve`` on a NATS bus: one bad event does not poison the bus, and
``/livez``, ``/readyz`` and ``/healthz`` tell a bus that cannot publish or fetch."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from tests.integration.events.nats.conftest import PrivateNats, hang_up
from tests.waiting import eventually

from hybridmesh.api import create_app
from hybridmesh.events.backends.nats import NatsEventBackend
from hybridmesh.events.bus import EventBus
from hybridmesh.events.envelope import STRUCTURED_CONTENT_TYPE, CloudEvent

pytestmark = pytest.mark.nats

STRUCTURED = {"Content-Type": STRUCTURED_CONTENT_TYPE}


@dataclass
class Served:
    url: str
    http: aiohttp.ClientSession
    backend: NatsEventBackend
    seen: list[str]

    async def post(self, body: bytes | str) -> tuple[int, Any]:
        async with self.http.post(self.url + "/events", data=body, headers=STRUCTURED) as r:
            return r.status, await r.json(content_type=None)

    async def status(self, path: str) -> tuple[int, Any]:
        async with self.http.get(self.url + path) as response:
            return response.status, await response.json()


@asynccontextmanager
async def serving(url: str, prefix: str, **options: Any) -> AsyncIterator[Served]:
    backend = NatsEventBackend(url, prefix=prefix, **options)
    bus = EventBus(backend, poll_wait=0.2)
    seen: list[str] = []

    async def handler(event: CloudEvent) -> None:
        seen.append(event.id)

    # Leases in hand when a connection dies come back after ack_wait: keep it short here.
    bus.subscribe(">", handler, group="sink", ack_wait=2.0)
    runner = web.AppRunner(create_app(bus), access_log=None)
    await runner.setup()
    await bus.start()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        async with aiohttp.ClientSession() as http:
            yield Served(f"http://127.0.0.1:{runner.addresses[0][1]}", http, backend, seen)
    finally:
        await runner.cleanup()
        await bus.close()


def event() -> CloudEvent:
    return CloudEvent.create("user.registered", "/tests", {"n": 1})


async def test_a_10000_character_type_is_400_and_the_bus_goes_on(
    nats_url: str, prefix: str
) -> None:
    async with serving(nats_url, prefix) as served:
        bad = {**event().to_dict(), "type": "a" * 10_000}
        status, problem = await served.post(json.dumps(bad))
        assert status == 400
        assert [e["field"] for e in problem["errors"]] == ["type"]
        good = event()
        assert (await served.post(good.to_json()))[0] == 202
        await eventually(lambda: served.seen == [good.id], what="the good event consumed")
        assert (await served.status("/healthz"))[0] == 200


async def test_after_the_server_closed_the_connection_events_are_taken_again(
    nats_url: str, prefix: str
) -> None:
    async with serving(nats_url, prefix) as served:
        await hang_up(served.backend)
        good = event()
        assert (await served.post(good.to_json()))[0] == 202
        await eventually(lambda: served.seen == [good.id], what="the event consumed")
        assert (await served.status("/readyz"))[0] == 200


async def test_readiness_follows_the_nats_server_and_liveness_does_not(
    private_nats: PrivateNats,
) -> None:
    async with serving(private_nats.url, f"r{uuid.uuid4().hex[:8]}", request_timeout=1) as served:
        assert await served.status("/readyz") == (
            200,
            {"status": "ok", "checks": {"bus": {"status": "ok", "backend": "nats"}}},
        )
        private_nats.stop()

        async def unready() -> bool:
            status, body = await served.status("/readyz")
            return status == 503 and "sink" in body["checks"]["bus"].get("failing_groups", {})

        await eventually(unready, what="/readyz naming the failing group")
        status, body = await served.status("/healthz")
        assert (status, body["status"], body["checks"]["bus"]["status"]) == (
            503,
            "unavailable",
            "failing",
        )
        assert "error" in body["checks"]["bus"]
        assert await served.status("/livez") == (200, {"status": "ok"})
        status, problem = await served.post(event().to_json())
        # Not accepted, so not lost: the client sends it again later, as the answer says.
        assert (status, problem["detail"].startswith("the event backend did not take")) == (
            503,
            True,
        )

        private_nats.start()

        async def ready() -> bool:
            return (await served.status("/readyz"))[0] == 200

        await eventually(ready, what="/readyz after the server came back")
        again = event()
        assert (await served.post(again.to_json()))[0] == 202
        await eventually(lambda: again.id in served.seen, what="the event after the restart")
