"""The gateway: one front door for the legacy monolith and the new services.

An HTTP/1.1 reverse proxy (:mod:`~hybridmesh.gateway.server`) whose routes
(:mod:`~hybridmesh.gateway.config`) live in the state store and change live
(:mod:`~hybridmesh.gateway.state`): matching by host, path, method and headers, weighted
and sticky splits between backends (:mod:`~hybridmesh.gateway.routing`), policies per
route (:mod:`~hybridmesh.gateway.policies`) and metrics per route and backend.
"""
