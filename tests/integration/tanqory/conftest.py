"""Each reference service, started for real on loopback with a fresh SQLite file."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from hybridmesh.events import EventBus
from hybridmesh.events.backends.memory import MemoryEventBackend
from tanqory.apps import (
    EVENT_SERVICES,
    SERVICES,
    RunningService,
    inventory,
    legacy_erp,
    user_service,
)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        yield session


@pytest.fixture
async def users(tmp_path: Path) -> AsyncIterator[RunningService]:
    async with await user_service.start(tmp_path / "user-service.db") as service:
        yield service


@pytest.fixture
async def stock(tmp_path: Path) -> AsyncIterator[RunningService]:
    async with await inventory.start(tmp_path / "inventory.db") as service:
        yield service


@pytest.fixture
async def erp(tmp_path: Path) -> AsyncIterator[RunningService]:
    async with await legacy_erp.start(tmp_path / "legacy-erp.db") as service:
        yield service


@pytest.fixture
async def bus() -> AsyncIterator[EventBus]:
    """A bus on the in-memory backend that wakes its consumers within 50 ms."""
    bus = EventBus(MemoryEventBackend(), poll_wait=0.05)
    try:
        yield bus
    finally:
        await bus.close()


@pytest.fixture(params=sorted([*SERVICES, *EVENT_SERVICES]))
async def any_service(
    request: pytest.FixtureRequest, tmp_path: Path, bus: EventBus
) -> AsyncIterator[RunningService]:
    """Each of the five services in turn, for the behaviour they all share."""
    db_path = tmp_path / f"{request.param}.db"
    if request.param in EVENT_SERVICES:
        service = await EVENT_SERVICES[request.param](db_path, bus=bus)
    else:
        service = await SERVICES[request.param](db_path)
    async with service:
        yield service
