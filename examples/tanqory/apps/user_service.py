"""user-service: the Identity team's microservice, over REST and GraphQL.

Routes (besides the shared ``/healthz`` and ``/_admin/*``):

- ``POST /users {email, name}`` → 201 user; 422 on a missing or invalid field, 409 when the
  e-mail is taken. ``GET /users?limit=``, ``GET|PATCH|DELETE /users/{id}``.
- ``POST /operations/validate-user {user_id}`` → ``{valid: true, user_id}`` for an active
  user; 404 for an unknown one and 409 ``user-not-active`` for a suspended or deactivated
  one, so that a saga step calling it fails for good (a 4xx is not retried).
- ``POST /graphql``: ``user(id)``, ``users(limit)`` and ``registerUser(email, name)``.
- ``POST /_pact/provider-states {state, params, action}``: sets up a contract's provider
  state before it is verified (see docs/contracts.md). ``params.user_id`` (``U-<n>``) makes
  users until that id exists, so that "user U-1 is active" holds on a fresh database.

A user id is ``U-<n>``, ``n`` counting up from 1 and never reused. A status is ``active``,
``suspended`` or ``inactive`` (deactivated).

Events. Started with ``publish``, the service announces each change as a CloudEvent (see
:func:`user_event`): ``user.registered`` when a user is created, ``user.updated`` on a PATCH,
``user.deactivated`` on a PATCH to ``status: inactive`` or a DELETE (of a user not already
inactive). The event goes into the ``outbox`` table in the same transaction as the user row,
so it exists exactly when the change does; a background :class:`~._outbox.OutboxRelay` hands
it to ``publish`` and deletes it after that returns, retrying with backoff while it fails.
``GET /_admin/outbox`` shows what waits. Without ``publish`` nothing is written there.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import graphql
from aiohttp import web

from hybridmesh.events import CloudEvent
from tanqory.apps._base import (
    FieldErrors,
    ProblemError,
    RunningService,
    database,
    not_found,
    read_json_object,
    serve,
    utc_now,
)
from tanqory.apps._database import ServiceDatabase, seq_of
from tanqory.apps._outbox import (
    OUTBOX_SCHEMA,
    OutboxRelay,
    Publish,
    RelaySettings,
    add_events,
    outbox,
    relay_of,
)

NAME = "user-service"
SOURCE = "/user-service"
REGISTERED = "user.registered"
UPDATED = "user.updated"
DEACTIVATED = "user.deactivated"
DEFAULT_LIMIT = 50
MAX_LIMIT = 500
INACTIVE = "inactive"
STATUSES = ("active", "suspended", INACTIVE)

SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS users (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    email TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
"""
    + OUTBOX_SCHEMA
)

GRAPHQL_SCHEMA = graphql.build_schema(
    """
    type User { id: ID!, email: String!, name: String!, status: String! }
    type Query { user(id: ID!): User, users(limit: Int): [User!]! }
    type Mutation { registerUser(email: String!, name: String!): User! }
    """
)

routes = web.RouteTableDef()

_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")


# --- events ---------------------------------------------------------------------------------


def user_event(type: str, user: dict[str, Any], traceparent: str | None = None) -> CloudEvent:
    """The CloudEvent announcing a change to ``user``: source ``/user-service``, subject and
    ``partitionkey`` the user id (so one user's events are handled in order), data
    ``{user_id, email, name, status}``, and ``traceparent`` when the request carried one."""
    return CloudEvent.create(
        type,
        SOURCE,
        {
            "user_id": user["id"],
            "email": user["email"],
            "name": user["name"],
            "status": user["status"],
        },
        subject=user["id"],
        partition_key=user["id"],
        extensions={"traceparent": traceparent} if traceparent else None,
    )


@dataclass(frozen=True)
class Announcements:
    """The events of one request's changes: written to the outbox inside the transaction
    that makes the change (:meth:`add`), relayed once it has committed (:meth:`committed`)."""

    relay: OutboxRelay
    traceparent: str | None = None

    def add(self, conn: sqlite3.Connection, type: str, user: dict[str, Any]) -> None:
        add_events(conn, [user_event(type, user, self.traceparent)])

    def committed(self) -> None:
        self.relay.wake()


def announcements(request: web.Request) -> Announcements | None:
    """Where ``request``'s changes are announced; None when the service does not publish."""
    relay = relay_of(request)
    if relay is None:
        return None
    traceparent = request.headers.get("traceparent", "").strip().lower()
    return Announcements(relay, traceparent if _TRACEPARENT.fullmatch(traceparent) else None)


# --- persistence: plain functions run on the database thread -------------------------------


def _user(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "id": f"U-{row['seq']}",
        "email": row["email"],
        "name": row["name"],
        "status": row["status"],
        "created_at": row["created_at"],
    }


def _email_taken(email: str) -> ProblemError:
    return ProblemError(409, f"a user with e-mail {email!r} already exists", slug="duplicate-email")


