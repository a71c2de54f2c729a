"""content-management and the three services a strangler fig carves out of it.

content-management is the Content team's modular monolith: one app with three modules,
each behind its own routes. The migration moves each module to a small service of its own,
behind the gateway, one route at a time:

- **creation** (content-creation): ``POST /content {title, body}`` → 201 draft;
  ``GET /content`` → every item.
- **delivery** (content-delivery): ``GET /content/{id}`` → the item as readers get it,
  with its rendered HTML.
- **workflow** (content-workflow): ``POST /content/{id}/publish`` → the item, published.

Every service starts with the same three articles, so a parallel run can compare answers.
content-delivery has one known difference, the kind a parallel run exists to catch: it
renders the title of article 3 in title case ("Spring Sale Guide" where the monolith says
"Spring sale guide").

Each service answers ``X-Served-By: <its name>`` so callers (and the demo) can see who
answered.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from tanqory.apps._base import (
    FieldErrors,
    RunningService,
    database,
    not_found,
    read_json_object,
    serve,
    utc_now,
)

MANAGEMENT = "content-management"
CREATION = "content-creation"
DELIVERY = "content-delivery"
WORKFLOW = "content-workflow"

SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    title TEXT NOT NULL,
    body TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at TEXT NOT NULL,
    published_at TEXT
);
"""
SEED = (
    ("Welcome to Tanqory", "Everything you need to sell online."),
    ("Shipping, explained", "How orders travel from us to you."),
    ("Spring sale guide", "The best offers of the season."),
)


def _seed(conn: sqlite3.Connection) -> None:
    if conn.execute("SELECT COUNT(*) FROM items").fetchone()[0]:
        return  # seeded before: the file outlived a restart
    conn.executemany(
        "INSERT INTO items (title, body, status, created_at) VALUES (?, ?, 'draft', ?)",
        [(title, body, "2026-01-01T00:00:00Z") for title, body in SEED],
    )


def _item(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "title": row["title"],
        "body": row["body"],
        "status": row["status"],
        "created_at": row["created_at"],
        "published_at": row["published_at"],
    }


def _one(conn: sqlite3.Connection, ident: str) -> dict[str, Any] | None:
    if not ident.isdigit():
        return None
    row = conn.execute("SELECT * FROM items WHERE id = ?", (int(ident),)).fetchone()
    return None if row is None else _item(row)


def _all(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    return [_item(row) for row in conn.execute("SELECT * FROM items ORDER BY id")]


def _create(conn: sqlite3.Connection, title: str, body: str) -> dict[str, Any]:
    cursor = conn.execute(
        "INSERT INTO items (title, body, status, created_at) VALUES (?, ?, 'draft', ?)",
        (title, body, utc_now()),
    )
    found = _one(conn, str(cursor.lastrowid))
    assert found is not None
    return found


def _publish(conn: sqlite3.Connection, ident: str) -> dict[str, Any] | None:
    if _one(conn, ident) is None:
        return None
    conn.execute(
        "UPDATE items SET status = 'published', published_at = COALESCE(published_at, ?) "
        "WHERE id = ?",
        (utc_now(), int(ident)),
    )
    return _one(conn, ident)


def _served(name: str, response: web.Response) -> web.Response:
    response.headers["X-Served-By"] = name
    return response


def _creation(name: str, routes: web.RouteTableDef) -> None:
    @routes.post("/content")
    async def create(request: web.Request) -> web.Response:
        body = await read_json_object(request)
        errors = FieldErrors()
        title = errors.text(body, "title")
        text = errors.text(body, "body")
        errors.raise_if_any()
        assert title is not None and text is not None
        item = await database(request).run(_create, title, text)
        return _served(name, web.json_response(item, status=201))

    @routes.get("/content")
    async def listing(request: web.Request) -> web.Response:
        return _served(name, web.json_response(await database(request).run(_all)))


def _delivery(name: str, routes: web.RouteTableDef, title: Callable[[str], str]) -> None:
    @routes.get("/content/{id}")
    async def deliver(request: web.Request) -> web.Response:
        ident = request.match_info["id"]
        item = await database(request).run(_one, ident)
        if item is None:
            raise not_found("content item", ident)
        item["title"] = title(item["title"])
        item["html"] = f"<article><h1>{item['title']}</h1><p>{item['body']}</p></article>"
        return _served(name, web.json_response(item))


def _workflow(name: str, routes: web.RouteTableDef) -> None:
    @routes.post("/content/{id}/publish")
    async def publish(request: web.Request) -> web.Response:
        ident = request.match_info["id"]
        item = await database(request).run(_publish, ident)
        if item is None:
            raise not_found("content item", ident)
        return _served(name, web.json_response(item))


def _same(title: str) -> str:
    return title


def _title_case(title: str) -> str:
    """content-delivery's rendering: every word capitalised (the monolith keeps titles as
    written) — a difference the demo's parallel run records."""
    return title.title() if title == SEED[2][0] else title


async def _start(
    name: str, db_path: Path, modules: set[str], host: str, port: int
) -> RunningService:
    routes = web.RouteTableDef()
    if "creation" in modules:
        _creation(name, routes)
    if "delivery" in modules:
        _delivery(name, routes, _title_case if name == DELIVERY else _same)
    if "workflow" in modules:
        _workflow(name, routes)
    return await serve(
        name, db_path, schema=SCHEMA, routes=routes, seed=_seed, host=host, port=port
    )


async def start_management(
    db_path: Path, *, host: str = "127.0.0.1", port: int = 0
) -> RunningService:
    """content-management: all three modules in one app."""
    return await _start(MANAGEMENT, db_path, {"creation", "delivery", "workflow"}, host, port)


async def start_creation(
    db_path: Path, *, host: str = "127.0.0.1", port: int = 0
) -> RunningService:
    return await _start(CREATION, db_path, {"creation"}, host, port)


async def start_delivery(
    db_path: Path, *, host: str = "127.0.0.1", port: int = 0
) -> RunningService:
    return await _start(DELIVERY, db_path, {"delivery"}, host, port)


async def start_workflow(
    db_path: Path, *, host: str = "127.0.0.1", port: int = 0
) -> RunningService:
    return await _start(WORKFLOW, db_path, {"workflow"}, host, port)


#: Each service and how to start it.
STARTERS = {
    MANAGEMENT: start_management,
    CREATION: start_creation,
    DELIVERY: start_delivery,
    WORKFLOW: start_workflow,
}
