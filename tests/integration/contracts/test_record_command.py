"""``hybridmesh contracts record``: a real process's calls recorded through the setting."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from tests.cli_in_process import run_cli_parts
from tests.integration.contracts.user_service import user_service
from tests.integration.loopback import serve

from hybridmesh.contracts.pact import read_pacts

# A program that uses the library as a service would: its runtime's hybrid client makes
# calls for two callers; recording is on only through the environment `record` sets.
CALLER = """
import asyncio, sys
from hybridmesh.client import CommunicationRequest
from hybridmesh.core.settings import get_settings
from hybridmesh.registry import ServiceDefinition, ServiceRegistry
from hybridmesh.runtime import Runtime

def define(name):
    return ServiceDefinition.model_validate(
        {"name": name, "architecture": "microservice", "base_url": sys.argv[1],
         "version": "v1", "capabilities": {"synchronous": True}})

async def main():
    registry = ServiceRegistry([define(n) for n in ("user-service", "order-service", "billing")])
    async with await Runtime.open(get_settings(), registry=registry, events=False) as runtime:
        for caller in ("order-service", "billing"):
            for n in range(3):
                await runtime.client.communicate(
                    caller, "user-service", CommunicationRequest(endpoint=f"/users/{n}"))

asyncio.run(main())
"""


async def test_record_runs_a_command_with_recording_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    script = tmp_path / "caller.py"
    script.write_text(CALLER)
    folder = tmp_path / "recorded"
    monkeypatch.setenv("HYBRIDMESH_DATABASE_URL", f"sqlite:///{tmp_path / 'mesh.db'}")
    monkeypatch.delenv("HYBRIDMESH_CONTRACTS_RECORD", raising=False)
    async with serve(user_service()) as url:
        code, out, err = await run_cli_parts(
            capsys,
            f"sqlite:///{tmp_path / 'mesh.db'}",
            "contracts",
            "record",
            "--service",
            "order-service",
            "--duration",
            "5m",
            "--dir",
            str(folder),
            "--",
            sys.executable,
            str(script),
            url,
        )
    assert code == 0, err
    assert "recorded 1 interaction(s) in 1 file(s)" in err
    (pact,) = read_pacts(folder)
    assert (pact.consumer, pact.provider) == ("order-service", "user-service")
    assert [i.identity for i in pact.interactions] == ["GET /users/{id} 200"]

    code, out, err = await run_cli_parts(
        capsys,
        f"sqlite:///{tmp_path / 'mesh.db'}",
        "contracts",
        "list",
        "--dir",
        str(folder),
        "--json",
    )
    assert code == 0
    (listed,) = json.loads(out)
    assert listed["interactions"] == ["GET /users/{id} 200"]


async def test_a_command_still_running_at_the_end_is_stopped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = await run_cli_parts(
        capsys,
        f"sqlite:///{tmp_path / 'mesh.db'}",
        "contracts",
        "record",
        "--duration",
        "1s",
        "--dir",
        str(tmp_path / "recorded"),
        "--",
        sys.executable,
        "-c",
        "import time; time.sleep(600)",
    )
    assert code == 0, err
    assert "recorded 0 interaction(s) in 0 file(s)" in err


async def test_a_command_that_fails_on_its_own_fails_the_recording(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = await run_cli_parts(
        capsys,
        f"sqlite:///{tmp_path / 'mesh.db'}",
        "contracts",
        "record",
        "--dir",
        str(tmp_path / "recorded"),
        "--",
        sys.executable,
        "-c",
        "raise SystemExit(3)",
    )
    assert code == 1
    assert "the command exited with status 3" in err


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--duration", "soon", "--", "true"], "not a duration"),
        (["--duration", "30s"], "Missing argument"),
        (["--", "/nonexistent/program"], "cannot run"),
    ],
)
async def test_bad_record_options_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], words: str
) -> None:
    code, out, err = await run_cli_parts(
        capsys,
        f"sqlite:///{tmp_path / 'mesh.db'}",
        "contracts",
        "record",
        "--dir",
        str(tmp_path / "r"),
        *args,
    )
    assert code == 2
    assert words in out + err
