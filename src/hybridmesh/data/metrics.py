"""Prometheus metrics of the data side, in the process's registry (``/metrics``).

- ``hybridmesh_replication_lag_changes{replication}``: changes in the source's log not yet
  applied to the target.
- ``hybridmesh_replication_lag_seconds{replication}``: age of the oldest of them.
- ``hybridmesh_replication_applied_changes{replication}``: rows written so far.
- ``hybridmesh_replication_conflicts{replication}``: conflicts met in reverse-sync windows.
- ``hybridmesh_replication_backfill_rows{replication,table}``: rows the backfill copied.
- ``hybridmesh_cdc_backlog_changes{consumer}``: changes a consumer of a change log (a
  replication or an event bridge) has not read yet.
- ``hybridmesh_bridge_published_events{bridge}``: events an event bridge published.
"""

from __future__ import annotations

import threading
from typing import Any, ClassVar

from prometheus_client import CollectorRegistry, Gauge

from hybridmesh.observability.metrics import MeshMetrics


class DataMetrics:
    """The gauges above, set from the status a replication or bridge reports."""

    _default: ClassVar[DataMetrics | None] = None
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        registry = registry if registry is not None else CollectorRegistry()
        self.registry = registry
        self.lag_changes = Gauge(
            "hybridmesh_replication_lag_changes",
            "Changes in the source's log not yet applied to the target.",
            ["replication"],
            registry=registry,
        )
        self.lag_seconds = Gauge(
            "hybridmesh_replication_lag_seconds",
            "Age of the oldest change not yet applied to the target.",
            ["replication"],
            registry=registry,
        )
        self.applied = Gauge(
            "hybridmesh_replication_applied_changes",
            "Rows a replication has written into its target.",
            ["replication"],
            registry=registry,
        )
        self.conflicts = Gauge(
            "hybridmesh_replication_conflicts",
            "Conflicts a replication met while both sides took writes.",
            ["replication"],
            registry=registry,
        )
        self.backfill_rows = Gauge(
            "hybridmesh_replication_backfill_rows",
            "Rows the initial backfill copied.",
            ["replication", "table"],
            registry=registry,
        )
        self.backlog = Gauge(
            "hybridmesh_cdc_backlog_changes",
            "Changes a consumer of a change log has not read yet.",
            ["consumer"],
            registry=registry,
        )
        self.published = Gauge(
            "hybridmesh_bridge_published_events",
            "Events an event bridge has published.",
            ["bridge"],
            registry=registry,
        )

    @classmethod
    def default(cls) -> DataMetrics:
        """The process-wide instance, in the registry ``/metrics`` exposes."""
        if cls._default is None:
            with cls._lock:
                if cls._default is None:
                    cls._default = cls(MeshMetrics.default().registry)
        return cls._default

    def observe(self, status: dict[str, Any]) -> None:
        """Set the gauges from a status (a replication's, with its reverse one, or a
        bridge's)."""
        name = str(status.get("name", ""))
        if status.get("kind") == "bridge":
            self.published.labels(name).set(status.get("published", 0))
            self.backlog.labels(name).set(status.get("lag_changes", 0))
            return
        self.lag_changes.labels(name).set(status.get("lag_changes", 0))
        self.lag_seconds.labels(name).set(status.get("lag_seconds", 0.0))
        self.applied.labels(name).set(status.get("applied", 0))
        self.conflicts.labels(name).set(status.get("conflicts", 0))
        self.backlog.labels(name).set(status.get("lag_changes", 0))
        for table in status.get("tables", []):
            self.backfill_rows.labels(name, table["target"]).set(table["rows_copied"])
        reverse = status.get("reverse")
        if isinstance(reverse, dict):
            self.observe({**reverse, "kind": "replication"})


__all__ = ["DataMetrics"]
