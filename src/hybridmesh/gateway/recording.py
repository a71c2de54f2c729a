"""Recording the gateway's traffic as contracts.

A route's answer reaches the client through a *ticket* (the mirror's mechanism): once the
client has the whole answer, the ticket is told its status, headers and body. A
:class:`RecordingTicket` hands that exchange to the contract recorder, and passes it on to
the mirror's ticket when the route also mirrors. The gateway makes one only when recording
is on, so its path costs nothing otherwise.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hybridmesh.gateway.http import Headers, ProxyRequest

if TYPE_CHECKING:
    from hybridmesh.contracts.recorder import ContractRecorder

#: Who a request comes from when neither authentication nor the caller names it.
UNNAMED_CONSUMER = "gateway-client"


class RecordingTicket:
    """Records one proxied exchange once the client has its answer.

    The consumer is the caller the authentication policy established, else the
    ``X-Source-Service`` header, else :data:`UNNAMED_CONSUMER`; the provider is the chosen
    backend's service (or its name, for a backend given by URL). The request is recorded as
    the backend got it: its path after rewrites, relative to the backend's URL.
    """

    __slots__ = ("_inner", "_recorder", "_request", "consumer", "provider")

    def __init__(
        self, recorder: ContractRecorder, request: ProxyRequest, provider: str, inner: Any
    ) -> None:
        self._recorder = recorder
        self._request = request
        self._inner = inner
        self.consumer = (
            request.consumer or request.headers.get("x-source-service") or UNNAMED_CONSUMER
        )
        self.provider = provider

    def primary(self, status: int, headers: Headers, body: bytes) -> None:
        if self._inner is not None:
            self._inner.primary(status, headers, body)
        request = self._request
        self._recorder.record_http(
            consumer=self.consumer,
            provider=self.provider,
            method=request.method,
            path=request.path,
            query=request.query,
            request_headers=dict(request.headers.pairs),
            request_body=request.body,
            status=status,
            response_headers=dict(headers.pairs),
            response_body=body if request.method != "HEAD" else None,
        )

    def primary_failed(self) -> None:
        if self._inner is not None:
            self._inner.primary_failed()


__all__ = ["UNNAMED_CONSUMER", "RecordingTicket"]
