"""Chaos experiments against a real gateway on loopback: ``hybridmesh chaos run`` and the
Chaos Toolkit's own ``chaos run`` on the same file, a fault's expiry, a malformed file."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
from tests.integration.gateway.policy_harness import Upstream
from tests.waiting import eventually

from hybridmesh.chaos.gateway_faults import fault_settings, inject_fault
from hybridmesh.gateway.config import parse_routes
from hybridmesh.gateway.server import Gateway, GatewaySettings
from hybridmesh.gateway.state import GatewayState, SnapshotWatcher
from hybridmesh.store import open_store

ROUTES = """\
routes:
  - name: shop
    match: {{path: {{prefix: /shop}}}}
    backends:
      - {{name: main, url: "{url}", weight: 100}}
"""

EXPERIMENT = """\
title: the shop answers
description: the shop route answers every call, even while {what}
steady-state-hypothesis:
  title: calls succeed
  probes:
    - type: probe
      name: calls-succeed
      tolerance: {{type: range, range: [1, 1]}}
      provider:
        type: python
        module: hybridmesh.chaos.probes
        func: http_success_ratio
        arguments: {{url: "{gateway}/shop/items", requests: 5}}
method:
{method}
rollbacks:
  - type: action
    name: clear-faults
    provider:
      type: python
      module: hybridmesh.chaos.actions
      func: clear_route_faults
      arguments: {{route: shop, database_url: "{db}"}}
"""

HARMLESS = """\
  - type: probe
    name: dead-letters
    provider:
      type: python
      module: hybridmesh.chaos.probes
      func: dlq_size
      arguments: {{database_url: "{db}"}}
"""

ABORT = """\
  - type: action
    name: abort-everything
    provider:
      type: python
      module: hybridmesh.chaos.actions
      func: inject_route_fault
      arguments: {{route: shop, abort_status: 503, duration: 300, database_url: "{db}"}}
    pauses: {{after: 1.5}}
