"""The real ``hybridmesh gateway`` process with keys made and revoked by the real CLI: a
new key works without a restart, and a revoked one is refused as soon as the replica
reads the store's new revision (it reads every half second)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import aiohttp
from tests.integration.gateway.auth_rig import upstream
from tests.waiting import HANG, eventually

#: How long a change may take to reach the replica: ten of its reads of the revision.
LIVE = 5.0


async def hybridmesh(env: dict[str, str], *args: str) -> str:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hybridmesh",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), HANG)
    assert process.returncode == 0, (args, out, err)
    return out.decode()


async def test_a_cli_key_passes_and_its_revocation_is_refused_live(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "HYBRIDMESH_DATABASE_URL": f"sqlite:///{tmp_path / 'mesh.db'}",
        "HYBRIDMESH_LOG_LEVEL": "WARNING",
    }
    async with upstream() as app:
        routes = tmp_path / "routes.yaml"
        routes.write_text(
            f"""routes:
  - name: orders
    match: {{path: {{prefix: /orders}}}}
    backends:
      - {{name: main, url: "{app.url}", weight: 100}}
    policies:
      key_auth: {{hide_credentials: true}}
"""
        )
        await hybridmesh(env, "routes", "apply", str(routes))
        log = (tmp_path / "gateway.log").open("wb")
        gateway = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "hybridmesh",
            "gateway",
            "--port",
            "0",
            "--no-access-log",
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
        )
        try:
            assert gateway.stdout is not None
            line = (await asyncio.wait_for(gateway.stdout.readline(), HANG)).decode()
            assert line.startswith("gateway listening on http://"), line
            base = line.split()[-1]

            created = json.loads(
                await hybridmesh(env, "keys", "create", "--consumer", "alice", "--json")
            )
            key = {"apikey": created["key"]}
            async with aiohttp.ClientSession() as http:

                async def status(headers: dict[str, str]) -> int:
                    async with http.get(base + "/orders/7", headers=headers) as answer:
                        await answer.read()
                        return answer.status

                async def key_gets(expected: int) -> bool:
                    return await status(key) == expected

                await eventually(lambda: key_gets(200), LIVE, "the new key accepted by the replica")
                assert await status({}) == 401
                assert await status({"apikey": created["key"] + "x"}) == 401
                seen = dict((n, v) for n, v in app.hits[-1]["headers"])
                assert seen["x-consumer-username"] == "alice"
                assert seen["x-credential-identifier"] == created["id"]
                assert "apikey" not in seen

                await hybridmesh(env, "keys", "revoke", created["id"])
                await eventually(
                    lambda: key_gets(401), LIVE, "the revoked key refused by the replica"
                )
                hits = len(app.hits)
                assert await status(key) == 401
                assert len(app.hits) == hits

            listed = json.loads(await hybridmesh(env, "keys", "list", "--json"))
            assert [(k["id"], k["status"]) for k in listed] == [(created["id"], "revoked")]
        finally:
            if gateway.returncode is None:
                gateway.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(gateway.wait(), HANG)
            log.close()
        assert code == 0, (tmp_path / "gateway.log").read_text()
