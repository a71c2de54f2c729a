"""Running the application: bind, serve until told to stop, then shut down in order."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable
from typing import TYPE_CHECKING

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from hybridmesh.api._context import REQUEST_ID
from hybridmesh.api._deadlines import DeadlineTCPSite
from hybridmesh.api.app import DEFAULT_MAX_BODY_BYTES, create_app
from hybridmesh.api.websocket import WebSocketHub
from hybridmesh.core.settings import Settings
from hybridmesh.events.bus import EventBus
from hybridmesh.observability import MeshMetrics, get_logger

if TYPE_CHECKING:
    from hybridmesh.control import ControlPlane

log = get_logger("hybridmesh.api.server")

#: Seconds in-flight requests get to finish at shutdown.
SHUTDOWN_GRACE = 10.0

#: Longest time the rest of a refused body is read and dropped (aiohttp's default).
LINGERING_TIME = 10.0


#: The longest request line served, in bytes (aiohttp's default is 8190).
MAX_REQUEST_LINE = 32 * 1024


class AccessLogger(AbstractAccessLogger):
    """One line per request, with the path but never the query string (it may hold a
    WebSocket token), and the request id."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info(
            "%s %s %d %.1fms",
            request.method,
            request.path,
            response.status,
            time * 1000,
            extra={
                "request_id": request.get(REQUEST_ID),
                "http_method": request.method,
                "http_path": request.path,
                "http_status": response.status,
                "duration_ms": round(time * 1000, 3),
            },
        )


async def run_server(
    settings: Settings,
    *,
    bus: EventBus,
    host: str | None = None,
    port: int | None = None,
    hub: WebSocketHub | None = None,
    metrics: MeshMetrics | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    ready: Callable[[str], None] | None = None,
    control: ControlPlane | None = None,
) -> None:
    """Serve :func:`~hybridmesh.api.app.create_app` on ``host:port`` (default
    ``settings.http_host``/``http_port``; port 0 picks a free one) until cancelled or sent
    SIGINT/SIGTERM. With ``control``, the control-plane API is served too.

    Starts ``bus`` (and with it the hub's subscription), then calls ``ready`` with the URL
    it listens on. On the way out: stops accepting, closes WebSocket clients with 1001,
    gives in-flight requests :data:`SHUTDOWN_GRACE` seconds, then closes ``bus``.

    Slow clients cannot hold connections: one that has not sent a complete request head
    ``settings.http_header_timeout`` seconds after it opened, or after its previous
    answer, is closed (idle keep-alive connections too), and a body that has not arrived
    ``settings.http_body_timeout`` seconds after its head is answered 408; the connection
    then closes once the rest of the body has come, or after the body timeout again (at most
    :data:`LINGERING_TIME`).
    """
    host = settings.http_host if host is None else host
    port = settings.http_port if port is None else port
    app = create_app(
        bus,
        hub=hub,
        metrics=metrics,
        settings=settings,
        max_body_bytes=max_body_bytes,
        control=control,
    )
    runner = web.AppRunner(
        app,
        access_log_class=AccessLogger,
        access_log=get_logger("hybridmesh.api.access"),
        shutdown_timeout=SHUTDOWN_GRACE,
        # aiohttp's own timer: a connection waiting for its next request head, whether idle
        # or half-way through one, is closed this long after its previous answer.
        keepalive_timeout=settings.http_header_timeout,
        # After an answer given before the whole body came (408, 413), what is left of the
        # body is read and dropped for at most this long, so the client sees the answer.
        lingering_time=min(LINGERING_TIME, settings.http_body_timeout),
        # A request line may be as long as the longest the API documents (its query
        # parameters' limits, percent-encoded); past that aiohttp answers 400 itself.
        max_line_size=MAX_REQUEST_LINE,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    handled = _on_signals(loop, stop.set)
    try:
        await runner.setup()
        await bus.start()
        site = DeadlineTCPSite(runner, host, port, header_timeout=settings.http_header_timeout)
        await site.start()
        url = _url(runner, host)
        log.info("serving on %s", url)
        if ready is not None:
            ready(url)
        await stop.wait()
        log.info("shutting down")
    finally:
        for signum in handled:
            loop.remove_signal_handler(signum)
        await runner.cleanup()
        await bus.close()


def _on_signals(loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> list[int]:
    handled: list[int] = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        # Not on Windows, and not outside the main thread: then cancellation stops us.
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signum, callback)
            handled.append(signum)
    return handled


def _url(runner: web.AppRunner, host: str) -> str:
    bound_host, bound_port = runner.addresses[0][:2]
    shown = host or bound_host
    if ":" in shown:
        shown = f"[{shown}]"
    return f"http://{shown}:{bound_port}"


__all__ = ["LINGERING_TIME", "SHUTDOWN_GRACE", "AccessLogger", "run_server"]
