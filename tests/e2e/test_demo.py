"""`hybridmesh demo` end to end, as a user runs it."""

from __future__ import annotations

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
