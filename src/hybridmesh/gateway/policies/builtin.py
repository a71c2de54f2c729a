"""The policy kinds that come with hybridmesh (each module registers itself)."""

from hybridmesh.gateway.policies import faults, ip_restriction, jwt_auth, key_auth  # noqa: F401
