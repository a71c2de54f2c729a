"""A real HTTP service on loopback whose behaviour each test scripts."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from tests.integration.client.helpers import Scripted
from tests.integration.loopback import serve


@pytest.fixture
async def upstream() -> AsyncIterator[tuple[Scripted, str]]:
    scripted = Scripted()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", scripted.handle)
    async with serve(app) as url:
        yield scripted, url
