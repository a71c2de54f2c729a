"""The keep-alive HTTP/1.1 pool against real servers on loopback."""

from __future__ import annotations

import asyncio
import socket
import ssl
import zlib
from pathlib import Path

import pytest
from tests.integration.loopback import serve
from tests.integration.transports.helpers import Recorder, raw_server, read_head
from tests.waiting import HANG, eventually

from hybridmesh.core.serialization import dumpb, loads
from hybridmesh.transports.http1 import Http1Error, Http1Pool

Service = tuple[Recorder, str]


async def test_json_post_round_trip_sends_only_the_headers_it_needs(
    pool: Http1Pool, service: Service
) -> None:
    recorder, url = service
    body = dumpb({"order_id": "o-1"})
    response = await pool.request(
        "POST",
        f"{url}/orders",
        headers={"Content-Type": "application/json", "Idempotency-Key": "k-1"},
        body=body,
    )
    assert (response.status, response.reason) == (200, "OK")
    assert response.content_type == "application/json"
    assert response.charset == "utf-8"
    assert loads(response.body) == {"path": "/orders", "n": 1}
    seen = recorder.seen[0]
    assert seen.body == body
    assert seen.headers["Host"] == url.removeprefix("http://")
    assert seen.headers["Content-Length"] == str(len(body))
    assert seen.headers["Idempotency-Key"] == "k-1"
    assert "User-Agent" not in seen.headers
    assert "Accept-Encoding" not in seen.headers


async def test_post_without_body_says_content_length_zero(
    pool: Http1Pool, service: Service
) -> None:
    recorder, url = service
    await pool.request("POST", f"{url}/ping")
    await pool.request("GET", f"{url}/ping")
    post, get = recorder.seen
    assert (post.headers["Content-Length"], post.body) == ("0", b"")
    assert "Content-Length" not in get.headers


async def test_sequential_requests_reuse_one_connection(pool: Http1Pool, service: Service) -> None:
    recorder, url = service
    for n in range(1, 11):
        response = await pool.request("GET", f"{url}/items/{n}")
        assert loads(response.body)["n"] == n
    assert len(recorder.seen) == 10
    assert len(recorder.peers) == 1


async def test_response_headers_are_case_insensitive(pool: Http1Pool, service: Service) -> None:
    _, url = service
    response = await pool.request("GET", f"{url}/")
    assert response.headers["content-type"] == response.headers["Content-Type"]


async def test_chunked_body_is_reassembled(pool: Http1Pool, service: Service) -> None:
    recorder, url = service
    response = await pool.request("GET", f"{url}/chunked")
    assert response.body == b"one two three"
    assert response.content_type == "text/plain"
    await pool.request("GET", f"{url}/after")
    assert len(recorder.peers) == 1


async def test_gzip_body_is_decompressed(pool: Http1Pool, service: Service) -> None:
    _, url = service
    response = await pool.request("GET", f"{url}/gzip")
    assert loads(response.body) == {"packed": True}


async def test_deflate_body_without_zlib_framing_is_decompressed(pool: Http1Pool) -> None:
    packer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    packed = packer.compress(b"raw deflate") + packer.flush()

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        head = f"HTTP/1.1 200 OK\r\nContent-Encoding: deflate\r\nContent-Length: {len(packed)}"
        writer.write(head.encode() + b"\r\n\r\n" + packed)
        await writer.drain()
        await read_head(reader)

    async with raw_server(answer) as server:
        response = await pool.request("GET", f"{server.url}/")
    assert response.body == b"raw deflate"


async def test_connection_close_answer_is_not_reused(pool: Http1Pool, service: Service) -> None:
    recorder, url = service
    first = await pool.request("GET", f"{url}/close")
    second = await pool.request("GET", f"{url}/close")
    assert first.headers["Connection"] == "close"
    assert second.status == 200
    assert len(recorder.peers) == 2


