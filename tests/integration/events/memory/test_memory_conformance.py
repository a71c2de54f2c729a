"""The conformance suite on the in-memory backend (the reference the others must match)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from tests.conformance.event_backend import EventBackendConformance, MakeBackend

from hybridmesh.events.backend import EventBackend
from hybridmesh.events.backends.memory import MemoryEventBackend


@pytest.fixture
async def shared() -> MemoryEventBackend:
    return MemoryEventBackend()


@pytest.fixture
async def backend(shared: MemoryEventBackend) -> AsyncIterator[EventBackend]:
    await shared.start()
    yield shared


@pytest.fixture
def make_backend(shared: MemoryEventBackend) -> MakeBackend:
    async def make() -> EventBackend:
        return shared  # one process: every "consumer" shares the same dicts

    return make


class TestMemoryBackend(EventBackendConformance):
    pass
