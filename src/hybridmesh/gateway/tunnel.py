"""Upgraded connections (WebSocket): once the backend answers 101, bytes pass both ways
unchanged until either side closes.

The gateway treats the upgrade request like any other first: its route, its policies (key
auth, IP restriction, JWT, rate limits) and the choice of backend. Then it opens a
connection of its own to that backend, sends the request with its ``Upgrade`` and
``Connection: upgrade`` headers, and relays the answer's head. On 101 the two connections
are joined; any other answer is relayed as it comes and the connection ends with it.
Reading pauses on either side while the other cannot take more.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

#: Most bytes of the backend's answer head read before it must be complete.
MAX_ANSWER_HEAD = 64 * 1024


class ClientSide(Protocol):
    """What a tunnel needs of the client's connection."""

    transport: asyncio.Transport | None

    def write(self, data: bytes) -> None: ...

    def close(self) -> None: ...


class Tunnel(asyncio.Protocol):
    """The backend's side of an upgraded connection, joined to the client's."""

    def __init__(self, client: ClientSide) -> None:
        self.client = client
        self.transport: asyncio.Transport | None = None
        #: The status of the backend's answer, once its head has come (None: closed first).
        self.answered: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
        self._head = b""
        self.joined = False

    # -- the client's side -----------------------------------------------------------------

    def to_backend(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def client_lost(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def pause_client(self) -> None:
        """The client cannot take more: stop reading from the backend."""
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_client(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    # -- asyncio.Protocol (the backend's side) ---------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.answered.done():
            self.client.write(data)
            return
        self._head += data
        end = self._head.find(b"\r\n\r\n")
        if end < 0:
            if len(self._head) > MAX_ANSWER_HEAD:
                self._settle(None)
                self.client.close()
                if self.transport is not None:
                    self.transport.abort()
            return
        status_line = self._head.split(b"\r\n", 1)[0].split()
        try:
            status = int(status_line[1])
        except (IndexError, ValueError):
            status = 502
        self.joined = status == 101
        self.client.write(self._head)  # the head as the backend sent it, then what follows
        self._head = b""
        self._settle(status)

    def connection_lost(self, exc: Exception | None) -> None:
        self._settle(None)
        self.client.close()

    def pause_writing(self) -> None:
        if self.client.transport is not None:
            self.client.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.client.transport is not None and not self.client.transport.is_closing():
            self.client.transport.resume_reading()

    def _settle(self, status: int | None) -> None:
        if not self.answered.done():
            self.answered.set_result(status)


__all__ = ["MAX_ANSWER_HEAD", "ClientSide", "Tunnel"]
