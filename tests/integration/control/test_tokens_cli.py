"""``hybridmesh tokens create|list|revoke``: the token shown once, exit codes, and a token
the CLI made works on the API until the CLI revokes it."""

from __future__ import annotations

import json

import pytest
from tests.cli_in_process import run_cli_parts
from tests.integration.control.conftest import Plane


async def test_create_list_revoke_and_the_api_agrees(
    plane: Plane, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = await run_cli_parts(
        capsys, database_url, "tokens", "create", "deploy-bot", "--role", "operate", "--json"
    )
    assert code == 0
    created = json.loads(out)
    assert (created["name"], created["role"], created["status"]) == (
        "deploy-bot",
        "operate",
        "active",
    )
    token = created["token"]
    assert token.startswith(f"hmt_{created['id']}_")
    headers = {"Authorization": f"Bearer {token}"}
    status, _ = await plane.call("GET", "/api/v1/executions", role=None, headers=headers)
    assert status == 200

    code, out, _ = await run_cli_parts(capsys, database_url, "tokens", "list", "--json")
    assert code == 0
    listed = json.loads(out)
    assert [t["name"] for t in listed] == ["read", "operate", "admin", "deploy-bot"]
    assert token not in out and "secret" not in out and "token" not in listed[-1]

    code, out, err = await run_cli_parts(capsys, database_url, "tokens", "revoke", "deploy-bot")
    assert code == 0, err
    status, _ = await plane.call("GET", "/api/v1/executions", role=None, headers=headers)
    assert status == 401
    code, out, _ = await run_cli_parts(capsys, database_url, "tokens", "list", "--json")
    assert json.loads(out)[-1]["status"] == "revoked"


async def test_exit_codes(
    plane: Plane, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = await run_cli_parts(
        capsys, database_url, "tokens", "create", "x", "--role", "root"
    )
    assert code == 2 and "root" in err
    code, _, err = await run_cli_parts(
        capsys, database_url, "tokens", "create", "no spaces", "--role", "read"
    )
    assert code == 2 and "not a valid name" in err
    code, _, err = await run_cli_parts(
        capsys, database_url, "tokens", "create", "read", "--role", "read"
    )
    assert code == 2 and "revoke it first" in err
    code, _, err = await run_cli_parts(capsys, database_url, "tokens", "revoke", "nobody")
    assert code == 1 and "no live token named 'nobody'" in err
    code, _, _ = await run_cli_parts(capsys, database_url, "audit", "list", "--limit", "0")
    assert code == 2


async def test_the_plain_output_shows_the_token_once(
    plane: Plane, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = await run_cli_parts(
        capsys, database_url, "tokens", "create", "ops", "--role", "admin"
    )
    assert code == 0
    assert "hmt_" in out and "not shown again" in err
    code, out, _ = await run_cli_parts(capsys, database_url, "tokens", "list")
    assert code == 0 and "ops" in out and "hmt_" not in out
