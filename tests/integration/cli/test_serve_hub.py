"""The WebSocket hub of ``hybridmesh serve`` on the SQL log leaves nothing behind, however
the process ends: it reads the bus without a consumer group."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from tests.integration.hub_process import serve_then_kill


def test_a_killed_server_leaves_no_group_of_its_websocket_hub(tmp_path: Path) -> None:
    database = tmp_path / "mesh.db"
    env = {
        **os.environ,
        "HYBRIDMESH_DATABASE_URL": f"sqlite:///{database}",
        "HYBRIDMESH_EXCHANGE_DIR": str(tmp_path / "exchange"),
        "HYBRIDMESH_LOG_LEVEL": "WARNING",
    }
    env.pop("HYBRIDMESH_EVENTS_URL", None)
    serve_then_kill(env)
    with sqlite3.connect(database) as db:
        assert db.execute("SELECT name FROM event_groups").fetchall() == []
