"""Fixtures for the JetStream backend tests.

They connect to ``HYBRIDMESH_TEST_NATS_URL`` (default ``nats://127.0.0.1:4222``), a NATS
server with JetStream. Each test gets its own random prefix, so its streams are its own, and
deletes them afterwards. When the server is unreachable the tests skip, unless
``HYBRIDMESH_REQUIRE_SERVICES=1`` is set (as CI does), in which case they fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import nats
import pytest
from tests.waiting import eventually, eventually_sync

from hybridmesh.events.backends.nats import NatsEventBackend

NATS_URL = os.environ.get("HYBRIDMESH_TEST_NATS_URL", "nats://127.0.0.1:4222")
REQUIRE_SERVICES = os.environ.get("HYBRIDMESH_REQUIRE_SERVICES", "") not in ("", "0", "false")

pytestmark = pytest.mark.nats


async def _check_jetstream(url: str) -> None:
    nc = await asyncio.wait_for(nats.connect(url, connect_timeout=2, max_reconnect_attempts=1), 5)
    try:
        await nc.jetstream().account_info()
    finally:
        await nc.close()


@pytest.fixture(scope="session")
def nats_url() -> str:
    """The URL of a reachable NATS server with JetStream (or the tests skip / fail)."""
    try:
        asyncio.run(_check_jetstream(NATS_URL))
    except Exception as error:
        message = f"NATS JetStream is not reachable: {type(error).__name__}: {error}"
        if REQUIRE_SERVICES:
            pytest.fail(f"{message} (HYBRIDMESH_REQUIRE_SERVICES is set)", pytrace=False)
        pytest.skip(message)
    return NATS_URL


@pytest.fixture
async def prefix(nats_url: str) -> AsyncIterator[str]:
    """A fresh prefix; its streams are deleted after the test."""
    name = f"t{uuid.uuid4().hex[:12]}"
    yield name
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        for suffix in ("EVENTS", "LEASES", "DLQ"):
            with contextlib.suppress(Exception):
                await js.delete_stream(f"{name.upper()}_{suffix}")
    finally:
        await nc.close()


MakeNats = Callable[..., Awaitable[NatsEventBackend]]


async def hang_up(backend: NatsEventBackend) -> None:
    """Make the server hang up on the backend's connection, and wait until the client has
    seen it: send a protocol line over the server's 4 KiB limit (as a 10,000-character
    event type once did), which the server answers with -ERR and a closed socket.
    Whichever of the two the client reads first decides what it does: on the -ERR it
    gives the connection up (closed), on the reset it reconnects by itself. The backend
    must go on either way, so either ends the wait."""
    hung_up = backend._connected().nc
    await hung_up.publish("x" * 10_000, b"")
    await eventually(
        lambda: hung_up.is_closed or hung_up.stats["reconnects"] > 0,
        what="the server hanging up",
    )


@pytest.fixture
async def make_nats(nats_url: str, prefix: str) -> AsyncIterator[MakeNats]:
    """Start another backend on the test's streams, as another process would; all are
    closed after the test."""
    opened: list[NatsEventBackend] = []

    async def make(**options: object) -> NatsEventBackend:
        backend = NatsEventBackend(nats_url, prefix=prefix, **options)  # type: ignore[arg-type]
        await backend.start()
        opened.append(backend)
        return backend

    yield make
    for backend in opened:
        await backend.close()


@pytest.fixture
async def backend(make_nats: MakeNats) -> NatsEventBackend:
    return await make_nats()


@pytest.fixture
def make_backend(make_nats: MakeNats) -> Callable[[], Awaitable[NatsEventBackend]]:
    """The conformance suite's factory: another started backend on the same streams."""

    async def make() -> NatsEventBackend:
        return await make_nats()

    return make


NATS_SERVER = os.environ.get("HYBRIDMESH_TEST_NATS_SERVER", "/usr/sbin/nats-server")


class PrivateNats:
    """A nats-server process of the test's own, on a free loopback port, with JetStream
    storing in a folder that outlives a restart: a test may stop and start it."""

    def __init__(self, store: Path, config: Path | None = None) -> None:
        self.store = store
        self.config = config
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"nats://127.0.0.1:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the server and wait until it takes connections."""
        assert self._process is None
        arguments = ["-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd", str(self.store)]
        if self.config is not None:
            arguments += ["-c", str(self.config)]
        self._process = subprocess.Popen(
            [NATS_SERVER, *arguments],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        eventually_sync(self._reachable, what=f"nats-server on port {self.port}")

    def stop(self) -> None:
        """Stop the server (SIGTERM, as an operator would) and wait until it is gone."""
        process, self._process = self._process, None
        if process is not None:
            process.terminate()
            process.wait(timeout=30)

    def _reachable(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        except OSError:
            return False


@pytest.fixture
def private_nats(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[PrivateNats]:
    """A NATS server for this test alone (see :class:`PrivateNats`), stopped afterwards.
    Parametrise it indirectly with the text of a server configuration file to set limits."""
    if not os.access(NATS_SERVER, os.X_OK):
        message = f"no nats-server binary at {NATS_SERVER} (HYBRIDMESH_TEST_NATS_SERVER)"
        if REQUIRE_SERVICES:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    config = None
    if getattr(request, "param", None):
        config = tmp_path / "nats.conf"
        config.write_text(request.param)
    server = PrivateNats(tmp_path / "jetstream", config)
    server.start()
    try:
        yield server
    finally:
        server.stop()
