"""Policies: what a route does to a request besides sending it on, like Kong's plugins.

The base class and the registry are in :mod:`hybridmesh.gateway.policies.base`; each kind
is a module here that registers itself, and :mod:`hybridmesh.gateway.policies.builtin`
imports them all (:func:`hybridmesh.gateway.config.policy_kinds` does, on first use).
"""
