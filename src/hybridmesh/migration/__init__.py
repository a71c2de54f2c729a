"""Boundary migration: plans, gates, experiments and abstractions.

- :mod:`~hybridmesh.migration.experiment`: :class:`Experiment`, parallel runs of a control
  and candidates in process, and :class:`ExperimentStats`, a publisher counting them.
- :mod:`~hybridmesh.migration.abstraction`: :class:`Abstraction`, branch by abstraction
  (an old and a new implementation behind one callable, with fallback and metrics).
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
