"""Batch integrations on every store, a fake clock, and a bulk endpoint on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from tests.integration.batch.helpers import START, BulkEndpoint, OpenBatch
from tests.integration.client.conftest import upstream

from hybridmesh.batch import BatchIntegration
from hybridmesh.core.clock import FakeClock
from hybridmesh.review import ReviewQueue
from hybridmesh.store import Store, open_store


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(wall=START)


@pytest.fixture
def exchange(tmp_path: Path) -> Path:
    return tmp_path / "exchange"


@pytest.fixture
async def open_batch(
    database_url: str, clock: FakeClock, exchange: Path
) -> AsyncIterator[OpenBatch]:
    """Open an integration on its own store (its own connection, as another process would),
    with a review queue on that store."""
    opened: list[tuple[BatchIntegration, Store]] = []

    async def make(**options: Any) -> BatchIntegration:
        store = await open_store(database_url)
        await store.upgrade()
        options.setdefault("clock", clock)
        options.setdefault("exchange_dir", exchange)
        options.setdefault("review", ReviewQueue(store, clock=options["clock"]))
        batch = BatchIntegration(store, **options)
        opened.append((batch, store))
        return batch

    yield make
    for batch, store in opened:
        await batch.close()
        await store.close()


async def _moved(request: web.Request) -> web.Response:
    raise web.HTTPTemporaryRedirect("/bulk/orders")


@pytest.fixture
async def bulk() -> AsyncIterator[BulkEndpoint]:
    endpoint = BulkEndpoint()
    app = web.Application()
    app.router.add_post("/bulk/{operation}", endpoint.handle)
    app.router.add_route("*", "/moved", _moved)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    endpoint.url = f"http://127.0.0.1:{runner.addresses[0][1]}/bulk"
    try:
        yield endpoint
    finally:
        await runner.cleanup()


__all__ = ["upstream"]
