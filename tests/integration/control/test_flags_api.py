"""Feature flags over HTTP: list, show and evaluate as the CLI's --json, and set."""

from __future__ import annotations

import json

import pytest
from tests.cli_in_process import run_cli_parts
from tests.integration.control.conftest import Plane

from hybridmesh.flags.store import FlagStore

CREATE = {"variants": {"on": True, "off": False}, "default_variant": "off"}


async def test_set_then_read_as_the_cli_prints(
    plane: Plane, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    status, made = await plane.call(
        "POST",
        "/api/v1/flags/new-checkout",
        role="operate",
        json={**CREATE, "percents": {"on": 25}},
    )
    assert (status, made["rollout"]) == (200, {"on": 25.0, "off": 75.0}), made
    status, off = await plane.call(
        "POST", "/api/v1/flags/new-checkout", role="operate", json={"enabled": False}
    )
    assert (status, off["enabled"]) == (200, False)
    assert not (await FlagStore(plane.runtime.store).get("new-checkout")).flag.enabled
    for method, path, args, body in (
        ("GET", "/api/v1/flags", ("flags", "list", "--json"), None),
        ("GET", "/api/v1/flags/new-checkout", ("flags", "show", "new-checkout", "--json"), None),
        (
            "POST",
            "/api/v1/flags/new-checkout/evaluate",
            ("flags", "evaluate", "new-checkout", "--targeting-key", "u-1", "--json"),
            {"targeting_key": "u-1"},
        ),
    ):
        status, answered = await plane.call(method, path, role="read", json=body)
        code, out, _ = await run_cli_parts(capsys, database_url, *args)
        assert (status, code) == (200, 0)
        assert answered == json.loads(out), path


async def test_refusals_are_401_403_404_and_400(plane: Plane) -> None:
    assert (await plane.call("GET", "/api/v1/flags", role=None))[0] == 401
    assert (await plane.call("POST", "/api/v1/flags/x", role="read", json=CREATE))[0] == 403
    assert (await plane.call("GET", "/api/v1/flags/nothing", role="read"))[0] == 404
    status, problem = await plane.call(
        "POST", "/api/v1/flags/x", role="operate", json={"variants": {"on": True}}
    )
    assert (status, problem["errors"][0]["field"]) == (400, "variants")
    status, _ = await plane.call(
        "POST", "/api/v1/flags/x", role="operate", json={**CREATE, "percents": {"on": 101}}
    )
    assert status == 400
    assert await FlagStore(plane.runtime.store).list() == []
