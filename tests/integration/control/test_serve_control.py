"""``hybridmesh serve`` mounts the control plane: a token made with the CLI works on it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hybridmesh", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def get(url: str, token: str | None = None) -> tuple[int, object]:
    request = urllib.request.Request(url)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as refused:
        return refused.code, json.loads(refused.read())


def test_serve_answers_the_api_with_a_cli_token_and_describes_it(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "HYBRIDMESH_DATABASE_URL": f"sqlite:///{tmp_path / 'mesh.db'}",
        "HYBRIDMESH_EXCHANGE_DIR": str(tmp_path / "exchange"),
        "HYBRIDMESH_LOG_LEVEL": "WARNING",
    }
    env.pop("HYBRIDMESH_EVENTS_URL", None)
    created = cli(env, "tokens", "create", "viewer", "--role", "read", "--json")
    assert created.returncode == 0, created.stderr
    token = json.loads(created.stdout)["token"]
    assert "/api/v1" in cli(env, "serve", "--help").stdout

    server = subprocess.Popen(
        [sys.executable, "-m", "hybridmesh", "serve", "--no-worker", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        assert line.startswith("serving on "), line
        url = line.split()[2]
        assert get(url + "/api/v1/executions", token) == (200, {"items": [], "next_cursor": None})
        assert get(url + "/api/v1/executions")[0] == 401
        status, document = get(url + "/openapi.json")
        assert status == 200 and isinstance(document, dict)
        assert "/api/v1/executions/{id}/cancel" in document["paths"]
    finally:
        server.send_signal(signal.SIGTERM)
        _, err = server.communicate(timeout=30)
    assert server.returncode == 0, err
