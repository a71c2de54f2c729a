"""The GraphQL transport over the aiohttp session, against a real server on loopback."""

from __future__ import annotations

from tests.integration.transports.helpers import Recorder

from hybridmesh.core.serialization import loads
from hybridmesh.transports import GraphQLTransport, HttpSession, OutboundRequest

Service = tuple[Recorder, str]


async def test_a_redirect_is_returned_not_followed(service: Service) -> None:
    recorder, url = service
    session = HttpSession()
    try:
        transport = GraphQLTransport(session)
        request = OutboundRequest("svc", url, method="POST", path="/moved", query="{ me { id } }")
        response = await transport.send(request)
    finally:
        await session.close()
    assert response.status == 302
    assert response.data is None
    assert [(seen.method, seen.path) for seen in recorder.seen] == [("POST", "/moved")]
    assert loads(recorder.seen[0].body) == {"query": "{ me { id } }"}
    assert recorder.seen[0].headers["Content-Type"] == "application/json"
