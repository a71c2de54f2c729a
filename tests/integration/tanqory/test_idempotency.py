"""Idempotency-Key: a repeated command is answered from storage, not run again."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import aiohttp

from tanqory.apps import RunningService, user_service

ADA = {"email": "ada@example.com", "name": "Ada Lovelace"}


async def _count_users(http: aiohttp.ClientSession, users: RunningService) -> int:
    async with http.get(f"{users.url}/users") as resp:
        return len(await resp.json())


async def test_repeat_with_same_key_replays_first_answer(
    http: aiohttp.ClientSession, users: RunningService
) -> None:
    headers = {"Idempotency-Key": "register-ada"}
    async with http.post(f"{users.url}/users", json=ADA, headers=headers) as first:
        assert first.status == 201
        assert "Idempotent-Replayed" not in first.headers
        first_body = await first.json()
    async with http.post(f"{users.url}/users", json=ADA, headers=headers) as again:
        assert again.status == 201
        assert again.headers["Idempotent-Replayed"] == "true"
        assert await again.json() == first_body
    assert await _count_users(http, users) == 1


async def test_without_a_key_the_command_runs_again(
    http: aiohttp.ClientSession, users: RunningService
) -> None:
    async with http.post(f"{users.url}/users", json=ADA) as resp:
        assert resp.status == 201
    async with http.post(f"{users.url}/users", json=ADA) as resp:
        assert resp.status == 409
        assert "Idempotent-Replayed" not in resp.headers


async def test_a_stored_client_error_is_replayed_too(
    http: aiohttp.ClientSession, users: RunningService
) -> None:
    headers = {"Idempotency-Key": "bad-email"}
    bad = {"email": "nope", "name": "X"}
    async with http.post(f"{users.url}/users", json=bad, headers=headers) as resp:
        assert resp.status == 422
    async with http.post(f"{users.url}/users", json=bad, headers=headers) as resp:
        assert resp.status == 422
        assert resp.content_type == "application/problem+json"
        assert resp.headers["Idempotent-Replayed"] == "true"


async def test_key_reused_on_another_path_is_rejected(
    http: aiohttp.ClientSession, users: RunningService
) -> None:
    headers = {"Idempotency-Key": "k"}
    async with http.post(f"{users.url}/users", json=ADA, headers=headers) as resp:
        assert resp.status == 201
    async with http.post(
        f"{users.url}/operations/validate-user", json={"user_id": "U-1"}, headers=headers
    ) as resp:
        assert resp.status == 422
        assert "POST /users" in (await resp.json(content_type=None))["detail"]


async def test_injected_5xx_is_not_stored_so_a_retry_runs(
    http: aiohttp.ClientSession, users: RunningService
) -> None:
    await http.post(f"{users.url}/_admin/faults", json={"mode": "error", "count": 1})
    headers = {"Idempotency-Key": "retry-me"}
    async with http.post(f"{users.url}/users", json=ADA, headers=headers) as resp:
        assert resp.status == 503
    async with http.post(f"{users.url}/users", json=ADA, headers=headers) as resp:
        assert resp.status == 201
        assert "Idempotent-Replayed" not in resp.headers


async def test_concurrent_repeats_create_one_user(
    http: aiohttp.ClientSession, users: RunningService
) -> None:
    headers = {"Idempotency-Key": "burst"}

    async def post() -> int:
        async with http.post(f"{users.url}/users", json=ADA, headers=headers) as resp:
            return resp.status

    statuses = await asyncio.gather(*(post() for _ in range(5)))
    assert set(statuses) <= {201, 409}
    assert 201 in statuses
    assert await _count_users(http, users) == 1


async def test_answers_are_kept_in_the_services_idempotency_table(
    http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    db_path = tmp_path / "users.db"
    async with (
        await user_service.start(db_path) as users,
        http.post(f"{users.url}/users", json=ADA, headers={"Idempotency-Key": "stored"}) as resp,
    ):
        assert resp.status == 201
    with sqlite3.connect(db_path) as conn:
        row = conn.execute(
            "SELECT method, path, status FROM idempotency WHERE key = 'stored'"
        ).fetchone()
    assert row == ("POST", "/users", 201)
    async with (
        await user_service.start(db_path) as users,
        http.post(f"{users.url}/users", json=ADA, headers={"Idempotency-Key": "stored"}) as resp,
    ):
        assert resp.status == 201
        assert resp.headers["Idempotent-Replayed"] == "true"
