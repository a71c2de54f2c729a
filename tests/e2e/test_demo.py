"""`hybridmesh demo` end to end, as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def test_demo_runs_the_reference_system_and_shows_resilience(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "HYBRIDMESH_DATABASE_URL": f"sqlite:///{tmp_path / 'mesh.db'}",
        "COLUMNS": "200",
    }
    done = subprocess.run(
        [sys.executable, "-m", "hybridmesh", "demo"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "Loaded 11 service definitions" in out
    assert "traceparent: 00-" in out
    assert "closed -> open" in out
    assert "half_open -> closed" in out
    assert "cached answer" in out
    assert "via events" in out  # a command between microservices went as an event
    assert "WebSocket client got notification.sent (welcome" in out
    assert "dead letter" in out and "TemplateMissing" in out
    assert "replayed: the order-shipped notification" in out
    # Sagas and workflows: one order completes, one is compensated, a batch goes to a file.
    assert "Order with payment accepted: saga order-processing v1" in out
    assert "payment declined: saga order-processing v1" in out and "-> compensated" in out
    assert "(stock released)" in out
    assert "onboarding workflow completed" in out
    exported = [line for line in out.splitlines() if "legacy-erp batch exported to" in line]
    assert exported and ".csv" in out
    # The registry it loaded is in the store afterwards.
    listed = subprocess.run(
        [sys.executable, "-m", "hybridmesh", "registry", "list", "--json"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    assert listed.returncode == 0, listed.stderr
    assert "legacy-erp" in listed.stdout
    # So are the dead letter and its replay.
    letters = subprocess.run(
        [sys.executable, "-m", "hybridmesh", "dlq", "list", "--json"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    assert letters.returncode == 0, letters.stderr
    assert '"group":"notification-services"' in letters.stdout.replace(" ", "")
    assert '"replayed_at":null' not in letters.stdout.replace(" ", "")
    # The executions are in the store: the CLI lists them.
    listed = subprocess.run(
        [sys.executable, "-m", "hybridmesh", "executions", "list", "--json"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    assert listed.returncode == 0, listed.stderr
    statuses = sorted(e["status"] for e in json.loads(listed.stdout))
    assert statuses == ["compensated", "completed", "completed"]
    batch_files = list(
        (tmp_path / ".hybridmesh" / "exchange" / "legacy-erp" / "outbox").glob("*.csv")
    )
    assert len(batch_files) == 1