def _insert(
    conn: sqlite3.Connection, email: str, name: str, announce: Announcements | None
) -> dict[str, Any]:
    now = utc_now()
    try:
        cursor = conn.execute(
            "INSERT INTO users (email, name, status, created_at, updated_at)"
            " VALUES (?, ?, 'active', ?, ?)",
            (email, name, now, now),
        )
    except sqlite3.IntegrityError as error:
        raise _email_taken(email) from error
    user = _find(conn, f"U-{cursor.lastrowid}") or {}
    if announce is not None:
        announce.add(conn, REGISTERED, user)
    return user


def _find(conn: sqlite3.Connection, user_id: str) -> dict[str, Any] | None:
    row = conn.execute("SELECT * FROM users WHERE seq = ?", (seq_of(user_id, "U"),)).fetchone()
    return _user(row) if row else None


def _list(conn: sqlite3.Connection, limit: int) -> list[dict[str, Any]]:
    rows = conn.execute("SELECT * FROM users ORDER BY seq LIMIT ?", (limit,)).fetchall()
    return [_user(r) for r in rows]


def _update(
    conn: sqlite3.Connection,
    user_id: str,
    changes: dict[str, str],
    announce: Announcements | None,
) -> dict[str, Any] | None:
    before = _find(conn, user_id)
    if before is None:
        return None
    assignments = ", ".join(f"{column} = ?" for column in changes)
    try:
        conn.execute(
            f"UPDATE users SET {assignments}, updated_at = ? WHERE seq = ?",
            (*changes.values(), utc_now(), seq_of(user_id, "U")),
        )
    except sqlite3.IntegrityError as error:
        raise _email_taken(changes.get("email", "")) from error
    user = _find(conn, user_id)
    if announce is not None and user is not None:
        deactivated = user["status"] == INACTIVE and before["status"] != INACTIVE
        announce.add(conn, DEACTIVATED if deactivated else UPDATED, user)
    return user


def _delete(conn: sqlite3.Connection, user_id: str, announce: Announcements | None) -> bool:
    user = _find(conn, user_id)
    if user is None:
        return False
    conn.execute("DELETE FROM users WHERE seq = ?", (seq_of(user_id, "U"),))
    if announce is not None and user["status"] != INACTIVE:
        announce.add(conn, DEACTIVATED, user)
    return True


# --- the domain operations REST and GraphQL share ------------------------------------------


async def register_user(
    db: ServiceDatabase, body: dict[str, Any], announce: Announcements | None = None
) -> dict[str, Any]:
    """Creates an active user, announced as ``user.registered`` through ``announce``;
    422 on a bad e-mail or name, 409 when the e-mail is taken (and nothing is announced)."""
    errors = FieldErrors()
    email = errors.email(body, "email")
    name = errors.text(body, "name")
    errors.raise_if_any()
    assert email is not None and name is not None
    user = await db.run(_insert, email.lower(), name, announce)
    if announce is not None:
        announce.committed()
    return user


async def find_user(db: ServiceDatabase, user_id: str) -> dict[str, Any] | None:
    return await db.run(_find, user_id)


async def list_users(db: ServiceDatabase, limit: int | None) -> list[dict[str, Any]]:
    if limit is None:
        limit = DEFAULT_LIMIT
    if not 1 <= limit <= MAX_LIMIT:
        raise FieldErrors().add("limit", f"must be between 1 and {MAX_LIMIT}").as_problem()
    return await db.run(_list, limit)


# --- REST -----------------------------------------------------------------------------------


@routes.post("/users")
async def post_user(request: web.Request) -> web.Response:
    body = await read_json_object(request)
    user = await register_user(database(request), body, announcements(request))
    return web.json_response(user, status=201, headers={"Location": f"/users/{user['id']}"})


@routes.get("/users")
async def get_users(request: web.Request) -> web.Response:
    raw = request.query.get("limit")
    if raw is not None and not raw.isdigit():
        raise FieldErrors().add("limit", "must be a whole number").as_problem()
    users = await list_users(database(request), int(raw) if raw is not None else None)
    return web.json_response(users)


@routes.get("/users/{id}")
async def get_user(request: web.Request) -> web.Response:
    user_id = request.match_info["id"]
    user = await find_user(database(request), user_id)
    if user is None:
        raise not_found("user", user_id)
    return web.json_response(user)


@routes.patch("/users/{id}")
async def patch_user(request: web.Request) -> web.Response:
    user_id = request.match_info["id"]
    body = await read_json_object(request)
    errors = FieldErrors()
    changes = {
        "name": errors.text(body, "name", required=False),
        "email": errors.email(body, "email", required=False),
        "status": errors.text(body, "status", required=False),
    }
    if changes["status"] is not None and changes["status"] not in STATUSES:
        errors.add("status", f"must be one of {', '.join(STATUSES)}")
    updates = {k: v.lower() if k == "email" else v for k, v in changes.items() if v is not None}
    if not updates and not errors.errors:
        errors.add("body", "give at least one of name, email, status")
    errors.raise_if_any()
    announce = announcements(request)
    user = await database(request).run(_update, user_id, updates, announce)
    if user is None:
        raise not_found("user", user_id)
    if announce is not None:
        announce.committed()
    return web.json_response(user)


