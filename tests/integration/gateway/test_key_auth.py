"""The ``key_auth`` policy through a real gateway: keys from the store, where they are
looked for, what the backend sees, and refusals that never reach it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tests.integration.gateway.auth_rig import (
    Rig,
    Upstream,
    gateway_rig,
    problem_of,
    route_yaml,
    upstream,
)

from hybridmesh.core.errors import ValidationError
from hybridmesh.gateway.config import parse_routes


@pytest.fixture
async def app() -> AsyncIterator[Upstream]:
    async with upstream() as target:
        yield target


@pytest.fixture
async def rig(tmp_path: Path, app: Upstream) -> AsyncIterator[Rig]:
    async with gateway_rig(tmp_path) as made:
        await made.apply(
            "routes:"
            + route_yaml("orders", "/orders", app.url, "      key_auth: {}")
            + route_yaml("billing", "/billing", app.url, "      key_auth: {}")
        )
        yield made


def assert_refused(reply: object, detail: str) -> None:
    problem = problem_of(reply)  # type: ignore[arg-type]
    assert problem["status"] == 401
    assert detail in problem["detail"]
    assert reply.headers["www-authenticate"] == 'Key realm="hybridmesh"'  # type: ignore[attr-defined]


async def test_a_key_from_the_store_passes_in_each_default_place(rig: Rig, app: Upstream) -> None:
    key, secret = await rig.state.create_key("alice")
    await rig.reload()

    for headers, target in (
        ({"apikey": secret}, "/orders/1"),
        ({"X-API-Key": secret}, "/orders/2"),
        ({}, f"/orders/3?apikey={secret}&page=2"),
    ):
        reply = await rig.get(target, headers)
        assert reply.status == 200, reply.body
        seen = reply.upstream_headers
        assert seen["x-consumer-username"] == ["alice"]
        assert seen["x-credential-identifier"] == [key.id]
        assert "x-anonymous-consumer" not in seen
    # Not hidden by default: the backend gets the key where the client put it.
    assert app.hits[0]["headers"].count(["apikey", secret]) == 1
    assert app.hits[2]["query"] == f"apikey={secret}&page=2"
    assert len(app.hits) == 3


async def test_a_missing_wrong_or_revoked_key_is_refused_before_the_backend(
    rig: Rig, app: Upstream
) -> None:
    key, secret = await rig.state.create_key("alice")
    await rig.reload()
    assert (await rig.get("/orders", {"apikey": secret})).status == 200
    hits = len(app.hits)

    assert_refused(await rig.get("/orders"), "no API key")
    assert_refused(await rig.get("/orders", {"apikey": ""}), "no API key")
    assert_refused(await rig.get("/orders", {"apikey": secret + "x"}), "not valid")
    # The digest of a key is not a key.
    digest = next(iter(rig.gateway.snapshot.keys))
    assert_refused(await rig.get("/orders", {"apikey": digest}), "not valid")

    await rig.state.revoke_key(key.id)
    await rig.reload()
    assert_refused(await rig.get("/orders", {"apikey": secret}), "unknown or revoked")
    assert len(app.hits) == hits


async def test_a_key_for_another_route_is_refused(rig: Rig, app: Upstream) -> None:
    _, secret = await rig.state.create_key("alice", route="billing")
    await rig.reload()

    assert_refused(await rig.get("/orders", {"apikey": secret}), "not valid on this route")
    assert not app.hits
    reply = await rig.get("/billing", {"apikey": secret})
    assert reply.status == 200
    assert reply.upstream_headers["x-consumer-username"] == ["alice"]


async def test_identity_headers_sent_by_the_client_never_reach_the_backend(
    rig: Rig, app: Upstream
) -> None:
    key, secret = await rig.state.create_key("alice")
    await rig.reload()

    reply = await rig.get(
        "/orders",
        [
            ("apikey", secret),
            ("X-Consumer-Username", "admin"),
            ("x-consumer-username", "root"),
            ("X-Credential-Identifier", "forged"),
            ("X-Consumer-ID", "0"),
            ("X-Anonymous-Consumer", "false"),
        ],
    )

    seen = reply.upstream_headers
    assert seen["x-consumer-username"] == ["alice"]
    assert seen["x-credential-identifier"] == [key.id]
    assert "x-consumer-id" not in seen
    assert "x-anonymous-consumer" not in seen


async def test_hide_credentials_strips_the_key_and_keeps_the_rest(
    tmp_path: Path, app: Upstream
) -> None:
    async with gateway_rig(tmp_path) as rig:
        await rig.apply(
            "routes:"
            + route_yaml(
                "orders",
                "/orders",
                app.url,
                "      key_auth: {hide_credentials: true, header_names: [x-key], "
                "query_names: [key, api_key]}",
            )
        )
        _, secret = await rig.state.create_key("bob")
        await rig.reload()

        by_header = await rig.get("/orders?a=1&b=%20x", {"X-Key": secret, "apikey": "kept"})
        by_query = await rig.get(f"/orders?a=1&key={secret}&api_key=other&b=2")
        # The default places are not looked at once others are given.
        elsewhere = await rig.get("/orders", {"apikey": secret})

    assert by_header.status == 200
    seen = by_header.upstream_headers
    assert "x-key" not in seen
    assert seen["apikey"] == ["kept"]
    assert by_header.body["query"] == "a=1&b=%20x"
    assert by_query.status == 200
    assert by_query.body["query"] == "a=1&b=2"
    assert by_query.upstream_headers["x-consumer-username"] == ["bob"]
    assert_refused(elsewhere, "no API key")
    assert len(app.hits) == 2


async def test_anonymous_takes_requests_without_a_key_but_not_wrong_keys(
    tmp_path: Path, app: Upstream
) -> None:
    async with gateway_rig(tmp_path) as rig:
        await rig.apply(
            "routes:"
            + route_yaml(
                "orders", "/orders", app.url, "      key_auth: {anonymous: guest, realm: shop}"
            )
        )
        _, secret = await rig.state.create_key("alice")
        await rig.reload()

        without = await rig.get("/orders", {"X-Consumer-Username": "admin"})
        wrong = await rig.get("/orders", {"apikey": "hmk_wrong"})
        right = await rig.get("/orders", {"apikey": secret})

    assert without.status == 200
    assert without.upstream_headers["x-consumer-username"] == ["guest"]
    assert without.upstream_headers["x-anonymous-consumer"] == ["true"]
    assert wrong.status == 401
    assert wrong.headers["www-authenticate"] == 'Key realm="shop"'
    assert right.upstream_headers["x-consumer-username"] == ["alice"]
    assert "x-anonymous-consumer" not in right.upstream_headers
    assert len(app.hits) == 2


@pytest.mark.parametrize(
    ("settings", "field", "message"),
    [
        ("{header_names: [], query_names: []}", "policies.key_auth", "at least one"),
        ("{header_names: ['bad name']}", "policies.key_auth.header_names.0", "header name"),
        ("{query_names: ['a=b']}", "policies.key_auth.query_names.0", "query parameter"),
        ("{anonymous: Guest}", "policies.key_auth.anonymous", "not a valid name"),
        ("{realm: 'a\"b'}", "policies.key_auth.realm", "realm"),
        ("{hide: true}", "policies.key_auth.hide", "unknown field"),
    ],
)
def test_settings_are_checked_when_routes_are_read(settings: str, field: str, message: str) -> None:
    text = "routes:" + route_yaml("orders", "/orders", "http://127.0.0.1:1", "")
    text = text.rstrip() + f"\n      key_auth: {settings}\n"
    with pytest.raises(ValidationError) as raised:
        parse_routes(text, "routes.yaml")
    (problem,) = raised.value.problems
    assert problem.field == field
    assert problem.line == 7  # the line of key_auth
    assert message in problem.message
