"""The REST transport over the HTTP/1.1 pool, against a real service on loopback."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
from tests.integration.transports.helpers import Recorder

from hybridmesh.core.errors import TransportError
from hybridmesh.transports import HttpSession, OutboundRequest, RestTransport

Service = tuple[Recorder, str]


@pytest.fixture
async def rest() -> AsyncIterator[RestTransport]:
    session = HttpSession()
    try:
        yield RestTransport(session)
    finally:
        await session.close()


def outbound(base_url: str, method: str, path: str, **fields: Any) -> OutboundRequest:
    return OutboundRequest(target="users", base_url=base_url, method=method, path=path, **fields)


async def test_payload_is_sent_as_json(rest: RestTransport, service: Service) -> None:
    recorder, url = service
    response = await rest.send(
        outbound(url, "post", "/users", payload={"name": "Ada"}, headers={"X-Request-ID": "r-1"})
    )
    assert response.status == 200
    assert response.data == {"path": "/users", "n": 1}
    assert response.headers["content-type"].startswith("application/json")
    seen = recorder.seen[0]
    assert (seen.method, seen.body) == ("POST", b'{"name":"Ada"}')
    assert seen.headers["Content-Type"] == "application/json"
    assert seen.headers["X-Request-ID"] == "r-1"


async def test_callers_content_type_is_kept(rest: RestTransport, service: Service) -> None:
    recorder, url = service
    await rest.send(
        outbound(
            url,
            "PATCH",
            "/users/1",
            payload={"name": "Ada"},
            headers={"content-type": "application/merge-patch+json"},
        )
    )
    assert recorder.seen[0].headers["Content-Type"] == "application/merge-patch+json"


async def test_query_without_payload_has_no_body(rest: RestTransport, service: Service) -> None:
    recorder, url = service
    response = await rest.send(outbound(url, "GET", "/users", params={"role": "admin"}))
    assert response.status == 200
    seen = recorder.seen[0]
    assert seen.query == {"role": "admin"}
    assert seen.body == b""
    assert "Content-Type" not in seen.headers


async def test_error_status_raises_with_body_and_retry_after(
    rest: RestTransport, service: Service
) -> None:
    _, url = service
    with pytest.raises(TransportError) as caught:
        await rest.send(outbound(url, "GET", "/busy"))
    error = caught.value
    assert (error.status, error.retry_after) == (429, 3.0)
    assert error.message == "Too Many Requests"
    assert "slow down" in error.body
    assert error.headers["Retry-After"] == "3"


async def test_redirect_is_returned_not_followed(rest: RestTransport, service: Service) -> None:
    recorder, url = service
    response = await rest.send(outbound(url, "GET", "/moved"))
    assert response.status == 302
    assert response.headers["Location"] == "/elsewhere"
    assert [seen.path for seen in recorder.seen] == ["/moved"]


async def test_refused_connection_raises_without_status(rest: RestTransport) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(TransportError) as caught:
        await rest.send(outbound(f"http://127.0.0.1:{port}", "GET", "/"))
    assert caught.value.status is None
    assert "Http1Error" in caught.value.message


async def test_transport_without_session_closes_its_own(service: Service) -> None:
    _, url = service
    transport = RestTransport()
    assert (await transport.send(outbound(url, "GET", "/"))).status == 200
    await transport.close()
    await transport.close()
