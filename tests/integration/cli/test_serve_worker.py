"""``hybridmesh serve`` is also a worker in the embedded mode: a detached saga runs there."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.waiting import eventually_sync


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hybridmesh", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def test_a_detached_saga_runs_in_serve_and_serve_stops_cleanly(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "HYBRIDMESH_DATABASE_URL": f"sqlite:///{tmp_path / 'mesh.db'}",
        "HYBRIDMESH_EXCHANGE_DIR": str(tmp_path / "exchange"),
        "HYBRIDMESH_LOG_LEVEL": "WARNING",
    }
    env.pop("HYBRIDMESH_EVENTS_URL", None)
    (tmp_path / "services.yaml").write_text(
        "- name: nowhere\n  architecture: microservice\n  version: v1\n"
        "  base_url: http://127.0.0.1:9\n"
    )
    (tmp_path / "saga.yaml").write_text(
        "saga_type: parked\nsteps:\n  - step_id: call\n    service_name: nowhere\n"
        "    operation: call\n    retry_policy: {max_attempts: 2, backoff_ms: 10}\n"
    )
    assert cli(env, "registry", "load", str(tmp_path / "services.yaml")).returncode == 0
    assert cli(env, "definitions", "load", str(tmp_path / "saga.yaml")).returncode == 0
    started = cli(env, "saga", "start", "parked", "--detach", "--json")
    assert started.returncode == 0, started.stderr
    execution_id = json.loads(started.stdout)["id"]

    server = subprocess.Popen(
        [sys.executable, "-m", "hybridmesh", "serve", "--dev-tokens", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        shown = cli(env, "executions", "show", execution_id, "--json")

        def ended() -> bool:
            nonlocal shown
            shown = cli(env, "executions", "show", execution_id, "--json")
            return bool(json.loads(shown.stdout)["status"] != "running")

        eventually_sync(ended, what="the saga ending", every=0.2)
        # Its only service refuses connections: both attempts fail, nothing to undo.
        assert json.loads(shown.stdout)["status"] == "compensated"
        history = [h["type"] for h in json.loads(shown.stdout)["history"]]
        assert history.count("step.started") == 2
    finally:
        server.send_signal(signal.SIGTERM)
        out, err = server.communicate(timeout=30)
    assert server.returncode == 0, err
    assert "serving on http://127.0.0.1:" in out
