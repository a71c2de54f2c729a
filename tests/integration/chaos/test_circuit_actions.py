"""The chaos actions on circuit breakers through ``hybridmesh chaos run``: ``open_circuit``
forces a breaker of the process serving the control-plane API open, so that process's
client refuses the calls it guards; ``close_circuit``, as a rollback, closes it again."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from aiohttp import web
from tests.integration.chaos.test_experiments import HYBRIDMESH, run
from tests.integration.client.helpers import Scripted, registry_for
from tests.integration.control.conftest import OpenPlane, Plane, open_plane  # noqa: F401
from tests.integration.loopback import serve

from hybridmesh.client import CommunicationRequest
from hybridmesh.core.errors import CircuitOpenError

EXPERIMENT = """\
title: the users' circuit opens
description: the orders' client refuses calls to users for a while
configuration:
  api_url: {type: env, key: MESH_API_URL}
  api_token: {type: env, key: MESH_API_TOKEN}
method:
  - type: action
    name: open-the-users-circuit
    provider:
      type: python
      module: hybridmesh.chaos.actions
      func: open_circuit
      arguments: {api_url: "${api_url}", token: "${api_token}", name: users, duration: 3600}
"""

ROLLBACK = """\
rollbacks:
  - type: action
    name: close-the-users-circuit
    provider:
      type: python
      module: hybridmesh.chaos.actions
      func: close_circuit
      arguments: {api_url: "${api_url}", token: "${api_token}", name: users}
"""


@pytest.fixture
def database_url(sqlite_url: str) -> str:
    """The runner is what is tested here, not the store: SQLite is enough."""
    return sqlite_url


async def chaos_run(plane: Plane, path: Path, report: Path) -> None:
    code, out, err = await run(
        *HYBRIDMESH,
        "chaos",
        "run",
        str(path),
        "--var",
        f"api_url:str={plane.url}",
        "--var",
        f"api_token:str={plane.tokens['operate']}",
        "--report",
        str(report),
    )
    assert code == 0, out + err


async def test_open_circuit_and_its_rollback_through_chaos_run(
    open_plane: OpenPlane,  # noqa: F811
    tmp_path: Path,
) -> None:
    scripted = Scripted()
    upstream = web.Application()
    upstream.router.add_route("*", "/{tail:.*}", scripted.handle)
    async with serve(upstream) as url, open_plane(registry=registry_for(url, retries=0)) as plane:
        client = plane.runtime.client
        calls = iter(range(1, 100))

        async def call_users() -> None:
            query = CommunicationRequest(type="query", endpoint=f"/users/{next(calls)}")
            await client.communicate("orders", "users", query)

        await call_users()  # the breaker exists once the client has called through it

        opening = tmp_path / "open.yaml"
        opening.write_text(EXPERIMENT)
        await chaos_run(plane, opening, tmp_path / "open.json")
        [action] = json.loads((tmp_path / "open.json").read_text())["run"]
        assert action["status"] == "succeeded"
        assert action["output"]["name"] == "users" and action["output"]["state"] == "open"
        with pytest.raises(CircuitOpenError):
            await call_users()
        assert scripted.hits == 1  # refused in the serving process, never sent

        rolled_back = tmp_path / "rollback.yaml"
        rolled_back.write_text(EXPERIMENT + ROLLBACK)
        await chaos_run(plane, rolled_back, tmp_path / "rollback.json")
        [rollback] = json.loads((tmp_path / "rollback.json").read_text())["rollbacks"]
        assert rollback["status"] == "succeeded" and rollback["output"]["state"] == "closed"
        await call_users()
        assert scripted.hits == 2
