"""The engine's recorders, one per database: :class:`ExecutionRecorder` writes an
execution's changes (typed rows: :class:`Start`, :class:`Save`, :class:`HistoryRow`,
events as the event log's rows) and its leases."""

from __future__ import annotations

from hybridmesh.core.errors import ConfigurationError
from hybridmesh.events.backends._sql_log import LogRecorder
from hybridmesh.orchestration.recorders.base import (
    Change,
    ExecutionRecorder,
    HistoryRow,
    Save,
    Start,
    history_rows,
)
from hybridmesh.orchestration.recorders.postgres import PostgresRecorder
from hybridmesh.orchestration.recorders.sqlite import SqliteRecorder
from hybridmesh.store import Store

#: The recorder for each dialect a store may have.
RECORDERS: dict[str, type[ExecutionRecorder]] = {
    "sqlite": SqliteRecorder,
    "postgresql": PostgresRecorder,
}


def recorder_for(store: Store, log: LogRecorder | None = None) -> ExecutionRecorder:
    """The engine's recorder for ``store``'s database; ``log``: the recorder of the bus's
    event log when it is kept in ``store``."""
    try:
        kind = RECORDERS[store.dialect]
    except KeyError:
        raise ConfigurationError(f"the engine does not run on {store.dialect}") from None
    return kind(store, log)


__all__ = [
    "RECORDERS",
    "Change",
    "ExecutionRecorder",
    "HistoryRow",
    "PostgresRecorder",
    "Save",
    "SqliteRecorder",
    "Start",
    "history_rows",
    "recorder_for",
]