@routes.delete("/users/{id}")
async def delete_user(request: web.Request) -> web.Response:
    user_id = request.match_info["id"]
    announce = announcements(request)
    if not await database(request).run(_delete, user_id, announce):
        raise not_found("user", user_id)
    if announce is not None:
        announce.committed()
    return web.Response(status=204)


@routes.post("/operations/validate-user")
async def validate_user(request: web.Request) -> web.Response:
    errors = FieldErrors()
    user_id = errors.text(await read_json_object(request), "user_id")
    errors.raise_if_any()
    assert user_id is not None
    user = await find_user(database(request), user_id)
    if user is None:
        raise not_found("user", user_id)
    if user["status"] != "active":
        raise ProblemError(
            409,
            f"user {user_id!r} is {user['status']}, not active",
            slug="user-not-active",
            user_id=user_id,
            user_status=user["status"],
        )
    return web.json_response({"valid": True, "user_id": user_id})


@routes.post("/_pact/provider-states")
async def provider_state(request: web.Request) -> web.Response:
    body = await read_json_object(request)
    params = body.get("params")
    user_id = params.get("user_id") if isinstance(params, dict) else None
    wanted = isinstance(user_id, str) and re.fullmatch(r"U-\d{1,4}", user_id)
    if body.get("action", "setup") == "setup" and isinstance(user_id, str) and wanted:
        db = database(request)
        while await find_user(db, user_id) is None:
            n = len(await list_users(db, MAX_LIMIT)) + 1
            await register_user(
                db, {"email": f"contract-{n}@example.com", "name": f"Contract User {n}"}
            )
    return web.json_response({})


# --- GraphQL --------------------------------------------------------------------------------


async def _resolve_user(
    info: graphql.GraphQLResolveInfo[web.Request], id: str
) -> dict[str, Any] | None:
    return await find_user(database(info.context), id)


async def _resolve_users(
    info: graphql.GraphQLResolveInfo[web.Request], limit: int | None = None
) -> list[dict[str, Any]]:
    return await list_users(database(info.context), limit)


async def _resolve_register_user(
    info: graphql.GraphQLResolveInfo[web.Request], email: str, name: str
) -> dict[str, Any]:
    body = {"email": email, "name": name}
    return await register_user(database(info.context), body, announcements(info.context))


# The default resolver calls a root value's callables with (info, **arguments).
_ROOT = {"user": _resolve_user, "users": _resolve_users, "registerUser": _resolve_register_user}


def _graphql_errors(status: int, *messages: str) -> web.Response:
    return web.json_response({"errors": [{"message": m} for m in messages]}, status=status)


@routes.post("/graphql")
async def graphql_endpoint(request: web.Request) -> web.Response:
    """GraphQL over HTTP: 400 when the request cannot be executed, else 200 with any errors."""
    try:
        body = await request.json()
    except ValueError:
        return _graphql_errors(400, "the body is not valid JSON")
    query = body.get("query") if isinstance(body, dict) else None
    variables = body.get("variables") if isinstance(body, dict) else None
    operation = body.get("operationName") if isinstance(body, dict) else None
    if not isinstance(query, str) or not query.strip():
        return _graphql_errors(400, "the body needs a 'query' string")
    if variables is not None and not isinstance(variables, dict):
        return _graphql_errors(400, "'variables' must be an object")
    if operation is not None and not isinstance(operation, str):
        return _graphql_errors(400, "'operationName' must be a string")
    try:
        graphql.parse(query)
    except graphql.GraphQLError as error:
        return _graphql_errors(400, error.message)
    result = await graphql.graphql(
        GRAPHQL_SCHEMA,
        query,
        root_value=_ROOT,
        context_value=request,
        variable_values=variables,
        operation_name=operation,
    )
    errors = [e.formatted for e in result.errors or []]
    # Errors without a path come from validation or variables: the request never ran.
    if result.data is None and result.errors and all(e.path is None for e in result.errors):
        return web.json_response({"errors": errors}, status=400)
    answer: dict[str, Any] = {"data": result.data}
    if errors:
        answer["errors"] = errors
    return web.json_response(answer)


async def start(
    db_path: Path,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    publish: Publish | None = None,
    relay: RelaySettings | None = None,
) -> RunningService:
    """Starts user-service on ``db_path`` (created when missing).

    With ``publish`` (``EventBus.publish_many`` fits) the service announces its changes
    through its outbox (see the module docstring); ``relay`` tunes the outbox relay.
    """
    return await serve(
        NAME,
        db_path,
        schema=SCHEMA,
        routes=routes,
        host=host,
        port=port,
        configure=outbox(publish, relay),
    )
