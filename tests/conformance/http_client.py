"""One conformance suite for the HTTP clients the transports use.

REST calls go through :class:`~hybridmesh.transports.http1.Http1Pool`; GraphQL, batch and
function calls through the aiohttp session of :class:`~hybridmesh.transports.HttpSession`
(:meth:`~hybridmesh.transports.HttpSession.fetch`). Both promise one contract: the whole
answer comes back whatever its status, chunked and gzip answers are decoded, connections are
kept alive and reused, a call the caller gives up on closes its connection, a header with a
line break is refused, large bodies pass intact, and redirects are returned, not followed.

A client's test module subclasses :class:`HttpClientConformance` as ``Test…`` and provides

- the fixture ``send``: the client's request function, called as
  ``await send(method, url, headers=…, body=…)`` and returning an
  :class:`~hybridmesh.transports.http1.Http1Response`;
- ``connection_errors``: what the client raises when no answer came back;
- ``resends_after_stale_reuse``: the client's own documented property (a static method
  taking the request method) saying whether a request whose reused connection closed
  before answering is sent again. The clients differ here, by design; the suite checks
  each does what it says.

The servers are real, on loopback (``service``: a recording aiohttp app; ``raw_server``
for answers no well-behaved server gives).
"""

from __future__ import annotations

import asyncio
import hashlib
import socket
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

import pytest
from tests.integration.transports.helpers import Recorder, pattern_bytes, raw_server, read_head

from hybridmesh.core.serialization import loads
from hybridmesh.transports.http1 import Http1Response

Send = Callable[..., Awaitable[Http1Response]]
Service = tuple[Recorder, str]

#: Seconds any single wait in these tests may take before it fails.
WAIT = 10.0
#: Larger than any socket or parser buffer on the way, so bodies cross many reads.
LARGE = 8 * 1024 * 1024
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


class HttpClientConformance:
    """The behaviour every HTTP client of the transports must show."""

    connection_errors: ClassVar[tuple[type[BaseException], ...]]

    @staticmethod
    def resends_after_stale_reuse(method: str) -> bool:
        raise NotImplementedError("a subclass names the client's own property")

    async def test_a_post_carries_its_body_and_headers_and_the_answer_comes_back(
        self, send: Send, service: Service
    ) -> None:
        recorder, url = service
        headers = {"Content-Type": "application/json", "X-Trace": "t-1"}
        response = await send("POST", f"{url}/orders", headers=headers, body=b'{"n": 1}')
        assert response.status == 200
        assert loads(response.body) == {"path": "/orders", "n": 1}
        assert response.content_type == "application/json"
        seen = recorder.seen[0]
        assert (seen.method, seen.body) == ("POST", b'{"n": 1}')
        assert seen.headers["X-Trace"] == "t-1"

    async def test_an_error_status_is_an_answer_with_its_body(
        self, send: Send, service: Service
    ) -> None:
        _, url = service
        response = await send("GET", f"{url}/missing")
        assert response.status == 404
        assert loads(response.body) == {"title": "no such thing"}

    async def test_a_chunked_answer_is_reassembled(self, send: Send, service: Service) -> None:
        _, url = service
        response = await send("GET", f"{url}/chunked")
        assert response.body == b"one two three"

    async def test_a_gzip_answer_is_decoded(self, send: Send, service: Service) -> None:
        _, url = service
        response = await send("GET", f"{url}/gzip")
        assert loads(response.body) == {"packed": True}

    async def test_sequential_requests_reuse_one_connection(
        self, send: Send, service: Service
    ) -> None:
        recorder, url = service
        for n in range(3):
            await send("POST", f"{url}/calls/{n}", body=b"{}")
        assert len(recorder.seen) == 3
        assert len(recorder.peers) == 1

    async def test_a_large_request_body_arrives_intact(self, send: Send, service: Service) -> None:
        _, url = service
        body = pattern_bytes(LARGE)
        response = await send("POST", f"{url}/digest", body=body)
        assert loads(response.body) == {
            "size": LARGE,
            "sha256": hashlib.sha256(body).hexdigest(),
        }

    async def test_a_large_answer_arrives_intact(self, send: Send, service: Service) -> None:
        _, url = service
        response = await send("GET", f"{url}/large/{LARGE}")
        assert len(response.body) == LARGE
        assert response.body == pattern_bytes(LARGE)

    @pytest.mark.parametrize("method", ["GET", "POST"])
    async def test_a_redirect_is_returned_not_followed(
        self, send: Send, service: Service, method: str
    ) -> None:
        recorder, url = service
        response = await send(method, f"{url}/moved")
        assert response.status == 302
        assert response.headers["Location"] == "/elsewhere"
        assert [seen.path for seen in recorder.seen] == ["/moved"]

    @pytest.mark.parametrize(
        "headers",
        [{"X-Note": "a\r\nX-Injected: yes"}, {"X-Note\r\nX-Injected": "yes"}, {"X-Note": "a\nb"}],
    )
    async def test_a_header_with_a_line_break_is_refused_before_anything_is_sent(
        self, send: Send, service: Service, headers: dict[str, str]
    ) -> None:
        recorder, url = service
        with pytest.raises(ValueError):
            await send("GET", f"{url}/anything", headers=headers)
        assert recorder.seen == []
        assert (await send("GET", f"{url}/after")).status == 200
        assert "X-Injected" not in recorder.seen[0].headers

    async def test_a_refused_connection_raises(self, send: Send) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        with pytest.raises(self.connection_errors):
            await send("GET", f"http://127.0.0.1:{port}/")

    async def test_a_call_the_caller_gives_up_on_closes_its_connection(self, send: Send) -> None:
        hung_up = asyncio.Event()

        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await read_head(reader)
            if server.connections == 1:
                await reader.read()  # never answers; returns when the client hangs up
                hung_up.set()
                return
            writer.write(OK)
            await writer.drain()
            await reader.read()

        async with raw_server(answer) as server:
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.2):
                    await send("GET", f"{server.url}/")
            async with asyncio.timeout(WAIT):
                await hung_up.wait()
            response = await send("GET", f"{server.url}/")
        assert response.body == b"ok"
        assert server.connections == 2

    @pytest.mark.parametrize("method", ["GET", "PUT", "POST", "PATCH"])
    async def test_a_reused_connection_closed_before_answering_is_handled_as_documented(
        self, send: Send, method: str
    ) -> None:
        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await read_head(reader)
            writer.write(OK)
            await writer.drain()
            await read_head(reader)  # the next request arrives as the server gives up on it

        options: dict[str, Any] = {"body": b"{}"} if method != "GET" else {}
        async with raw_server(answer) as server:
            await send("GET", f"{server.url}/")
            if self.resends_after_stale_reuse(method):
                response = await send(method, f"{server.url}/", **options)
                assert response.body == b"ok"
            else:
                with pytest.raises(self.connection_errors):
                    await send(method, f"{server.url}/", **options)
                assert server.connections == 1
                assert (await send(method, f"{server.url}/", **options)).body == b"ok"
        assert server.connections == 2
