"""A transport for tests that is a real transport: it answers from a handler function."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from hybridmesh.transports.base import OutboundRequest, TransportResponse

Handler = Callable[[OutboundRequest], Awaitable[TransportResponse]]


class MockTransport:
    """Calls ``handler`` for every request and records the requests in ``sent``."""

    def __init__(self, pattern: str, handler: Handler) -> None:
        self.pattern = pattern
        self._handler = handler
        self.sent: list[OutboundRequest] = []

    async def send(self, request: OutboundRequest) -> TransportResponse:
        self.sent.append(request)
        return await self._handler(request)

    async def close(self) -> None:
        return None


__all__ = ["Handler", "MockTransport"]
