"""The TCP fault proxy against a real TCP echo server and a real PostgreSQL: toxics added
and removed through its control API, and each dropped by the proxy at its expiry."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aiohttp
import pytest
from tests.integration.loopback import serve
from tests.waiting import eventually

from hybridmesh.chaos.proxy import FaultProxy, control_app


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(4096):
        writer.write(data)
        await writer.drain()
    writer.close()


@dataclass
class Rig:
    proxy: FaultProxy
    address: tuple[str, int]
    control: str

    async def toxic(self, session: aiohttp.ClientSession, **body: object) -> dict[str, object]:
        async with session.post(f"{self.control}/toxics", json=body) as answer:
            assert answer.status == 201, await answer.text()
            return dict(await answer.json())

    async def toxics(self, session: aiohttp.ClientSession) -> list[dict[str, object]]:
        async with session.get(f"{self.control}/toxics") as answer:
            return list((await answer.json())["toxics"])


@asynccontextmanager
async def rig(upstream: tuple[str, int]) -> AsyncIterator[Rig]:
    proxy = FaultProxy(upstream)
    address = await proxy.start("127.0.0.1", 0)
    try:
        async with serve(control_app(proxy)) as control:
            yield Rig(proxy, address, control)
    finally:
        await proxy.close()


@asynccontextmanager
async def echo_rig() -> AsyncIterator[Rig]:
    server = await asyncio.start_server(_echo, "127.0.0.1", 0)
    try:
        async with rig(server.sockets[0].getsockname()[:2]) as made:
            yield made
    finally:
        server.close()


async def round_trip(address: tuple[str, int], payload: bytes = b"ping") -> float:
    """Seconds one echo takes through the proxy, on a new connection."""
    reader, writer = await asyncio.open_connection(*address)
    try:
        started = time.monotonic()
        writer.write(payload)
        await writer.drain()
        assert await reader.readexactly(len(payload)) == payload
        return time.monotonic() - started
    finally:
        writer.close()


async def test_latency_is_added_to_each_answer_and_removed_on_request() -> None:
    async with echo_rig() as made, aiohttp.ClientSession() as session:
        await round_trip(made.address)
        await made.toxic(session, kind="latency", latency=300, duration=60, name="slow")
        assert await round_trip(made.address) >= 0.3
        async with session.delete(f"{made.control}/toxics/slow") as answer:
            assert answer.status == 200
        assert await made.toxics(session) == []
        async with session.delete(f"{made.control}/toxics/slow") as answer:
            assert answer.status == 404
            assert answer.content_type == "application/problem+json"


async def test_reset_peer_closes_an_open_connection() -> None:
    async with echo_rig() as made, aiohttp.ClientSession() as session:
        reader, writer = await asyncio.open_connection(*made.address)
        writer.write(b"hello")
        assert await reader.readexactly(5) == b"hello"
        await made.toxic(session, kind="reset_peer", timeout=0, duration=60)
        with pytest.raises((ConnectionResetError, asyncio.IncompleteReadError)):
            await asyncio.wait_for(reader.readexactly(1), 10)
        writer.close()


async def test_timeout_holds_the_data_while_it_lasts() -> None:
    async with echo_rig() as made, aiohttp.ClientSession() as session:
        reader, writer = await asyncio.open_connection(*made.address)
        await made.toxic(session, kind="timeout", timeout=0, duration=60, stream="both")
        writer.write(b"held")
        await writer.drain()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(reader.readexactly(4), 0.5)
        made.proxy.clear()
        assert await asyncio.wait_for(reader.readexactly(4), 10) == b"held"
        writer.close()


async def test_a_toxic_expires_without_anyone_removing_it() -> None:
    async with echo_rig() as made, aiohttp.ClientSession() as session:
        await made.toxic(session, kind="timeout", timeout=0, duration=0.5, stream="both")
        assert len(await made.toxics(session)) == 1

        async def gone() -> bool:
            return await made.toxics(session) == []

        await eventually(gone, what="the toxic's expiry")
        # The connection passes data again.
        await round_trip(made.address)


async def test_a_toxic_without_a_duration_is_refused() -> None:
    async with (
        echo_rig() as made,
        aiohttp.ClientSession() as session,
        session.post(f"{made.control}/toxics", json={"kind": "latency", "latency": 100}) as answer,
    ):
        assert answer.status == 422
        body = await answer.json()
        assert [e["field"] for e in body["errors"]] == ["duration"]


@pytest.mark.postgres
async def test_postgresql_through_the_proxy(postgres_url: str) -> None:
    import asyncpg

    host_port = postgres_url.split("@", 1)[1].split("/", 1)[0]
    host, port = host_port.rsplit(":", 1)
    database = postgres_url.rsplit("/", 1)[1]
    async with rig((host, int(port))) as made, aiohttp.ClientSession() as session:
        conn = await asyncpg.connect(
            host=made.address[0], port=made.address[1], user="postgres", database=database
        )
        try:
            assert await conn.fetchval("SELECT 1") == 1
            await made.toxic(session, kind="latency", latency=250, duration=60)
            started = time.monotonic()
            assert await conn.fetchval("SELECT 2") == 2
            assert time.monotonic() - started >= 0.25
            await made.toxic(session, kind="reset_peer", timeout=0, duration=60)
            with pytest.raises((asyncpg.PostgresConnectionError, ConnectionError, OSError)):
                await asyncio.wait_for(conn.fetchval("SELECT 3"), 10)
        finally:
            await conn.close(timeout=1)
