"""What a caller asks of the hybrid client, and what it gets back."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hybridmesh.client.strategy import RequestType


@dataclass(slots=True)
class CommunicationRequest:
    """One cross-service call, independent of the wire protocol that will carry it.

    ``type`` (query, command or batch) and the two services' architectures choose the
    strategy; ``pattern`` forces one. ``timeout`` and ``retries`` override the target's policy
    for this call only (a traditional monolith's timeout stays capped at 60 s).
    """

    type: RequestType | str = RequestType.QUERY
    method: str = "GET"
    endpoint: str = "/"
    payload: Any = None
    params: Mapping[str, str] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    #: A GraphQL document; with it, a query between microservices goes over GraphQL.
    query: str | None = None
    variables: Mapping[str, Any] | None = None
    #: The event type when the call goes out as an event (commands between microservices).
    event_type: str | None = None
    #: The operation name when the call goes out as a batch record.
    operation: str | None = None
    request_id: str | None = None
    #: Sent as ``Idempotency-Key`` on commands; derived from the request id when not given.
    idempotency_key: str | None = None
    timeout: float | None = None
    retries: int | None = None
    pattern: str | None = None


@dataclass(slots=True)
class CommunicationResponse:
    """The answer, and how it was obtained.

    ``pattern`` is the integration pattern that answered (``"cache"`` for a cached answer);
    ``fallback_used`` is true when it was not the strategy's first choice; ``failures`` lists,
    in order, what went wrong before the answer came.
    """

    data: Any
    status: int
    pattern: str
    strategy: str
    source: str
    target: str
    request_id: str
    attempts: int
    duration: float
    fallback_used: bool = False
    from_cache: bool = False
    cache_age: float | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)


__all__ = ["CommunicationRequest", "CommunicationResponse"]
