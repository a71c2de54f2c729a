"""A writer appends events to the SQL log within its own batch of writes to the same
store, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

from hybridmesh.core.serialization import loads
from hybridmesh.events import CloudEvent, EventBus
from hybridmesh.events.backends.sql import SqlEventBackend
from hybridmesh.store import Statement, open_store

INSERT_SERVICE = (
    "INSERT INTO services (name, architecture, version, base_url, definition, updated_at) "
    "VALUES (?, 'microservice', 'v1', 'http://x', '{}', 'now')"
)


async def test_events_appended_in_a_batch_are_logged_with_it(sql: SqlEventBackend) -> None:
    bus = EventBus(sql, owns_backend=False)
    event = CloudEvent.create("service.added", "/tests", {"name": "orders"})
    append = bus.append_statement(sql.store, [event])
    assert append is not None
    await sql.store.batch([Statement(INSERT_SERVICE, ("orders",)), append])
    bus.appended([event])
    rows = await sql.store.fetch_all("SELECT event_id, body FROM event_log")
    assert [row["event_id"] for row in rows] == [event.id]
    assert loads(rows[0]["body"])["data"] == {"name": "orders"}


async def test_a_store_the_log_is_not_in_gets_no_statement(
    sql: SqlEventBackend, tmp_path: Path
) -> None:
    bus = EventBus(sql, owns_backend=False)
    async with await open_store(f"sqlite:///{tmp_path / 'elsewhere.db'}") as elsewhere:
        event = CloudEvent.create("service.added", "/tests", {"name": "orders"})
        assert bus.append_statement(elsewhere, [event]) is None
        assert bus.log_recorder(elsewhere) is None
    assert bus.log_recorder(sql.store) is sql.recorder
