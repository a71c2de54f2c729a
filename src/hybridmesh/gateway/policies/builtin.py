"""The policy kinds that come with hybridmesh (each module registers itself)."""

from hybridmesh.gateway.policies import (  # noqa: F401
    faults,
    ip_restriction,
    jwt_auth,
    key_auth,
    rate_limit,
    transform,
    xml_json,
)
