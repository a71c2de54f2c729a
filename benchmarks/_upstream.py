"""A small JSON service run in its own process, the target of the client benchmarks."""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import socket
from collections.abc import Iterator
from contextlib import contextmanager

from aiohttp import web

_BODY = b'{"id":"1","name":"Ada","email":"ada@example.com","status":"active"}'


async def _item(_request: web.Request) -> web.Response:
    return web.Response(body=_BODY, content_type="application/json")


def _serve(sock: socket.socket) -> None:
    app = web.Application()
    app.router.add_get("/users/{id}", _item)

    async def main() -> None:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.SockSite(runner, sock).start()
        await asyncio.Event().wait()

    asyncio.run(main())


@contextmanager
def upstream() -> Iterator[str]:
    """Start the service in a child process; yield its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    port = sock.getsockname()[1]
    process = mp.get_context("fork").Process(target=_serve, args=(sock,), daemon=True)
    process.start()
    sock.close()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.join(5)
