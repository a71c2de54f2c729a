"""Running the application: bind, serve until told to stop, then shut down in order."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from hybridmesh.api._context import REQUEST_ID
from hybridmesh.api.app import DEFAULT_MAX_BODY_BYTES, create_app
from hybridmesh.api.websocket import WebSocketHub
from hybridmesh.core.settings import Settings
from hybridmesh.events.bus import EventBus
from hybridmesh.observability import MeshMetrics, get_logger

log = get_logger("hybridmesh.api.server")

#: Seconds in-flight requests get to finish at shutdown.
SHUTDOWN_GRACE = 10.0


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
) -> None:
    """Serve :func:`~hybridmesh.api.app.create_app` on ``host:port`` (default
    ``settings.http_host``/``http_port``; port 0 picks a free one) until cancelled or sent
    SIGINT/SIGTERM.

    Starts ``bus`` (and with it the hub's subscription), then calls ``ready`` with the URL
    it listens on. On the way out: stops accepting, closes WebSocket clients with 1001,
    gives in-flight requests :data:`SHUTDOWN_GRACE` seconds, then closes ``bus``.
    """
    host = settings.http_host if host is None else host
    port = settings.http_port if port is None else port
    app = create_app(
        bus, hub=hub, metrics=metrics, settings=settings, max_body_bytes=max_body_bytes
    )
    runner = web.AppRunner(
        app,
        access_log_class=AccessLogger,
        access_log=get_logger("hybridmesh.api.access"),
        shutdown_timeout=SHUTDOWN_GRACE,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    handled = _on_signals(loop, stop.set)
    try:
        await runner.setup()
        await bus.start()
        site = web.TCPSite(runner, host, port)
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


__all__ = ["SHUTDOWN_GRACE", "AccessLogger", "run_server"]
