"""The hybrid client: strategy by architecture, resilience per target, transports by pattern."""

from hybridmesh.client._client import UNREGISTERED_SOURCE_ARCHITECTURE, HybridClient
from hybridmesh.client.cache import CachedAnswer, ResponseCache
from hybridmesh.client.models import CommunicationRequest, CommunicationResponse
from hybridmesh.client.strategy import (
    PatternStep,
    RequestType,
    Strategy,
    forced_strategy,
    select_strategy,
)
from hybridmesh.resilience import LEGACY_MAX_TIMEOUT

__all__ = [
    "LEGACY_MAX_TIMEOUT",
    "UNREGISTERED_SOURCE_ARCHITECTURE",
    "CachedAnswer",
    "CommunicationRequest",
    "CommunicationResponse",
    "HybridClient",
    "PatternStep",
    "RequestType",
    "ResponseCache",
    "Strategy",
    "forced_strategy",
    "select_strategy",
]