async def test_head_answers_without_body_on_a_connection_of_its_own(
    pool: Http1Pool, service: Service
) -> None:
    recorder, url = service
    head = await pool.request("HEAD", f"{url}/resource")
    assert (head.status, head.body) == (200, b"")
    assert int(head.headers["Content-Length"]) > 0
    get = await pool.request("GET", f"{url}/resource")
    assert get.body
    assert [seen.method for seen in recorder.seen] == ["HEAD", "GET"]
    assert len(recorder.peers) == 2


async def test_no_content_answer_keeps_the_connection(pool: Http1Pool, service: Service) -> None:
    recorder, url = service
    response = await pool.request("DELETE", f"{url}/empty")
    assert (response.status, response.body) == (204, b"")
    await pool.request("GET", f"{url}/after")
    assert len(recorder.peers) == 1


async def test_params_extend_the_query_string(pool: Http1Pool, service: Service) -> None:
    recorder, url = service
    await pool.request("GET", f"{url}/search?a=1", params={"q": "red shoes", "page": "2"})
    await pool.request("GET", f"{url}/search", params={"q": "x&y"})
    assert recorder.seen[0].query == {"a": "1", "q": "red shoes", "page": "2"}
    assert recorder.seen[1].query == {"q": "x&y"}


async def test_error_statuses_are_answers_not_exceptions(pool: Http1Pool, service: Service) -> None:
    _, url = service
    response = await pool.request("GET", f"{url}/missing")
    assert response.status == 404
    assert response.reason == "Not Found"
    assert loads(response.body) == {"title": "no such thing"}


async def test_body_delimited_by_connection_close(pool: Http1Pool) -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nhello ")
        await writer.drain()
        await asyncio.sleep(0.01)
        writer.write(b"world")

    async with raw_server(answer) as server:
        first = await pool.request("GET", f"{server.url}/")
        second = await pool.request("GET", f"{server.url}/")
    assert first.body == second.body == b"hello world"
    assert server.connections == 2


async def test_interim_continue_answer_is_skipped(pool: Http1Pool) -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        writer.write(b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        await read_head(reader)

    async with raw_server(answer) as server:
        response = await pool.request("POST", f"{server.url}/", body=b"{}")
    assert (response.status, response.body) == (201, b"ok")


async def test_idle_connection_closed_by_the_server_leaves_the_pool(pool: Http1Pool) -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        await asyncio.sleep(0.02)  # then hang up, as a server's idle timeout does

    async with raw_server(answer) as server:
        await pool.request("GET", f"{server.url}/")
        await eventually(
            lambda: all(c.closing() for c in pool._connections), what="the pool seeing the hang-up"
        )
        response = await pool.request("GET", f"{server.url}/")
    assert response.body == b"ok"
    assert server.connections == 2


async def test_reused_connection_dropped_unanswered_is_retried_once(pool: Http1Pool) -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        await read_head(reader)  # the next request arrives as the server gives up: no answer

    async with raw_server(answer) as server:
        await pool.request("GET", f"{server.url}/")
        response = await pool.request("POST", f"{server.url}/", body=b"{}")
    assert response.body == b"ok"
    assert server.connections == 2


async def test_new_connection_dropped_unanswered_raises(pool: Http1Pool) -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)

    async with raw_server(answer) as server:
        with pytest.raises(Http1Error, match="closed before a complete answer"):
            await pool.request("GET", f"{server.url}/")
    assert server.connections == 1


async def test_malformed_answer_raises(pool: Http1Pool) -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(b"HTTP/1.1 OK fine\r\n\r\n")
        await writer.drain()
        await reader.read()

    async with raw_server(answer) as server:
        with pytest.raises(Http1Error, match="malformed answer"):
            await pool.request("GET", f"{server.url}/")


async def test_connection_refused_raises_naming_the_origin(pool: Http1Pool) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(Http1Error, match=rf"http://127\.0\.0\.1:{port}: cannot connect"):
        await pool.request("GET", f"http://127.0.0.1:{port}/")


