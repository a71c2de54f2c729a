"""Each reference service, started for real on loopback with a fresh SQLite file."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tanqory.apps import SERVICES, RunningService, inventory, legacy_erp, user_service


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


@pytest.fixture(params=sorted(SERVICES))
async def any_service(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[RunningService]:
    """Each of the three services in turn, for the behaviour they all share."""
    start = SERVICES[request.param]
    async with await start(tmp_path / f"{request.param}.db") as service:
        yield service
