"""The store contract every backend keeps.

A backend's test module subclasses :class:`StoreConformance` as ``Test…`` and provides a
``database_url`` fixture: the URL of a fresh, empty database of its kind. The shared
``store`` fixture opens and upgrades a store on it.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from hybridmesh.core.errors import StoreError
from hybridmesh.store import MIGRATIONS, Statement, Store, open_store

NOW = "2026-01-01T00:00:00+00:00"

INSERT = (
    "INSERT INTO services (name, architecture, version, base_url, owner, lifecycle, "
    "definition, source, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def service_row(name: str, owner: str | None = "team-a") -> tuple[Any, ...]:
    return (
        name,
        "microservice",
        "1.0.0",
        f"http://{name}.internal",
        owner,
        "production",
        json.dumps({"name": name}),
        "services.yaml",
        NOW,
    )


async def insert(store: Any, name: str, owner: str | None = "team-a") -> int:
    return int(await store.execute(INSERT, *service_row(name, owner)))


async def names(store: Store) -> list[str]:
    rows = await store.fetch_all("SELECT name FROM services ORDER BY name")
    return [row["name"] for row in rows]


class StoreConformance:
    """The behaviour every store backend must show."""

    # -- schema ----------------------------------------------------------------

    async def test_upgrade_applies_every_migration_once_then_nothing(
        self, database_url: str
    ) -> None:
        async with await open_store(database_url) as store:
            assert await store.schema_version() == 0
            assert await store.pending_migrations() == list(MIGRATIONS)

            applied = await store.upgrade()

            assert applied == list(MIGRATIONS)
            assert applied[0].version == 1
            assert applied[0].name == "services"
            assert await store.schema_version() == MIGRATIONS[-1].version
            assert await store.pending_migrations() == []
            assert await store.upgrade() == []

    async def test_upgrade_records_each_migration(self, store: Store) -> None:
        rows = await store.fetch_all("SELECT version, name, applied_at FROM schema_migrations")
        assert [(row["version"], row["name"]) for row in rows] == [
            (m.version, m.name) for m in MIGRATIONS
        ]
        assert all(row["applied_at"] for row in rows)

    async def test_concurrent_upgrades_apply_each_migration_exactly_once(
        self, database_url: str
    ) -> None:
        first, second = await open_store(database_url), await open_store(database_url)
        try:
            results = await asyncio.gather(first.upgrade(), second.upgrade())
        finally:
            await first.close()
            await second.close()
        assert sorted(m.version for applied in results for m in applied) == [
            m.version for m in MIGRATIONS
        ]

    async def test_upgrade_is_a_noop_on_an_upgraded_database_after_reopen(
        self, database_url: str
    ) -> None:
        async with await open_store(database_url) as store:
            await store.upgrade()
        async with await open_store(database_url) as store:
            assert await store.upgrade() == []
            assert await store.schema_version() == MIGRATIONS[-1].version

    # -- queries ---------------------------------------------------------------

    async def test_insert_and_fetch_round_trip(self, store: Store) -> None:
        assert await insert(store, "orders") == 1
        await insert(store, "billing", owner=None)

        rows = await store.fetch_all("SELECT name, owner FROM services ORDER BY name")
        assert rows == [{"name": "billing", "owner": None}, {"name": "orders", "owner": "team-a"}]

        row = await store.fetch_one("SELECT * FROM services WHERE name = ?", "orders")
        assert row is not None
        assert row["base_url"] == "http://orders.internal"
        assert json.loads(row["definition"]) == {"name": "orders"}

        assert await store.fetch_one("SELECT * FROM services WHERE name = ?", "nope") is None
        assert await store.fetch_value("SELECT COUNT(*) FROM services") == 2
        assert await store.fetch_value("SELECT name FROM services WHERE name = ?", "nope") is None

    async def test_question_marks_in_literals_and_comments_are_not_placeholders(
        self,
        store: Store,
    ) -> None:
        await insert(store, "what?")
        sql = """
            SELECT name, 'why?' AS literal, 'it''s ?' AS quoted -- isn't a placeholder?
            FROM services /* nor this? */
            WHERE name = ? AND lifecycle <> 'retired?'
        """
        row = await store.fetch_one(sql, "what?")
        assert row == {"name": "what?", "literal": "why?", "quoted": "it's ?"}

    async def test_execute_returns_the_rows_changed(self, store: Store) -> None:
        await store.executemany(INSERT, [service_row("a"), service_row("b"), service_row("c", "x")])
        changed = await store.execute(
            "UPDATE services SET lifecycle = ? WHERE owner = ?", "beta", "team-a"
        )
        assert changed == 2
        assert await store.execute("DELETE FROM services WHERE name = ?", "nope") == 0

    async def test_executemany_inserts_every_row(self, store: Store) -> None:
        await store.executemany(INSERT, (service_row(f"svc-{i}") for i in range(20)))
        assert await store.fetch_value("SELECT COUNT(*) FROM services") == 20

    async def test_executemany_is_all_or_nothing(self, store: Store) -> None:
        with pytest.raises(StoreError):
            await store.executemany(INSERT, [service_row("a"), service_row("b"), service_row("a")])
        assert await names(store) == []

    # -- transactions ----------------------------------------------------------

    async def test_transaction_commits_on_success(self, store: Store) -> None:
        async with store.transaction() as tx:
            await tx.execute(INSERT, *service_row("orders"))
            await tx.executemany(INSERT, [service_row("billing"), service_row("stock")])
            assert await tx.fetch_value("SELECT COUNT(*) FROM services") == 3
            row = await tx.fetch_one("SELECT owner FROM services WHERE name = ?", "orders")
            assert row == {"owner": "team-a"}
        assert await names(store) == ["billing", "orders", "stock"]

    async def test_transaction_rolls_back_on_exception(self, store: Store) -> None:
        await insert(store, "kept")
        with pytest.raises(RuntimeError, match="boom"):
            async with store.transaction() as tx:
                await tx.execute(INSERT, *service_row("orders"))
                await tx.execute("DELETE FROM services WHERE name = ?", "kept")
                raise RuntimeError("boom")
        assert await names(store) == ["kept"]

    async def test_transaction_rolls_back_when_a_statement_fails(self, store: Store) -> None:
        with pytest.raises(StoreError):
            async with store.transaction() as tx:
                await tx.execute(INSERT, *service_row("orders"))
                await tx.execute(INSERT, *service_row("orders"))
        assert await names(store) == []

    async def test_cancelled_transaction_rolls_back_and_store_stays_usable(
        self, store: Store
    ) -> None:
        inside = asyncio.Event()

        async def stuck() -> None:
            async with store.transaction() as tx:
                await tx.execute(INSERT, *service_row("orders"))
                inside.set()
                await asyncio.Event().wait()

        task = asyncio.create_task(stuck())
        await inside.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

        assert await names(store) == []
        await insert(store, "billing")
        assert await names(store) == ["billing"]

    async def test_a_transaction_cancelled_while_it_begins_leaves_the_store_usable(
        self, store: Store
    ) -> None:
        async def begins() -> None:
            async with store.transaction() as tx:
                await tx.execute(INSERT, *service_row("orders"))

        task = asyncio.create_task(begins())
        await asyncio.sleep(0)  # the task has asked for its transaction to begin
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

        async with store.transaction() as tx:
            await tx.execute(INSERT, *service_row("billing"))
        assert await names(store) == ["billing"]

    async def test_transaction_handle_is_unusable_after_the_block(self, store: Store) -> None:
        async with store.transaction() as tx:
            pass
        with pytest.raises(StoreError, match="transaction has ended"):
            await tx.execute("SELECT 1")

    async def test_concurrent_transactions_are_isolated(self, store: Store) -> None:
        async def move(i: int) -> None:
            async with store.transaction() as tx:
                count = await tx.fetch_value("SELECT COUNT(*) FROM services")
                await asyncio.sleep(0)
                await tx.execute(INSERT, *service_row(f"svc-{i:02d}", owner=str(count)))

        await asyncio.gather(*(move(i) for i in range(10)))
        assert await store.fetch_value("SELECT COUNT(*) FROM services") == 10

    # -- errors ----------------------------------------------------------------

    async def test_bad_sql_raises_store_error_naming_the_statement(self, store: Store) -> None:
        with pytest.raises(StoreError, match="SELEC name FROM services") as raised:
            await store.fetch_all("SELEC name FROM services\nWHERE name = ?", "x")
        assert "WHERE" not in str(raised.value)
        assert raised.value.__cause__ is not None

    async def test_constraint_violation_raises_store_error(self, store: Store) -> None:
        await insert(store, "orders")
        with pytest.raises(StoreError, match="INSERT INTO services"):
            await insert(store, "orders")

    async def test_a_closed_store_refuses_queries(self, database_url: str) -> None:
        store = await open_store(database_url)
        await store.close()
        await store.close()  # idempotent
        with pytest.raises(StoreError, match="closed"):
            await store.fetch_all("SELECT 1")

    # -- concurrency and durability --------------------------------------------

    async def test_fifty_concurrent_inserts_all_land(self, store: Store) -> None:
        await asyncio.gather(*(insert(store, f"svc-{i:02d}") for i in range(50)))
        assert await names(store) == [f"svc-{i:02d}" for i in range(50)]

    async def test_data_survives_close_and_reopen(self, database_url: str) -> None:
        async with await open_store(database_url) as store:
            await store.upgrade()
            await insert(store, "orders")
        async with await open_store(database_url) as store:
            assert await names(store) == ["orders"]

    async def test_store_reports_its_dialect_and_url(self, store: Store, database_url: str) -> None:
        assert store.url == database_url
        assert store.dialect == database_url.split(":")[0]

    async def test_batch_runs_statements_in_order_and_returns_each_result(
        self, store: Store
    ) -> None:
        results = await store.batch(
            [
                Statement(
                    "INSERT INTO services (name, architecture, version, base_url, definition, "
                    "updated_at) VALUES (?, 'microservice', 'v1', 'http://x', '{}', 'now')",
                    ("a",),
                ),
                Statement("SELECT name FROM services WHERE name = ?", ("a",), fetch=True),
                Statement("SELECT name FROM services WHERE name = ?", ("zz",), fetch=True),
                Statement("UPDATE services SET owner = 'me' WHERE name = ?", ("a",), after=2),
                Statement(
                    "UPDATE services SET owner = ? WHERE name = ?", rows=[("x", "a")], after=1
                ),
            ]
        )
        assert results == [1, [{"name": "a"}], [], None, 1]
        assert await store.fetch_value("SELECT owner FROM services WHERE name = 'a'") == "x"

    async def test_a_failing_batch_changes_nothing(self, store: Store) -> None:
        insert = Statement(
            "INSERT INTO services (name, architecture, version, base_url, definition, updated_at) "
            "VALUES (?, 'microservice', 'v1', 'http://x', '{}', 'now')",
            ("b",),
        )
        with pytest.raises(StoreError, match="services"):
            await store.batch([insert, insert])  # the second violates the primary key
        assert await store.fetch_value("SELECT COUNT(*) FROM services") == 0

    async def test_batch_rows_can_each_wait_for_their_own_earlier_statement(
        self, store: Store
    ) -> None:
        insert = (
            "INSERT INTO services (name, architecture, version, base_url, definition, updated_at) "
            "VALUES (?, 'microservice', 'v1', 'http://x', '{}', 'now')"
        )
        results = await store.batch(
            [
                Statement(insert, ("a",)),
                Statement("UPDATE services SET owner = 'x' WHERE name = 'nobody'"),
                Statement(insert, rows=[("b",), ("c",)], rows_after=[0, 1]),
            ]
        )
        assert results == [1, 0, 1]  # c waited for the update, which changed nothing
        names = await store.fetch_all("SELECT name FROM services ORDER BY name")
        assert [row["name"] for row in names] == ["a", "b"]
