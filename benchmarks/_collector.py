"""A stand-in OTLP/HTTP collector in its own process: accepts trace exports and counts the
spans in them, so a benchmark can show that the spans it recorded were really sent."""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import socket
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

_SPANS = web.AppKey("spans", list)


async def _export(request: web.Request) -> web.Response:
    # Decoded, not only read: a malformed request would fail here and be answered 400.
    try:
        exported = ExportTraceServiceRequest.FromString(await request.read())
    except Exception:
        return web.Response(status=400)
    request.app[_SPANS][0] += sum(
        len(scope.spans) for resource in exported.resource_spans for scope in resource.scope_spans
    )
    return web.Response(content_type="application/x-protobuf")


async def _count(request: web.Request) -> web.Response:
    return web.Response(text=str(request.app[_SPANS][0]))


def _serve(sock: socket.socket) -> None:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[_SPANS] = [0]
    app.router.add_post("/v1/traces", _export)
    app.router.add_get("/spans", _count)

    async def main() -> None:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.SockSite(runner, sock).start()
        await asyncio.Event().wait()

    asyncio.run(main())


@contextmanager
def collector() -> Iterator[str]:
    """Start the collector in a child process; yield its base URL (``/v1/traces`` takes
    exports, ``/spans`` answers how many spans it has received)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    process = mp.get_context("fork").Process(target=_serve, args=(sock,), daemon=True)
    process.start()
    sock.close()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.join(5)


def spans_received(base_url: str) -> int:
    """How many spans the collector at ``base_url`` has received so far."""
    with urllib.request.urlopen(f"{base_url}/spans", timeout=10) as answer:
        return int(answer.read())