async def test_cancelled_request_closes_its_connection(service: Service) -> None:
    recorder, url = service
    pool = Http1Pool(limit=1)  # the next request can only proceed once that one is closed
    try:
        await pool.request("GET", f"{url}/warm")
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.05):
                await pool.request("GET", f"{url}/slow")
        async with asyncio.timeout(HANG):  # a leaked slot would hold it up for good
            response = await pool.request("GET", f"{url}/after")
    finally:
        await pool.close()
    assert response.status == 200
    warm, slow, after = recorder.seen
    assert warm.peer == slow.peer
    assert after.peer != slow.peer


async def test_concurrent_requests_stay_within_the_limit(service: Service) -> None:
    recorder, url = service
    pool = Http1Pool(limit=8)
    try:
        responses = await asyncio.gather(
            *(pool.request("GET", f"{url}/items/{n}") for n in range(200))
        )
    finally:
        await pool.close()
    assert all(response.status == 200 for response in responses)
    assert len(recorder.seen) == 200
    assert len(recorder.peers) <= 8
    assert recorder.most_in_flight <= 8


async def test_limit_is_shared_across_origins(service: Service) -> None:
    recorder, url = service
    other = url.replace("127.0.0.1", "localhost")
    pool = Http1Pool(limit=1)
    try:
        await pool.request("GET", f"{url}/a")
        await pool.request("GET", f"{other}/b")
        await pool.request("GET", f"{url}/c")
    finally:
        await pool.close()
    assert len(recorder.peers) == 3


async def test_connections_idle_too_long_are_not_reused(service: Service) -> None:
    recorder, url = service
    pool = Http1Pool(idle_seconds=30)
    try:
        await pool.request("GET", f"{url}/a")
        for connection in pool._connections:
            connection.idle_since -= 31  # as if parked 31 s ago
        await pool.request("GET", f"{url}/b")
    finally:
        await pool.close()
    assert len(recorder.peers) == 2


async def test_closed_pool_refuses_requests(service: Service) -> None:
    _, url = service
    pool = Http1Pool()
    await pool.request("GET", f"{url}/")
    await pool.close()
    await pool.close()
    with pytest.raises(Http1Error, match="closed"):
        await pool.request("GET", f"{url}/")


async def test_header_with_line_break_is_refused(pool: Http1Pool, service: Service) -> None:
    _, url = service
    with pytest.raises(ValueError, match="line break"):
        await pool.request("GET", f"{url}/", headers={"X-Evil": "a\r\nX-Injected: 1"})


async def test_https_verifies_the_server_with_the_given_context(
    tls_service: Service, certificate: tuple[Path, Path]
) -> None:
    recorder, url = tls_service
    trusting = Http1Pool(ssl_context=ssl.create_default_context(cafile=certificate[0]))
    try:
        for _ in range(3):
            response = await trusting.request("GET", f"{url}/secure")
            assert response.status == 200
    finally:
        await trusting.close()
    assert len(recorder.peers) == 1


async def test_https_refuses_an_untrusted_server(pool: Http1Pool, tls_service: Service) -> None:
    _, url = tls_service
    with pytest.raises(Http1Error, match="CERTIFICATE_VERIFY_FAILED"):
        await pool.request("GET", f"{url}/secure")


def test_the_pool_works_on_uvloop() -> None:
    # uvloop's transports are not asyncio.Transport subclasses; servers run under uvicorn
    # often use it.
    import uvloop

    async def main() -> list[int]:
        recorder = Recorder()
        pool = Http1Pool()
        try:
            async with serve(recorder.app()) as url:
                answers = [await pool.request("POST", f"{url}/a", body=b"{}") for _ in range(3)]
        finally:
            await pool.close()
        assert len(recorder.peers) == 1  # kept alive
        return [answer.status for answer in answers]

    loop = uvloop.new_event_loop()
    try:
        assert loop.run_until_complete(main()) == [200, 200, 200]
    finally:
        loop.close()
