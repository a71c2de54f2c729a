"""A TCP fault proxy in Toxiproxy's model: slow or cut the connection to a database or a
broker while an experiment runs.

The proxy listens on a local port and forwards every connection to its upstream. Toxics are
added and removed at runtime (:meth:`FaultProxy.add`, or the control API of
:func:`control_app`), and act on connections already open as well as new ones:

=============  ================================================================================
toxic          what it does
=============  ================================================================================
``latency``    waits ``latency`` ms (plus up to ``jitter`` ms either way) before passing on each
               chunk of data
``bandwidth``  passes at most ``rate`` KB/s
``reset_peer`` closes every connection with a TCP RST ``timeout`` ms after it sees the toxic
``timeout``    passes no data any more; closes the connection ``timeout`` ms after it sees
               the toxic, or holds it while the toxic lasts when ``timeout`` is 0
=============  ================================================================================

``stream`` says which way a toxic acts: ``downstream`` (upstream to client, the default, as
in Toxiproxy), ``upstream`` (client to upstream) or ``both``.

**Every toxic has an expiry**: it is added with a ``duration`` in seconds (at most one
day) and the proxy itself drops it then, so a toxic never outlives an experiment whose
runner died before its rollbacks. The proxy is the process that holds the toxics, so
nothing but its own clock is needed.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import pydantic
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from hybridmesh.core.errors import Problem, ValidationError
from hybridmesh.core.ids import new_id
from hybridmesh.core.limits import DAY_SECONDS
from hybridmesh.observability import get_logger

log = get_logger("hybridmesh.chaos.proxy")

#: The toxics a proxy knows, by name.
KINDS = ("latency", "bandwidth", "reset_peer", "timeout")
#: Bytes read from one side at a time.
CHUNK = 32 * 1024
#: Seconds between two looks at the toxics by a connection waiting on one (a held
#: ``timeout``, a pending ``reset_peer``).
TICK = 0.02

Stream = Literal["downstream", "upstream", "both"]


class ToxicSpec(BaseModel):
    """A toxic as the control API takes it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["latency", "bandwidth", "reset_peer", "timeout"]
    #: Seconds the toxic lasts; the proxy drops it then.
    duration: float = Field(gt=0, le=DAY_SECONDS, allow_inf_nan=False)
    name: str | None = Field(None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    stream: Stream = "downstream"
    #: latency: milliseconds added to each chunk, and their spread either way.
    latency: float = Field(0, ge=0, le=DAY_SECONDS * 1000, allow_inf_nan=False)
    jitter: float = Field(0, ge=0, le=DAY_SECONDS * 1000, allow_inf_nan=False)
    #: bandwidth: KB (1,000 bytes) a second.
    rate: float = Field(0, ge=0, le=10_000_000, allow_inf_nan=False)
    #: reset_peer and timeout: milliseconds before the connection is closed (timeout: 0
    #: holds it while the toxic lasts).
    timeout: float = Field(0, ge=0, le=DAY_SECONDS * 1000, allow_inf_nan=False)

    @pydantic.model_validator(mode="after")
    def _sensible(self) -> ToxicSpec:
        if self.kind == "bandwidth" and self.rate <= 0:
            raise ValueError("a bandwidth toxic needs a rate above 0 (KB/s)")
        return self


@dataclass
class Toxic:
    """A toxic in force: its settings and when it ends (the proxy's monotonic clock)."""

    name: str
    spec: ToxicSpec
    expires_at: float
    added_at: float

    def acts_on(self, direction: str) -> bool:
        return self.spec.stream in ("both", direction)

    def to_dict(self, now: float) -> dict[str, Any]:
        data = self.spec.model_dump(exclude={"name"})
        data.update(name=self.name, expires_in=round(max(0.0, self.expires_at - now), 3))
        return data


def parse_toxic(data: Any) -> ToxicSpec:
    """A :class:`ToxicSpec` from JSON data; :class:`ValidationError` names each field."""
    try:
        return ToxicSpec.model_validate(data)
    except pydantic.ValidationError as invalid:
        raise ValidationError(
            [
                Problem(str(e["msg"]), field=".".join(map(str, e["loc"])) or None)
                for e in invalid.errors()
            ]
        ) from None


@dataclass(eq=False)
class _Connection:
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter
    #: When this connection first saw each toxic (by name), for reset_peer and timeout.
    seen: dict[str, float] = field(default_factory=dict)


class FaultProxy:
    """One listening port forwarded to one upstream, with its toxics."""

    def __init__(
        self,
        upstream: tuple[str, int],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.upstream = upstream
        self.clock = clock
        self._toxics: dict[str, Toxic] = {}
        self._connections: set[_Connection] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self.rng = random.Random()

    # -- toxics ----------------------------------------------------------------------------

    def add(self, spec: ToxicSpec) -> Toxic:
        """Switch ``spec`` on until its duration ends; a toxic of the same name is replaced."""
        now = self.clock()
        name = spec.name or f"{spec.kind}-{new_id()[:8]}"
        toxic = Toxic(name, spec, now + spec.duration, now)
        self._toxics[name] = toxic
        log.info("chaos proxy: %s on for %.3g s", name, spec.duration)
        return toxic

    def remove(self, name: str) -> bool:
        return self._toxics.pop(name, None) is not None

    def clear(self) -> int:
        count = len(self.toxics())
        self._toxics.clear()
        return count

    def toxics(self) -> list[Toxic]:
        """The toxics in force; expired ones are dropped here, whoever asks."""
        now = self.clock()
        for name in [n for n, t in self._toxics.items() if t.expires_at <= now]:
            log.info("chaos proxy: %s expired", name)
            del self._toxics[name]
        return list(self._toxics.values())

    # -- serving ---------------------------------------------------------------------------

    async def start(self, host: str, port: int) -> tuple[str, int]:
        self._server = await asyncio.start_server(self._accept, host, port)
        address = self._server.sockets[0].getsockname()
        return str(address[0]), int(address[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for connection in list(self._connections):
            connection.client.close()
            connection.upstream.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError as error:
            log.warning("chaos proxy: upstream %s:%s unreachable: %s", *self.upstream, error)
            writer.close()
            self._tasks.discard(task)
            return
        connection = _Connection(writer, up_writer)
        self._connections.add(connection)
        try:
            pumps = [
                asyncio.create_task(self._pump(reader, up_writer, "upstream", connection)),
                asyncio.create_task(self._pump(up_reader, writer, "downstream", connection)),
            ]
            watch = asyncio.create_task(self._watch(connection))
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            for other in [*pumps, watch]:
                other.cancel()
            await asyncio.gather(*pumps, watch, return_exceptions=True)
        finally:
            self._connections.discard(connection)
            for side in (writer, up_writer):
                side.close()
            self._tasks.discard(task)

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        direction: str,
        connection: _Connection,
    ) -> None:
        while True:
            try:
                data = await reader.read(CHUNK)
            except ConnectionError:
                return
            if not data:
                with contextlib.suppress(OSError):
                    if writer.can_write_eof():
                        writer.write_eof()
                return
            await self._hold(direction)
            await self._slow(direction, len(data))
            writer.write(data)
            try:
                await writer.drain()
            except ConnectionError:
                return

    async def _hold(self, direction: str) -> None:
        """Wait while a ``timeout`` toxic stops this direction (polled: a toxic also
        ends by expiring, which no one signals)."""
        while True:
            if not self._holding(direction):
                return
            await asyncio.sleep(TICK)

    def _holding(self, direction: str) -> bool:
        return any(t.spec.kind == "timeout" and t.acts_on(direction) for t in self.toxics())

    async def _slow(self, direction: str, size: int) -> None:
        for toxic in self.toxics():
            if not toxic.acts_on(direction):
                continue
            spec = toxic.spec
            if spec.kind == "latency":
                spread = self.rng.uniform(-spec.jitter, spec.jitter) if spec.jitter else 0.0
                await asyncio.sleep(max(0.0, spec.latency + spread) / 1000)
            elif spec.kind == "bandwidth":
                await asyncio.sleep(size / (spec.rate * 1000))

    async def _watch(self, connection: _Connection) -> None:
        """Close ``connection`` when a reset_peer or a timeout toxic says so."""
        while True:
            now = self.clock()
            for toxic in self.toxics():
                if toxic.spec.kind not in ("reset_peer", "timeout"):
                    continue
                seen = connection.seen.setdefault(toxic.name, now)
                if toxic.spec.kind == "timeout" and toxic.spec.timeout == 0:
                    continue
                if now - seen >= toxic.spec.timeout / 1000:
                    if toxic.spec.kind == "reset_peer":
                        _reset(connection.client)
                    connection.client.close()
                    connection.upstream.close()
                    return
            await asyncio.sleep(TICK)


def _reset(writer: asyncio.StreamWriter) -> None:
    """Make the close of ``writer`` a TCP RST (SO_LINGER on, with a zero timeout)."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport = writer.transport
    with contextlib.suppress(Exception):
        transport.abort()


# -- the control API --------------------------------------------------------------------------


def _problem(status: int, detail: str, problems: list[Problem] | None = None) -> web.Response:
    body: dict[str, Any] = {"type": "about:blank", "status": status, "detail": detail}
    if problems:
        body["errors"] = [{"field": p.field, "message": p.message} for p in problems]
    return web.json_response(body, status=status, content_type="application/problem+json")


def control_app(proxy: FaultProxy) -> web.Application:
    """The proxy's control API, in JSON:

    - ``GET /toxics``: the toxics in force, each with ``expires_in`` seconds;
    - ``POST /toxics``: add one (:class:`ToxicSpec`); 201 with it;
    - ``DELETE /toxics/{name}``: remove one (404 when there is none of that name);
    - ``DELETE /toxics``: remove them all (what a rollback calls).
    """

    def listing() -> list[dict[str, Any]]:
        now = proxy.clock()
        return [toxic.to_dict(now) for toxic in proxy.toxics()]

    async def get_toxics(_: web.Request) -> web.Response:
        return web.json_response({"upstream": "{}:{}".format(*proxy.upstream), "toxics": listing()})

    async def post_toxic(request: web.Request) -> web.Response:
        try:
            data = await request.json()
        except ValueError:
            return _problem(400, "the body is not JSON")
        try:
            spec = parse_toxic(data)
        except ValidationError as invalid:
            return _problem(422, invalid.reason, invalid.problems)
        toxic = proxy.add(spec)
        return web.json_response(toxic.to_dict(proxy.clock()), status=201)

    async def delete_toxic(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if not proxy.remove(name):
            return _problem(404, f"no toxic {name!r}")
        return web.json_response({"removed": [name]})

    async def delete_all(_: web.Request) -> web.Response:
        return web.json_response({"removed": proxy.clear()})

    app = web.Application()
    app.router.add_get("/toxics", get_toxics)
    app.router.add_post("/toxics", post_toxic)
    app.router.add_delete("/toxics", delete_all)
    app.router.add_delete("/toxics/{name}", delete_toxic)
    return app


def parse_address(text: str, what: str) -> tuple[str, int]:
    """``HOST:PORT`` as a pair; :class:`ValidationError` naming ``what`` otherwise."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValidationError([Problem(f"{text[:60]!r} is not HOST:PORT", field=what)])
    return host.strip("[]"), int(port)


__all__ = [
    "KINDS",
    "FaultProxy",
    "Toxic",
    "ToxicSpec",
    "control_app",
    "parse_address",
    "parse_toxic",
]
