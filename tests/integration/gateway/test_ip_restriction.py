"""The ``ip_restriction`` policy through a real gateway, with clients on distinct loopback
addresses, and the client address behind trusted proxies that every policy and sticky
split shares."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tests.integration.gateway.auth_rig import (
    Reply,
    Upstream,
    gateway_rig,
    problem_of,
    route_yaml,
    upstream,
)

from hybridmesh.core.errors import ValidationError
from hybridmesh.gateway.config import parse_routes
from hybridmesh.gateway.routing import bucket_of
from hybridmesh.gateway.server import GatewaySettings


@pytest.fixture
async def app() -> AsyncIterator[Upstream]:
    async with upstream() as target:
        yield target


def routes(url: str, settings: str) -> str:
    return "routes:" + route_yaml("orders", "/orders", url, f"      ip_restriction: {settings}")


def assert_forbidden(reply: Reply, address: str) -> None:
    problem = problem_of(reply)
    assert problem["status"] == 403
    assert address in problem["detail"]


async def test_allow_lets_only_its_networks_through(tmp_path: Path, app: Upstream) -> None:
    async with gateway_rig(tmp_path) as rig:
        await rig.apply(routes(app.url, "{allow: [127.0.0.2/32, 10.0.0.0/8]}"))

        allowed = await rig.get("/orders", source="127.0.0.2")
        refused = await rig.get("/orders", source="127.0.0.3")

    assert allowed.status == 200
    assert_forbidden(refused, "127.0.0.3")
    assert [hit["upstream"] for hit in app.hits] == ["app"]


async def test_deny_wins_over_allow(tmp_path: Path, app: Upstream) -> None:
    async with gateway_rig(tmp_path) as rig:
        await rig.apply(routes(app.url, "{allow: [127.0.0.0/8], deny: [127.0.0.3]}"))

        allowed = await rig.get("/orders", source="127.0.0.2")
        denied = await rig.get("/orders", source="127.0.0.3")
        # Deny alone lets everyone else through.
        await rig.apply(routes(app.url, "{deny: [127.0.0.2/31]}"))
        denied_too = await rig.get("/orders", source="127.0.0.2")
        other = await rig.get("/orders", source="127.0.0.4")

    assert allowed.status == 200
    assert_forbidden(denied, "127.0.0.3")
    assert_forbidden(denied_too, "127.0.0.2")
    assert other.status == 200
    assert len(app.hits) == 2


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback on this machine")
async def test_ipv6_clients(tmp_path: Path, app: Upstream) -> None:
    async with gateway_rig(tmp_path, host="::1") as rig:
        await rig.apply(routes(app.url, "{allow: ['::1/128']}"))
        allowed = await rig.get("/orders")
        await rig.apply(routes(app.url, "{allow: [127.0.0.0/8, '2001:db8::/32']}"))
        refused = await rig.get("/orders")

    assert allowed.status == 200
    assert_forbidden(refused, "::1")
    assert len(app.hits) == 1


async def test_behind_a_trusted_proxy_the_forwarded_client_is_judged(
    tmp_path: Path, app: Upstream
) -> None:
    settings = GatewaySettings(access_log=False, trusted_proxies=("127.0.0.2", "172.16.0.0/12"))
    async with gateway_rig(tmp_path, settings) as rig:
        await rig.apply(routes(app.url, "{allow: [10.0.0.0/8, '2001:db8::/32']}"))

        via_proxy = await rig.get("/orders", {"X-Forwarded-For": "10.1.1.1"}, source="127.0.0.2")
        via_hops = await rig.get(
            "/orders", {"X-Forwarded-For": "10.1.1.1, 172.16.0.5"}, source="127.0.0.2"
        )
        ipv6 = await rig.get("/orders", {"X-Forwarded-For": "2001:db8::5"}, source="127.0.0.2")
        # The client wrote an allowed address on the left; the proxy appended the real one.
        spoofed = await rig.get(
            "/orders", {"X-Forwarded-For": "10.1.1.1, 192.0.2.9"}, source="127.0.0.2"
        )
        # Not a trusted proxy: its X-Forwarded-For is not believed.
        untrusted = await rig.get("/orders", {"X-Forwarded-For": "10.1.1.1"}, source="127.0.0.3")

    assert [via_proxy.status, via_hops.status, ipv6.status] == [200, 200, 200]
    assert_forbidden(spoofed, "192.0.2.9")
    assert_forbidden(untrusted, "127.0.0.3")
    assert len(app.hits) == 3
    # The backend still learns the whole chain, with the gateway's peer appended.
    assert via_proxy.upstream_headers["x-forwarded-for"] == ["10.1.1.1, 127.0.0.2"]


async def test_sticky_client_ip_splits_use_the_forwarded_client(tmp_path: Path) -> None:
    settings = GatewaySettings(access_log=False, trusted_proxies=("127.0.0.2",))
    async with upstream("blue") as blue, upstream("green") as green:
        text = f"""
routes:
  - name: shop
    match: {{path: {{prefix: /shop}}}}
    sticky: {{client_ip: true}}
    backends:
      - {{name: blue, url: "{blue.url}", weight: 50}}
      - {{name: green, url: "{green.url}", weight: 50}}
"""
        clients = [f"10.0.{n // 250}.{n % 250 + 1}" for n in range(24)]
        async with gateway_rig(tmp_path, settings) as rig:
            await rig.apply(text)
            served = [
                (await rig.get("/shop", {"X-Forwarded-For": c}, source="127.0.0.2")).body[
                    "upstream"
                ]
                for c in clients
            ]

    expected = ["blue" if bucket_of("shop", c) < 5000 else "green" for c in clients]
    assert served == expected
    assert {"blue", "green"} <= set(expected)  # the clients do fall on both sides


@pytest.mark.parametrize(
    ("settings", "field", "message"),
    [
        ("{allow: [10.0.0.1/8]}", "policies.ip_restriction.allow.0", "the network is 10.0.0.0/8"),
        ("{deny: [10.0.0.0/8, nope]}", "policies.ip_restriction.deny.1", "not an IP address"),
        ("{allow: ['2001:db8::1/32']}", "policies.ip_restriction.allow.0", "2001:db8::/32"),
        ("{}", "policies.ip_restriction", "at least one of allow and deny"),
    ],
)
def test_networks_are_checked_when_routes_are_read(settings: str, field: str, message: str) -> None:
    with pytest.raises(ValidationError) as raised:
        parse_routes(routes("http://127.0.0.1:1", settings), "routes.yaml")
    (problem,) = raised.value.problems
    assert (problem.file, problem.line, problem.field) == ("routes.yaml", 7, field)
    assert message in problem.message


def test_the_gateway_command_refuses_a_bad_trusted_proxy(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from hybridmesh.cli.main import cli

    result = CliRunner().invoke(
        cli,
        [
            "--database-url",
            f"sqlite:///{tmp_path / 'mesh.db'}",
            "gateway",
            "--port",
            "0",
            "--trusted-proxy",
            "10.0.0.0/8",
            "--trusted-proxy",
            "10.0.0.1/8",
        ],
    )
    assert result.exit_code == 2
    assert "--trusted-proxy" in result.output
    assert "the network is 10.0.0.0/8" in result.output
    assert not (tmp_path / "mesh.db").exists()
