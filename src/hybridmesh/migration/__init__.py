"""Boundary migration: plans, gates, experiments and abstractions.

A :class:`~hybridmesh.migration.plans.MigrationPlan` moves a service's traffic to the
services that replace it in gated steps at the gateway (strangler fig) or through a feature
flag (branch by abstraction); a :class:`~hybridmesh.migration.runner.PlanRunner` drives it
durably, and :mod:`hybridmesh.migration.gates` judges each step on the gateway's windows.
"""

from __future__ import annotations
