"""Imports point down: the HTTP layer may use the events package, never the reverse."""

from __future__ import annotations

import subprocess
import sys


def test_importing_the_events_package_loads_nothing_of_the_http_layer() -> None:
    probe = (
        "import sys, hybridmesh.events, hybridmesh.events.backends.memory\n"
        "print(sorted(m for m in sys.modules if m.startswith('hybridmesh.api')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]"


def test_the_websocket_hub_lives_in_the_http_layer() -> None:
    from hybridmesh.api.websocket import WebSocketHub

    assert WebSocketHub.__module__ == "hybridmesh.api.websocket"
