"""The aiohttp session of GraphQL, batch and function calls (``HttpSession.fetch``), held to
the HTTP client conformance suite."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from tests.conformance.http_client import HttpClientConformance, Send

from hybridmesh.transports import HttpSession


class TestAiohttpSession(HttpClientConformance):
    connection_errors = (aiohttp.ClientError,)
    resends_after_stale_reuse = staticmethod(HttpSession.resends_after_stale_reuse)

    @pytest.fixture
    async def send(self) -> AsyncIterator[Send]:
        session = HttpSession()
        try:
            yield session.fetch
        finally:
            await session.close()
