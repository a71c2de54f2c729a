"""The hybrid client: strategy by architecture, resilience per target, transports by pattern."""

from hybridmesh.client._client import UNREGISTERED_SOURCE_ARCHITECTURE, HybridClient
from hybridmesh.client.cache import CachedAnswer, ResponseCache
from hybridmesh.client.models import CommunicationRequest, CommunicationResponse
from hybridmesh.client.strategy import (
    PatternNotAllowedError,
    PatternStep,
    RequestType,
    Strategy,
    fit_to_capabilities,
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
    "PatternNotAllowedError",
    "PatternStep",
    "RequestType",
    "ResponseCache",
    "Strategy",
    "fit_to_capabilities",
    "forced_strategy",
    "select_strategy",
]
