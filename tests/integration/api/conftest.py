"""Fixtures: a served API app (see ``helpers.serving``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from tests.integration.api.helpers import Served, serving


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    async with serving() as s:
        yield s


@pytest.fixture
def serve() -> Callable[..., Any]:
    """``async with serve(queue_limit=5) as s:`` for a hub with other options."""
    return serving
