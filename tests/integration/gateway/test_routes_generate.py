"""`hybridmesh routes generate --from-registry`: a route per registered service, with its
architecture's resilience, that `routes validate` and `routes apply` take and a gateway
routes with."""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from tests.integration.gateway.mirror_rig import replica, upstream

from hybridmesh.cli.main import main
from hybridmesh.gateway.config import policy_kinds
from hybridmesh.gateway.generate import service_policy
from hybridmesh.registry.loader import load_definitions
from hybridmesh.registry.models import Architecture, ServiceDefinition

REFERENCE = Path(__file__).resolve().parents[3] / "examples" / "tanqory" / "services"
#: The policies a generated traditional-monolith route names.
MONOLITH_POLICIES = {"key_auth", "rate_limit"}


def cli(
    capsys: pytest.CaptureFixture[str], database_url: str, *args: str | Path
) -> tuple[int, str, str]:
    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:
        main(["--database-url", database_url, *(str(a) for a in args)])
    out, err = capsys.readouterr()
    code = exited.value.code
    return (code if isinstance(code, int) else 1), out, err


def reference() -> dict[str, ServiceDefinition]:
    return {d.name: d for d in load_definitions(REFERENCE).definitions()}


def test_a_route_per_service_that_validates(
    capsys: pytest.CaptureFixture[str], sqlite_url: str, tmp_path: Path
) -> None:
    assert cli(capsys, sqlite_url, "registry", "load", REFERENCE)[0] == 0
    output = tmp_path / "generated.yaml"
    code, out, err = cli(capsys, sqlite_url, "routes", "generate", "--from-registry", "-o", output)
    assert code == 0, out + err
    services = reference()
    generated = {r["name"]: r for r in yaml.safe_load(output.read_text())["routes"]}
    assert set(generated) == set(services)

    for name, route in generated.items():
        service = services[name]
        policy = service_policy(service)
        assert route["match"] == {"path": {"prefix": f"/{name}"}}
        assert route["strip_prefix"] is True
        assert route["backends"] == [{"name": name, "service": name, "weight": 100}]
        assert route["timeouts"]["read"] == policy.timeout
        assert route["retries"]["attempts"] == min(policy.retry.max_attempts - 1, 5)
        if service.architecture is Architecture.TRADITIONAL_MONOLITH:
            assert policy.rate_limit is not None
            assert route["policies"]["key_auth"] == {}
            assert route["policies"]["rate_limit"] == {
                "limit": math.floor(policy.rate_limit.rate),
                "per": "second",
            }
        else:
            assert "policies" not in route
    legacy = services["legacy-erp"]
    assert legacy.resilience is not None
    assert generated["legacy-erp"]["timeouts"]["read"] == legacy.resilience.timeout

    # Printed, the same YAML; as JSON, the same routes.
    code, printed, _ = cli(capsys, sqlite_url, "routes", "generate", "--from-registry")
    assert code == 0
    assert printed == output.read_text()
    code, shown, _ = cli(capsys, sqlite_url, "routes", "generate", "--from-registry", "--json")
    assert code == 0
    assert {r["name"]: r for r in json.loads(shown)["routes"]} == generated

    # Round trip: everything validates and applies, the monolith's policies included.
    assert set(policy_kinds()) >= MONOLITH_POLICIES
    code, out, err = cli(capsys, sqlite_url, "routes", "validate", output)
    assert code == 0, out + err
    code, out, err = cli(capsys, sqlite_url, "routes", "apply", output)
    assert code == 0, out + err


MONOLITH = """\
name: old-billing
architecture: traditional-monolith
base_url: http://billing.local
version: v1
resilience:
  timeout: 90
  rate_limit: 0.5
"""


def test_a_slow_monolith_gets_a_capped_timeout_and_a_per_minute_limit(
    capsys: pytest.CaptureFixture[str], sqlite_url: str, tmp_path: Path
) -> None:
    (tmp_path / "billing.yaml").write_text(MONOLITH, encoding="utf-8")
    assert cli(capsys, sqlite_url, "registry", "load", tmp_path / "billing.yaml")[0] == 0
    code, out, _ = cli(capsys, sqlite_url, "routes", "generate", "--from-registry", "--json")
    assert code == 0
    [route] = json.loads(out)["routes"]
    [service] = load_definitions(tmp_path / "billing.yaml").definitions()
    policy = service_policy(service)
    assert policy.max_timeout is not None and policy.rate_limit is not None
    assert route["timeouts"]["read"] == min(90, policy.max_timeout)
    assert route["policies"]["rate_limit"] == {
        "limit": math.floor(policy.rate_limit.rate * 60),
        "per": "minute",
    }


def test_nothing_to_generate_from(
    capsys: pytest.CaptureFixture[str], sqlite_url: str, tmp_path: Path
) -> None:
    code, _, err = cli(capsys, sqlite_url, "routes", "generate", "--from-registry")
    assert code == 1 and "no services" in err
    code, _, err = cli(capsys, sqlite_url, "routes", "generate")
    assert code == 2 and "--from-registry" in err


async def test_a_gateway_routes_with_the_generated_routes(
    capsys: pytest.CaptureFixture[str], sqlite_url: str, tmp_path: Path
) -> None:
    async def hello(request: web.Request) -> web.StreamResponse:
        return web.json_response({"path": request.path})

    async with upstream({"/": hello}) as service:
        (tmp_path / "svc.yaml").write_text(
            f"name: greeter\narchitecture: microservice\nbase_url: {service.url}/api\n"
            "version: v1\n",
            encoding="utf-8",
        )
        output = tmp_path / "routes.yaml"

        def generate_and_apply() -> list[Any]:
            return [
                cli(capsys, sqlite_url, "registry", "load", tmp_path / "svc.yaml"),
                cli(capsys, sqlite_url, "routes", "generate", "--from-registry", "-o", output),
                cli(capsys, sqlite_url, "routes", "apply", output),
            ]

        for code, out, err in await asyncio.to_thread(generate_and_apply):
            assert code == 0, out + err
        async with replica(sqlite_url, name="r1") as gw:
            status, _, body = await gw.get("/greeter/hello?x=1")
            assert status == 200
            assert json.loads(body) == {"path": "/api/hello"}
            status, _, _ = await gw.get("/greeterx/hello")
            assert status == 404
