"""The WebSocket hub of ``hybridmesh serve`` on NATS leaves no durable consumer behind when
the process is killed: it reads on an ephemeral consumer, which the server deletes once it
has had no pull for ``READER_INACTIVE`` seconds."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import nats
import pytest
from nats.js.api import ConsumerInfo
from tests.integration.events.nats.conftest import PrivateNats
from tests.integration.hub_process import serve_then_kill

from hybridmesh.events.backends._nats_reader import READER_INACTIVE

pytestmark = pytest.mark.nats


async def _consumers(url: str) -> list[ConsumerInfo]:
    nc = await nats.connect(url)
    try:
        return await nc.jsm().consumers_info("HYBRIDMESH_EVENTS")
    finally:
        await nc.close()


def test_a_killed_server_leaves_only_consumers_the_server_deletes(
    private_nats: PrivateNats, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "HYBRIDMESH_DATABASE_URL": f"sqlite:///{tmp_path / 'mesh.db'}",
        "HYBRIDMESH_EVENTS_URL": private_nats.url,
        "HYBRIDMESH_EXCHANGE_DIR": str(tmp_path / "exchange"),
        "HYBRIDMESH_LOG_LEVEL": "WARNING",
    }
    serve_then_kill(env)
    consumers = asyncio.run(_consumers(private_nats.url))
    # Each one left is ephemeral, to be deleted by the server after READER_INACTIVE.
    assert [(c.config.durable_name, c.config.inactive_threshold) for c in consumers] == [
        (None, READER_INACTIVE) for _ in consumers
    ]
