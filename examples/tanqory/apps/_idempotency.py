"""Idempotency keys: a repeated command gets the first answer back instead of running twice.

For POST, PUT, PATCH and DELETE carrying ``Idempotency-Key``, the first answer below 500 is
stored in the service's ``idempotency`` table. A repeat with the same key gets that answer
again, marked ``Idempotent-Replayed: true``, without running the handler. A 5xx is not stored,
so a retry after a failure really retries. Reusing a key for another method or path is a 422;
a repeat while the first is still running is a 409.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

from aiohttp import web
from aiohttp.typedefs import Handler

from tanqory.apps._database import ServiceDatabase
from tanqory.apps._problems import PROBLEM_CONTENT_TYPE, ProblemError

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

DATABASE = web.AppKey("database", ServiceDatabase)
_IN_FLIGHT: web.AppKey[set[str]] = web.AppKey("idempotency_in_flight")


def _stored(conn: sqlite3.Connection, key: str) -> sqlite3.Row | None:
    row: sqlite3.Row | None = conn.execute(
        "SELECT method, path, status, body FROM idempotency WHERE key = ?", (key,)
    ).fetchone()
    return row


def _store(
    conn: sqlite3.Connection, key: str, method: str, path: str, status: int, body: str
) -> None:
    conn.execute(
        "INSERT OR IGNORE INTO idempotency (key, method, path, status, body, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (key, method, path, status, body, datetime.now(UTC).isoformat()),
    )


def _replay(row: sqlite3.Row) -> web.Response:
    status = int(row["status"])
    if status == 204:
        response = web.Response(status=204)
    else:
        content_type = PROBLEM_CONTENT_TYPE if status >= 400 else "application/json"
        response = web.Response(status=status, text=row["body"], content_type=content_type)
    response.headers["Idempotent-Replayed"] = "true"
    return response


@web.middleware
async def idempotency_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    key = request.headers.get("Idempotency-Key")
    if not key or request.method not in UNSAFE_METHODS or request.path.startswith("/_admin/"):
        return await handler(request)
    database = request.app[DATABASE]
    row = await database.run(_stored, key)
    if row is not None:
        if (row["method"], row["path"]) != (request.method, request.path):
            raise ProblemError(
                422,
                f"Idempotency-Key {key!r} was first used for {row['method']} {row['path']}",
                slug="idempotency-key-reused",
            )
        return _replay(row)
    in_flight = request.app[_IN_FLIGHT]
    if key in in_flight:
        raise ProblemError(
            409,
            f"a request with Idempotency-Key {key!r} is still being processed",
            slug="idempotency-key-in-progress",
        )
    in_flight.add(key)
    try:
        try:
            response = await handler(request)
        except ProblemError as error:
            response = error.to_response(request.path)
        if isinstance(response, web.Response) and response.status < 500:
            body = response.text or ""
            await database.run(_store, key, request.method, request.path, response.status, body)
        return response
    finally:
        in_flight.discard(key)


def install(app: web.Application) -> None:
    """Adds the in-flight set the middleware needs."""
    app[_IN_FLIGHT] = set()
