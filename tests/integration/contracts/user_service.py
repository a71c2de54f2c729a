"""A small user service on loopback whose answers carry the volatile values recording
must generalise: UUIDs, timestamps and numeric ids."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from aiohttp import web

MISSING = "00000000-0000-4000-8000-000000000000"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def get_user(request: web.Request) -> web.Response:
    user_id = request.match_info["id"]
    if user_id == MISSING:
        return web.json_response(
            {"title": "no such user", "status": 404},
            status=404,
            content_type="application/problem+json",
        )
    return web.json_response(
        {
            "id": user_id,
            "name": "Ada",
            "created_at": _now(),
            "orders": [{"order_id": n, "total": 12.5} for n in range(2)],
        }
    )


async def create_user(request: web.Request) -> web.Response:
    body = await request.json()
    return web.json_response(
        {"id": str(uuid.uuid4()), "name": body["name"], "created_at": _now()}, status=201
    )


def user_service() -> web.Application:
    app = web.Application()
    app.router.add_get("/users/{id}", get_user)
    app.router.add_post("/users", create_user)
    return app
