"""Boundary migration: plans, gates, experiments and abstractions.

- :mod:`~hybridmesh.migration.plans`: a :class:`MigrationPlan` moves a service's traffic to
  the services that replace it in gated steps, at the gateway (strangler fig) or through a
  feature flag (branch by abstraction);
- :mod:`~hybridmesh.migration.runner`: the :class:`PlanRunner` drives plans durably, and
  :mod:`~hybridmesh.migration.gates` judges each step on the per-second windows;
- :mod:`~hybridmesh.migration.experiment`: :class:`Experiment`, parallel runs of a control
  and candidates in process, and :class:`ExperimentStats`, a publisher counting them;
- :mod:`~hybridmesh.migration.abstraction`: :class:`Abstraction`, branch by abstraction
  (an old and a new implementation behind one callable, with fallback and metrics).
- :mod:`~hybridmesh.migration.boundary`: boundary experiments, a candidate backend
  mirrored a gateway route's live traffic for a while and judged on its error rate, p95
  and mismatch rate (:func:`~hybridmesh.migration.boundary.run_boundary_experiment`).
"""

from hybridmesh.migration.abstraction import Abstraction, ImplementationStats
from hybridmesh.migration.experiment import (
    Experiment,
    ExperimentStats,
    Observation,
    Outcome,
    Result,
)

__all__ = [
    "Abstraction",
    "Experiment",
    "ExperimentStats",
    "ImplementationStats",
    "Observation",
    "Outcome",
    "Result",
]
