"""Bearer tokens: 401 without a valid one (a cookie is not one), 403 below the role, the
roles' order, and only a digest of the token in the database."""

from __future__ import annotations

from tests.integration.control.conftest import Plane

from hybridmesh.control import TokenStore


async def test_no_token_is_a_401_problem_with_a_bearer_challenge(plane: Plane) -> None:
    async with plane.http.get(plane.url + "/api/v1/services") as response:
        assert response.status == 401
        assert response.content_type == "application/problem+json"
        assert response.headers["WWW-Authenticate"].startswith("Bearer ")
        problem = await response.json(content_type=None)
    assert problem["status"] == 401


async def test_a_cookie_without_an_authorization_header_is_a_401(plane: Plane) -> None:
    # What a browser sends along with a cross-site request: never taken as a credential.
    token = plane.tokens["admin"]
    for name in ("token", "Authorization", "session"):
        status, _ = await plane.call(
            "POST",
            "/api/v1/executions",
            role=None,
            headers={"Cookie": f"{name}={token}"},
            json={"kind": "saga", "name": "x"},
        )
        assert status == 401


async def test_unknown_malformed_and_revoked_tokens_are_401(plane: Plane) -> None:
    read = plane.tokens["read"]
    forged = read[:-4] + ("AAAA" if not read.endswith("AAAA") else "BBBB")
    for token in (forged, "hmt_000000000000_" + "x" * 43, "nonsense", read + "x"):
        status, problem = await plane.call(
            "GET", "/api/v1/services", role=None, headers={"Authorization": f"Bearer {token}"}
        )
        assert (status, problem["detail"]) == (401, "the token is unknown or revoked")

    assert (await plane.call("GET", "/api/v1/services", role="read"))[0] == 200
    await TokenStore(plane.runtime.store).revoke("read")
    assert (await plane.call("GET", "/api/v1/services", role="read"))[0] == 401


async def test_a_role_below_the_operation_is_a_403(plane: Plane) -> None:
    status, problem = await plane.call(
        "POST", "/api/v1/executions", role="read", json={"kind": "saga", "name": "x"}
    )
    assert status == 403
    assert problem["detail"] == "the token 'read' has the role read; this operation needs operate"
    assert (await plane.call("GET", "/api/v1/audit", role="operate"))[0] == 403


async def test_each_role_may_do_what_the_roles_below_it_may(plane: Plane) -> None:
    for role in ("read", "operate", "admin"):
        assert (await plane.call("GET", "/api/v1/executions", role=role))[0] == 200
    for role in ("operate", "admin"):
        status, _ = await plane.call("POST", "/api/v1/executions/nope/cancel", role=role, json={})
        assert status == 404  # past the role check: the execution does not exist
    assert (await plane.call("GET", "/api/v1/audit", role="admin"))[0] == 200


async def test_open_routes_need_no_token(plane: Plane) -> None:
    for path in ("/openapi.json", "/api/docs", "/livez"):
        async with plane.http.get(plane.url + path) as response:
            assert response.status == 200, path


async def test_the_database_holds_a_digest_never_the_token(plane: Plane) -> None:
    rows = await plane.runtime.store.fetch_all("SELECT * FROM api_tokens")
    stored = " ".join(str(value) for row in rows for value in row.values())
    assert len(rows) == 3
    for token in plane.tokens.values():
        secret = token.rsplit("_", 1)[1]
        assert token not in stored and secret not in stored


async def test_a_name_can_have_one_live_token_and_be_reused_once_revoked(plane: Plane) -> None:
    tokens = TokenStore(plane.runtime.store)
    _, first = await tokens.create("ci", "read")
    status, _ = await plane.call(
        "GET", "/api/v1/services", role=None, headers={"Authorization": f"Bearer {first}"}
    )
    assert status == 200
    await tokens.revoke("ci")
    _, second = await tokens.create("ci", "operate")
    for token, expected in ((first, 401), (second, 200)):
        status, _ = await plane.call(
            "GET", "/api/v1/services", role=None, headers={"Authorization": f"Bearer {token}"}
        )
        assert status == expected
