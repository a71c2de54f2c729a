"""user-service: REST CRUD, validation problems, and GraphQL."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from tanqory.apps import RunningService

ADA = {"email": "ada@example.com", "name": "Ada Lovelace"}


async def _register(
    http: aiohttp.ClientSession, users: RunningService, body: dict[str, Any]
) -> dict[str, Any]:
    async with http.post(f"{users.url}/users", json=body) as resp:
        assert resp.status == 201, await resp.text()
        user: dict[str, Any] = await resp.json()
        assert resp.headers["Location"] == f"/users/{user['id']}"
        return user


async def _graphql(
    http: aiohttp.ClientSession, users: RunningService, query: str, **variables: Any
) -> tuple[int, dict[str, Any]]:
    async with http.post(
        f"{users.url}/graphql", json={"query": query, "variables": variables}
    ) as resp:
        return resp.status, await resp.json()


async def test_user_crud(http: aiohttp.ClientSession, users: RunningService) -> None:
    user = await _register(http, users, ADA)
    assert user["id"] == "U-1"
    assert user["email"] == "ada@example.com"
    assert user["status"] == "active"
    assert user["created_at"]

    async with http.get(f"{users.url}/users/U-1") as resp:
        assert await resp.json() == user

    await _register(http, users, {"email": "grace@example.com", "name": "Grace Hopper"})
    async with http.get(f"{users.url}/users", params={"limit": "1"}) as resp:
        assert [u["id"] for u in await resp.json()] == ["U-1"]
    async with http.get(f"{users.url}/users") as resp:
        assert [u["id"] for u in await resp.json()] == ["U-1", "U-2"]

    async with http.patch(
        f"{users.url}/users/U-1", json={"name": "Augusta Ada King", "status": "suspended"}
    ) as resp:
        assert resp.status == 200
        patched = await resp.json()
    assert (patched["name"], patched["status"]) == ("Augusta Ada King", "suspended")

    async with http.delete(f"{users.url}/users/U-1") as resp:
        assert resp.status == 204
    async with http.get(f"{users.url}/users/U-1") as resp:
        assert resp.status == 404
        assert resp.content_type == "application/problem+json"
        assert "U-1" in (await resp.json(content_type=None))["detail"]
    async with http.delete(f"{users.url}/users/U-1") as resp:
        assert resp.status == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "No Mail"}, "email"),
        ({"email": "not-an-address", "name": "Bad Mail"}, "email"),
        ({"email": "x@example.com"}, "name"),
        ({"email": "x@example.com", "name": 7}, "name"),
    ],
)
async def test_invalid_user_is_a_422_naming_the_field(
    http: aiohttp.ClientSession, users: RunningService, body: dict[str, Any], field: str
) -> None:
    async with http.post(f"{users.url}/users", json=body) as resp:
        assert resp.status == 422
        assert resp.content_type == "application/problem+json"
        problem = await resp.json(content_type=None)
    assert problem["status"] == 422
    assert problem["title"]
    assert problem["type"].endswith("/validation-error")
    assert problem["detail"].startswith(f"{field}:")
    assert [e["field"] for e in problem["errors"]] == [field]


async def test_duplicate_email_is_a_409_problem(
    http: aiohttp.ClientSession, users: RunningService
) -> None:
    await _register(http, users, ADA)
    async with http.post(
        f"{users.url}/users", json={"email": "ADA@example.com", "name": "Impostor"}
    ) as resp:
        assert resp.status == 409
        assert resp.content_type == "application/problem+json"
        assert "ada@example.com" in (await resp.json(content_type=None))["detail"]


async def test_patch_to_a_taken_email_is_a_409(
    http: aiohttp.ClientSession, users: RunningService
) -> None:
    await _register(http, users, ADA)
    await _register(http, users, {"email": "grace@example.com", "name": "Grace"})
    async with http.patch(f"{users.url}/users/U-2", json={"email": "ada@example.com"}) as resp:
        assert resp.status == 409


async def test_validate_user_operation(http: aiohttp.ClientSession, users: RunningService) -> None:
    await _register(http, users, ADA)
    url = f"{users.url}/operations/validate-user"
    async with http.post(url, json={"user_id": "U-1"}) as resp:
        assert await resp.json() == {"valid": True, "user_id": "U-1"}
    async with http.post(url, json={"user_id": "U-99"}) as resp:
        assert resp.status == 404  # a 4xx: a saga step calling it fails for good
        assert resp.content_type == "application/problem+json"
    async with http.post(url, json={}) as resp:
        assert resp.status == 422


async def test_graphql_query_and_mutation(
    http: aiohttp.ClientSession, users: RunningService
) -> None:
    status, answer = await _graphql(
        http,
        users,
        "mutation($email: String!, $name: String!) {"
        " registerUser(email: $email, name: $name) { id email status } }",
        **ADA,
    )
    assert status == 200
    assert answer == {
        "data": {"registerUser": {"id": "U-1", "email": "ada@example.com", "status": "active"}}
    }

    status, answer = await _graphql(
        http, users, "query($id: ID!) { user(id: $id) { id name } }", id="U-1"
    )
    assert answer == {"data": {"user": {"id": "U-1", "name": "Ada Lovelace"}}}

    status, answer = await _graphql(http, users, "{ users(limit: 10) { email } }")
    assert answer == {"data": {"users": [{"email": "ada@example.com"}]}}

    status, answer = await _graphql(http, users, '{ user(id: "U-404") { id } }')
    assert answer == {"data": {"user": None}}


async def test_graphql_resolver_error_is_200_with_errors(
    http: aiohttp.ClientSession, users: RunningService
) -> None:
    await _register(http, users, ADA)
    status, answer = await _graphql(
        http,
        users,
        'mutation { registerUser(email: "ada@example.com", name: "Again") { id } }',
    )
    assert status == 200
    assert answer["data"] is None
    assert "already exists" in answer["errors"][0]["message"]
    assert answer["errors"][0]["path"] == ["registerUser"]


@pytest.mark.parametrize(
    "query",
    ["{ user(id: ", "{ nosuchfield }", "query($id: ID!) { user(id: $id) { id } }"],
    ids=["unparsable", "invalid-field", "missing-variable"],
)
async def test_graphql_request_errors_are_400(
    http: aiohttp.ClientSession, users: RunningService, query: str
) -> None:
    status, answer = await _graphql(http, users, query)
    assert status == 400
    assert answer["errors"]
    assert "data" not in answer


async def test_graphql_without_query_is_400(
    http: aiohttp.ClientSession, users: RunningService
) -> None:
    async with http.post(f"{users.url}/graphql", json={"variables": {}}) as resp:
        assert resp.status == 400
        assert (await resp.json())["errors"]