"""


class Rig:
    def __init__(self, db: str, gateway: str, state: GatewayState) -> None:
        self.db = db
        self.gateway = gateway
        self.state = state

    def experiment(self, path: Path, method: str, what: str) -> Path:
        text = EXPERIMENT.format(
            what=what, gateway=self.gateway, db=self.db, method=method.format(db=self.db)
        )
        path.write_text(text)
        return path

    async def status(self) -> int:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{self.gateway}/shop/items") as answer,
        ):
            return answer.status


@asynccontextmanager
async def shop(tmp_path: Path) -> AsyncIterator[Rig]:
    db = f"sqlite:///{tmp_path / 'mesh.db'}"
    store = await open_store(db)
    await store.upgrade()
    async with Upstream().running() as upstream:
        state = GatewayState(store)
        await state.apply(parse_routes(ROUTES.format(url=upstream.url), "routes.yaml"))
        gateway = Gateway(GatewaySettings(access_log=False))
        watcher = SnapshotWatcher(state, gateway.use, poll_seconds=0.1)
        gateway.use(await watcher.start())
        host, port = await gateway.start("127.0.0.1", 0)
        try:
            yield Rig(db, f"http://{host}:{port}", state)
        finally:
            await watcher.close()
            await gateway.close(1.0)
            await store.close()


async def run(*command: str) -> tuple[int, str, str]:
    child = await asyncio.create_subprocess_exec(
        *command,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    out, err = await child.communicate()
    return int(child.returncode or 0), out.decode(), err.decode()


HYBRIDMESH = (sys.executable, "-m", "hybridmesh")


async def test_hypothesis_holds_without_a_fault(tmp_path: Path) -> None:
    async with shop(tmp_path) as rig:
        path = rig.experiment(tmp_path / "calm.yaml", HARMLESS, "nothing happens")
        report = tmp_path / "report.json"
        code, out, err = await run(*HYBRIDMESH, "chaos", "run", str(path), "--report", str(report))
        assert code == 0, out + err
        data = json.loads(report.read_text())
        assert data["status"] == "completed" and data["hypothesis_held"] is True
        assert data["steady_states"]["after"]["probes"][0]["output"] == 1.0


async def test_an_abort_breaks_the_hypothesis_and_the_rollback_clears_it(tmp_path: Path) -> None:
    async with shop(tmp_path) as rig:
        path = rig.experiment(tmp_path / "abort.yaml", ABORT, "every call is aborted")
        report = tmp_path / "report.json"
        code, out, err = await run(
            *HYBRIDMESH, "chaos", "run", str(path), "--report", str(report), "--json"
        )
        assert code == 1, out + err
        data = json.loads(report.read_text())
        assert data["status"] == "deviated" and data["hypothesis_held"] is False
        assert data["steady_states"]["after"]["probes"][0]["output"] == 0.0
        assert [r["status"] for r in data["rollbacks"]] == ["succeeded"]
        assert data["rollbacks"][0]["output"] == {"route": "shop", "removed": True}
        assert "faults" not in (await rig.state.route("shop")).route.policies

        async def answers() -> bool:
            return await rig.status() == 200

        await eventually(answers, what="the shop answering after the rollback")


@pytest.mark.skipif(
    shutil.which("chaos", path=str(Path(sys.executable).parent)) is None,
    reason="the Chaos Toolkit is a dev dependency",
)
async def test_the_same_file_under_the_chaos_toolkit(tmp_path: Path) -> None:
    chaos = str(Path(sys.executable).parent / "chaos")
    async with shop(tmp_path) as rig:
        path = rig.experiment(tmp_path / "abort.yaml", ABORT, "every call is aborted")
        journal = tmp_path / "journal.json"
        _, out, err = await run(
            chaos,
            "--no-log-file",
            "run",
            "--rollback-strategy",
            "always",
            "--journal-path",
            str(journal),
            str(path),
        )
        data = json.loads(journal.read_text())
        assert data["status"] == "failed" or data["deviated"] is True, out + err
        assert data["deviated"] is True
        assert data["rollbacks"][0]["output"] == {"route": "shop", "removed": True}
        assert "faults" not in (await rig.state.route("shop")).route.policies


async def test_an_injected_fault_ends_at_its_expiry(tmp_path: Path) -> None:
    async with shop(tmp_path) as rig:
        settings = fault_settings(duration=1.0, abort_status=503)
        await inject_fault(rig.state, "shop", settings)

        async def aborted() -> bool:
            return await rig.status() == 503

        await eventually(aborted, what="the fault taking effect")

        # Nobody removes it: the gateway stops faulting at expires_at by itself.
        async def answers() -> bool:
            return await rig.status() == 200

        await eventually(answers, what="the fault's expiry")
        assert time.time() >= settings["expires_at"]


async def test_a_malformed_experiment_is_refused_with_file_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "title: bad\n"
        "description: a provider of a kind not run here\n"
        "method:\n"
        "  - type: action\n"
        "    name: shell\n"
        "    provider:\n"
        "      type: process\n"
        "      path: /bin/true\n"
    )
    code, out, err = await run(*HYBRIDMESH, "chaos", "run", str(path))
    assert code == 2, out + err
    assert f"{path}:7:" in err and "method.0.provider.type" in err


async def test_var_sets_the_configuration_that_arguments_name(tmp_path: Path) -> None:
    async with shop(tmp_path) as rig:
        path = tmp_path / "configured.yaml"
        path.write_text(
            "title: the shop answers\n"
            "description: the gateway's address comes from the configuration\n"
            "configuration:\n"
            "  gateway: {type: env, key: SHOP_GATEWAY_URL}\n"
            "  calls: 3\n"
            "steady-state-hypothesis:\n"
            "  title: calls succeed\n"
            "  probes:\n"
            "    - type: probe\n"
            "      name: calls-succeed\n"
            "      tolerance: 1.0\n"
            "      provider:\n"
            "        type: python\n"
            "        module: hybridmesh.chaos.probes\n"
            "        func: http_success_ratio\n"
            '        arguments: {url: "${gateway}/shop/items", requests: "${calls}"}\n'
            "method:\n" + HARMLESS.format(db=rig.db)
        )
        report = tmp_path / "report.json"
        code, out, err = await run(
            *HYBRIDMESH,
            "chaos",
            "run",
            str(path),
            "--var",
            f"gateway:str={rig.gateway}",
            "--report",
            str(report),
        )
        assert code == 0, out + err
        data = json.loads(report.read_text())
        assert data["steady_states"]["after"]["probes"][0]["output"] == 1.0

        # Without it, the environment variable is missing: refused, naming the key.
        code, out, err = await run(*HYBRIDMESH, "chaos", "run", str(path))
        assert code == 2, out + err
        assert "SHOP_GATEWAY_URL" in err and "configuration.gateway" in err
