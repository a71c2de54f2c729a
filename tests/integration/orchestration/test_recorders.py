"""The engine's recorders: the shared suite on SQLite and PostgreSQL, and the round trips
each one makes for a batch of changes (the engine's hot path)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tests.conformance.recorder import RecorderConformance, save, start

from hybridmesh.core.errors import ConfigurationError
from hybridmesh.events import CloudEvent
from hybridmesh.events.backends.sql import SqlEventBackend
from hybridmesh.orchestration.recorders import ExecutionRecorder, SqliteRecorder, recorder_for
from hybridmesh.store import Store, open_store


class Counted:
    """Counts the calls a store receives, by method."""

    def __init__(self, store: Store) -> None:
        self.calls: list[str] = []
        for method in ("batch", "fetch_all", "execute", "executemany", "transaction"):
            original = getattr(store, method)

            def counted(*args: Any, _name: str = method, _original: Any = original) -> Any:
                self.calls.append(_name)
                return _original(*args)

            setattr(store, method, counted)


def ending_batch(log: SqlEventBackend) -> list[Any]:
    """Two executions' saves with history records and events, and a start."""
    first = save("a", status="completed", release=True, records=("execution.completed",))
    first.events = log.log_rows([CloudEvent.create("saga.completed", "/tests", {"saga_id": "a"})])
    second = save("b", records=("step.started", "step.completed"))
    return [first, second, start("c")]


class TestSqliteRecorder(RecorderConformance):
    @pytest.fixture
    def database_url(self, tmp_path: Path) -> str:
        return f"sqlite:///{tmp_path / 'mesh.db'}"

    async def test_a_batch_of_changes_is_one_store_batch(
        self, recorder: ExecutionRecorder, store: Store, log: SqlEventBackend
    ) -> None:
        await recorder.write([start("a"), start("b")])
        counted = Counted(store)
        assert await recorder.write(ending_batch(log)) == [False, False, False]
        assert counted.calls == ["batch"]
        assert await store.fetch_value("SELECT COUNT(*) FROM event_log") == 1


@pytest.mark.postgres
class TestPostgresRecorder(RecorderConformance):
    @pytest.fixture
    def database_url(self, postgres_url: str) -> str:
        return postgres_url

    async def test_a_batch_of_changes_is_one_statement(
        self, recorder: ExecutionRecorder, store: Store, log: SqlEventBackend
    ) -> None:
        await recorder.write([start("a"), start("b")])
        counted = Counted(store)
        assert await recorder.write(ending_batch(log)) == [False, False, False]
        assert counted.calls == ["fetch_all"]
        assert await store.fetch_value("SELECT COUNT(*) FROM event_log") == 1


async def test_a_store_of_another_kind_has_no_recorder(tmp_path: Path) -> None:
    async with await open_store(f"sqlite:///{tmp_path / 'mesh.db'}") as store:
        assert isinstance(recorder_for(store), SqliteRecorder)
        store.dialect = "oracle"
        with pytest.raises(ConfigurationError, match="oracle"):
            recorder_for(store)
