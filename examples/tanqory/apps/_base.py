"""What every reference service shares: how it starts, stops, and behaves at its edges.

:func:`serve` builds an aiohttp application around a service's own routes and gives it

- errors as RFC 9457 ``application/problem+json`` (unknown routes and validation too);
- ``X-Request-ID`` echoed on every answer, generated when the caller sent none;
- ``GET /_admin/requests``: the last 100 requests (method, path, headers), newest last,
  leaving out ``/_admin/*`` calls themselves; ``DELETE /_admin/requests`` empties it;
- idempotent commands via ``Idempotency-Key``, remembered in the service's own SQLite file;
- fault injection via ``POST /_admin/faults`` (error or latency; see :mod:`._faults`);
- ``GET /healthz``.

Middleware order, outermost first: request id and log, problems, faults, idempotency. So an
injected fault is a problem+json answer with the request's id, and a replayed answer is
still subject to an injected outage.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from tanqory.apps import _idempotency
from tanqory.apps._database import ServiceDatabase
from tanqory.apps._faults import FAULTS, FaultInjector, fault_middleware, get_faults, set_faults
from tanqory.apps._idempotency import DATABASE, idempotency_middleware
from tanqory.apps._problems import (
    FieldErrors,
    ProblemError,
    not_found,
    problem_middleware,
    read_json_object,
)

__all__ = [
    "FieldErrors",
    "ProblemError",
    "RunningService",
    "database",
    "not_found",
    "one_or_404",
    "read_json_object",
    "serve",
    "utc_now",
]

#: How many requests ``GET /_admin/requests`` remembers.
REQUEST_LOG_SIZE = 100

SERVICE_NAME = web.AppKey("service_name", str)
REQUEST_IDS: web.AppKey[Callable[[], str]] = web.AppKey("request_ids")


class RequestLog:
    """The last requests a service received, newest last, for tests and the demo to inspect."""

    def __init__(self, size: int = REQUEST_LOG_SIZE) -> None:
        self._entries: deque[dict[str, Any]] = deque(maxlen=size)

    def record(self, request: web.Request) -> None:
        self._entries.append(
            {"method": request.method, "path": request.path, "headers": dict(request.headers)}
        )

    def entries(self) -> list[dict[str, Any]]:
        return list(self._entries)

    def clear(self) -> None:
        self._entries.clear()


REQUEST_LOG = web.AppKey("request_log", RequestLog)


def utc_now() -> str:
    """The current time as an ISO 8601 string in UTC, as the services store it."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def database(request: web.Request) -> ServiceDatabase:
    """The database of the service handling ``request``."""
    return request.app[DATABASE]


async def one_or_404(
    request: web.Request,
    lookup: Callable[[sqlite3.Connection, str], Any],
    what: str,
    key: str = "id",
) -> web.Response:
    """``GET …/{key}``: the JSON of ``lookup(conn, key)``, or the 404 naming ``what``."""
    ident = request.match_info[key]
    found = await database(request).run(lookup, ident)
    if found is None:
        raise not_found(what, ident)
    return web.json_response(found)


@web.middleware
async def request_id_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Records the request for ``/_admin/requests`` and echoes (or assigns) its id."""
    request_id = request.headers.get("X-Request-ID") or request.app[REQUEST_IDS]()
    if not request.path.startswith("/_admin/"):
        request.app[REQUEST_LOG].record(request)
    try:
        response = await handler(request)
    except web.HTTPException as error:
        # Only redirects and 1xx/2xx raised as exceptions get here; problems are answers.
        error.headers["X-Request-ID"] = request_id
        raise
    response.headers["X-Request-ID"] = request_id
    return response


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "service": request.app[SERVICE_NAME]})


async def _requests(request: web.Request) -> web.Response:
    return web.json_response(request.app[REQUEST_LOG].entries())


async def _clear_requests(request: web.Request) -> web.Response:
    request.app[REQUEST_LOG].clear()
    return web.Response(status=204)


def build_app(
    name: str,
    db: ServiceDatabase,
    routes: web.RouteTableDef,
    *,
    request_ids: Callable[[], str] | None = None,
    configure: Callable[[web.Application], None] | None = None,
) -> web.Application:
    """The aiohttp application of one service: its ``routes`` plus the shared behaviour.

    ``configure`` gets the application last, to add what one service needs besides routes:
    its own keys, and startup and shutdown hooks for background work.
    """
    app = web.Application(
        middlewares=[
            request_id_middleware,
            problem_middleware,
            fault_middleware,
            idempotency_middleware,
        ]
    )
    app[SERVICE_NAME] = name
    app[DATABASE] = db
    app[FAULTS] = FaultInjector()
    app[REQUEST_LOG] = RequestLog()
    app[REQUEST_IDS] = request_ids or (lambda: str(uuid.uuid4()))
    _idempotency.install(app)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/_admin/requests", _requests)
    app.router.add_delete("/_admin/requests", _clear_requests)
    app.router.add_get("/_admin/faults", get_faults)
    app.router.add_post("/_admin/faults", set_faults)
    app.router.add_routes(routes)
    if configure is not None:
        configure(app)
    return app


@dataclass
class RunningService:
    """A service listening on a local port; stop it with :meth:`stop` or ``async with``."""

    name: str
    url: str
    _runner: web.AppRunner = field(repr=False)
    _database: ServiceDatabase = field(repr=False)
    _stopped: bool = field(default=False, repr=False)

    async def stop(self) -> None:
        """Stops serving and closes the database; safe to call twice."""
        if self._stopped:
            return
        self._stopped = True
        try:
            await self._runner.cleanup()
        finally:
            await self._database.close()

    async def __aenter__(self) -> RunningService:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


async def serve(
    name: str,
    db_path: Path,
    *,
    schema: str,
    routes: web.RouteTableDef,
    seed: Callable[[sqlite3.Connection], None] | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    request_ids: Callable[[], str] | None = None,
    configure: Callable[[web.Application], None] | None = None,
) -> RunningService:
    """Opens the service's database (creating and seeding it when new) and starts serving.

    ``port=0`` picks a free port; the returned :class:`RunningService` has the real URL.
    ``configure`` is passed to :func:`build_app`. Hooks it adds run inside the database's
    lifetime: ``on_startup`` after it opens, ``on_shutdown`` and ``on_cleanup`` before it closes.
    """
    db = ServiceDatabase(db_path, schema)
    try:
        await db.open(seed)
        app = build_app(name, db, routes, request_ids=request_ids, configure=configure)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
    except BaseException:
        await db.close()
        raise
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound: Any = runner.addresses[0]
    except BaseException:
        await runner.cleanup()
        await db.close()
        raise
    url_host = f"[{host}]" if ":" in host else host
    return RunningService(name, f"http://{url_host}:{bound[1]}", runner, db)
