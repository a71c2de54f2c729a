"""Reconciliation on real databases: every difference found exactly, whatever the pair
of databases, the key and the mapping; repairs from either side leave nothing to find,
and are recorded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tests.integration.data.reconcile_rig import create, opened, rows_of

from hybridmesh.data import reconcile as reconcile_module
from hybridmesh.data.config import ReplicationSpec
from hybridmesh.data.mapping import TableMapping
from hybridmesh.data.reconcile import Reconciler, compare_table
from hybridmesh.data.reconcile_records import ReconcileHistory, ReconcileMetrics
from hybridmesh.store import Store, open_store

CUSTOMERS = "id BIGINT PRIMARY KEY, name TEXT, email TEXT, fax TEXT, city TEXT, visits INTEGER"
USERS = "id BIGINT PRIMARY KEY, full_name TEXT, email TEXT, city TEXT, visits INTEGER"
ROWS = 3_000


def _customer(i: int) -> tuple[Any, ...]:
    return (
        i,
        f"Customer {i}",
        None if i % 7 == 0 else f"c{i}@example.com",
        "fax",
        None if i % 5 == 0 else ("Zürich", "Paris", "Lyon")[i % 3],
        None if i % 11 == 0 else i % 50,
    )


def _user(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """A customer as the users table keeps it: ``name`` renamed, ``fax`` dropped."""
    id_, name, email, _fax, city, visits = row
    return (id_, name, email, city, visits)


CUSTOMER_ROWS = [_customer(i) for i in range(1, ROWS + 1)]
MAPPING = TableMapping(
    source="customers",
    target="users",
    key=("id",),
    rename={"name": "full_name"},
    drop=frozenset({"fax"}),
)


async def _tables(source: Store, target: Store) -> None:
    await create(source, "customers", CUSTOMERS, CUSTOMER_ROWS)
    await create(target, "users", USERS, [_user(r) for r in CUSTOMER_ROWS])


async def _break(target: Store) -> None:
    """Two rows missing, two extra, three different (a value changed, a value become
    NULL, a NULL become a value)."""
    await target.execute("DELETE FROM users WHERE id IN (3, 2777)")
    await target.execute("INSERT INTO users VALUES (5001, 'Ghost', NULL, NULL, 1)")
    await target.execute("INSERT INTO users VALUES (9000, 'Other ghost', 'g@x', 'Paris', NULL)")
    await target.execute("UPDATE users SET full_name = 'Renamed' WHERE id = 10")
    await target.execute("UPDATE users SET email = NULL WHERE id = 20")
    await target.execute("UPDATE users SET visits = 99 WHERE id = 33")  # was NULL


def _assert_broken_found(report: Any) -> None:
    assert report.missing_keys == [{"id": 3}, {"id": 2777}]
    assert report.extra_keys == [{"id": 5001}, {"id": 9000}]
    assert (report.missing, report.extra, report.different) == (2, 2, 3)
    found = {d.key["id"]: d.columns for d in report.differences}
    assert found == {
        10: {"full_name": ("Customer 10", "Renamed")},
        20: {"email": ("c20@example.com", None)},
        33: {"visits": (None, 99)},
    }
    assert report.inconsistency_rate == pytest.approx(7 / ROWS)


def _spec(urls: tuple[str, str], **reconcile: Any) -> ReplicationSpec:
    return ReplicationSpec.model_validate(
        {
            "name": "erp-customers",
            "source": {"url": urls[0]},
            "target": {"url": urls[1]},
            "tables": [
                {
                    "source": "customers",
                    "target": "users",
                    "columns": {"name": "full_name", "fax": None},
                }
            ],
            "reconcile": reconcile,
        }
    )


async def test_identical_tables_have_no_difference(pair_urls: tuple[str, str]) -> None:
    async with opened(pair_urls) as (source, target):
        await _tables(source, target)
        report = await compare_table(source, target, MAPPING)
    assert report.method == "sql/range"
    assert (report.source_rows, report.target_rows) == (ROWS, ROWS)
    assert report.inconsistent == 0
    assert report.inconsistency_rate == 0
    assert report.rows_read == 0  # equal checksums: no row was read
    assert report.segments > 0


async def test_missing_extra_and_different_rows_are_each_found(pair_urls: tuple[str, str]) -> None:
    async with opened(pair_urls) as (source, target):
        await _tables(source, target)
        await _break(target)
        report = await compare_table(source, target, MAPPING)
    assert (report.source_rows, report.target_rows) == (ROWS, ROWS)
    _assert_broken_found(report)
    assert report.rows_read < ROWS  # only the segments that differ were read


async def test_bisection_over_several_levels_finds_the_same(
    pair_urls: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With few segments per query, differing segments are cut again (and again) before
    their rows are read."""
    monkeypatch.setattr(reconcile_module, "MAX_SEGMENTS", 4)
    async with opened(pair_urls) as (source, target):
        await _tables(source, target)
        await _break(target)
        report = await compare_table(source, target, MAPPING, segment_rows=8)
    _assert_broken_found(report)
    assert report.rows_read < 200
    assert report.segments > 4


async def test_a_python_transform_is_compared_after_mapping(pair_urls: tuple[str, str]) -> None:
    """The target keeps e-mail addresses in lower case and a computed display name: the
    source's rows are mapped in Python before they are compared."""
    from tests.integration.data.reconcile_rig import display, lower

    mapping = TableMapping(
        source="customers",
        target="users",
        key=("id",),
        rename={"name": "full_name"},
        drop=frozenset({"fax"}),
        transform={"email": lower},
        computed={"display": display},
    )
    rows = [(*r[:2], r[2] and r[2].upper(), *r[3:]) for r in CUSTOMER_ROWS]
    async with opened(pair_urls) as (source, target):
        await create(source, "customers", CUSTOMERS, rows)
        await create(
            target,
            "users",
            f"{USERS}, display TEXT",
            [(*_user(r), display({"name": r[1], "city": r[4]})) for r in CUSTOMER_ROWS],
        )
        same = await compare_table(source, target, mapping)
        await target.execute("UPDATE users SET email = 'C15@EXAMPLE.COM' WHERE id = 15")
        await target.execute("UPDATE users SET display = 'wrong' WHERE id = 16")
        await target.execute("DELETE FROM users WHERE id = 17")
        found = await compare_table(source, target, mapping)
    assert same.method == "python/keyset"
    assert same.inconsistent == 0
    assert (same.source_rows, same.target_rows) == (ROWS, ROWS)
    assert found.missing_keys == [{"id": 17}]
    assert {d.key["id"]: d.columns for d in found.differences} == {
        15: {"email": ("c15@example.com", "C15@EXAMPLE.COM")},
        16: {"display": ("Customer 16 (Paris)", "wrong")},
    }


async def test_composite_text_keys_are_cut_by_hash(
    pair_urls: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A key of text and a number, with keys that differ only in case or accents (which
    collations may order differently on the two sides)."""
    monkeypatch.setattr(reconcile_module, "MAX_SEGMENTS", 8)
    columns = "code TEXT, line INTEGER, sku TEXT, qty INTEGER, PRIMARY KEY (code, line)"
    codes = ["a", "A", "é", "e", "Z", "z-1", "ß", "🚀", "order 10", "order 9"]
    rows = [(c, n, f"sku-{n}", n % 4 or None) for c in codes for n in range(1, 120)]
    mapping = TableMapping(source="lines", target="lines", key=("code", "line"))
    async with opened(pair_urls) as (source, target):
        await create(source, "lines", columns, rows)
        await create(target, "lines", columns, rows)
        same = await compare_table(source, target, mapping, segment_rows=16)
        await target.execute("DELETE FROM lines WHERE code = 'A' AND line = 5")
        await target.execute("INSERT INTO lines VALUES ('a', 500, 'x', 1)")
        await target.execute("UPDATE lines SET qty = 7 WHERE code = 'é' AND line = 9")
        await target.execute("UPDATE lines SET sku = NULL WHERE code = '🚀' AND line = 100")
        found = await compare_table(source, target, mapping, segment_rows=16)
    assert same.method == "sql/hash"
    assert same.inconsistent == 0
    assert same.source_rows == len(rows)
    assert found.missing_keys == [{"code": "A", "line": 5}]
    assert found.extra_keys == [{"code": "a", "line": 500}]
    assert {(d.key["code"], d.key["line"]): d.columns for d in found.differences} == {
        ("é", 9): {"qty": (1, 7)},
        ("🚀", 100): {"sku": ("sku-100", None)},
    }
    assert found.rows_read < 2 * len(rows)


async def test_a_text_key_with_python_hashing_reads_by_hash_bucket(
    pair_urls: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.integration.data.reconcile_rig import lower

    monkeypatch.setattr(reconcile_module, "PYTHON_CHUNK_ROWS", 50)
    rows = [(f"user-{i}", f"U{i}@X") for i in range(400)]
    mapping = TableMapping(
        source="people", target="people", key=("login",), transform={"mail": lower}
    )
    async with opened(pair_urls) as (source, target):
        await create(source, "people", "login TEXT PRIMARY KEY, mail TEXT", rows)
        await create(target, "people", "login TEXT PRIMARY KEY, mail TEXT", rows[1:])
        await target.execute("UPDATE people SET mail = lower(mail) WHERE login <> 'user-7'")
        report = await compare_table(source, target, mapping)
    assert report.method == "python/hash"
    assert report.segments == 7  # 400 rows in buckets of about 64, each read and hashed alone
    assert report.missing_keys == [{"login": "user-0"}]
    assert [d.key for d in report.differences] == [{"login": "user-7"}]
    assert report.extra == 0


@pytest.mark.parametrize(
    ("source_rows", "target_rows"), [(0, 0), (40, 0), (0, 40)], ids=["both", "target", "source"]
)
async def test_empty_tables(pair_urls: tuple[str, str], source_rows: int, target_rows: int) -> None:
    async with opened(pair_urls) as (source, target):
        await create(source, "customers", CUSTOMERS, CUSTOMER_ROWS[:source_rows])
        await create(target, "users", USERS, [_user(r) for r in CUSTOMER_ROWS[:target_rows]])
        report = await compare_table(source, target, MAPPING)
    assert (report.source_rows, report.target_rows) == (source_rows, target_rows)
    assert (report.missing, report.extra, report.different) == (source_rows, target_rows, 0)
    # Differing rows over the source's rows, or over one row when the source is empty.
    assert report.inconsistency_rate == (source_rows + target_rows) / max(source_rows, 1)


async def test_empty_text_and_null_differ(pair_urls: tuple[str, str]) -> None:
    async with opened(pair_urls) as (source, target):
        await create(source, "t", "id INTEGER PRIMARY KEY, v TEXT", [(1, ""), (2, None), (3, "")])
        await create(target, "t", "id INTEGER PRIMARY KEY, v TEXT", [(1, None), (2, ""), (3, "")])
        report = await compare_table(source, target, TableMapping("t", "t", ("id",)))
    assert {d.key["id"]: d.columns for d in report.differences} == {
        1: {"v": ("", None)},
        2: {"v": (None, "")},
    }


async def test_samples_are_bounded_and_counts_exact(pair_urls: tuple[str, str]) -> None:
    async with opened(pair_urls) as (source, target):
        await _tables(source, target)
        await target.execute("DELETE FROM users WHERE id > 2000")
        await target.execute("UPDATE users SET visits = -1 WHERE id <= 500")
        report = await compare_table(source, target, MAPPING, sample_limit=5)
    assert report.missing == 1000
    assert report.different == 500
    assert len(report.missing_keys) == 5
    assert len(report.differences) == 5


async def _history(tmp_path: Path) -> Store:
    store = await open_store(f"sqlite:///{tmp_path / 'mesh.db'}")
    await store.upgrade()
    return store


async def test_repair_from_the_source_leaves_nothing_and_is_recorded(
    pair_urls: tuple[str, str], tmp_path: Path
) -> None:
    store = await _history(tmp_path)
    metrics = ReconcileMetrics()
    history = ReconcileHistory(store)
    try:
        async with opened(pair_urls) as (source, target):
            await _tables(source, target)
            await _break(target)
            reconciler = Reconciler(
                _spec(pair_urls, truth="source"),
                source=source,
                target=target,
                history=history,
                metrics=metrics,
            )
            repaired = await reconciler.run(repair=True)
            again = await reconciler.run()
            users = await rows_of(target, "users", "id")
        runs = await history.runs("erp-customers")
        repairs = await history.repairs("erp-customers", run_id=repaired.run_id)
    finally:
        await store.close()

    table = repaired.tables[0]
    _assert_broken_found(table)
    assert (table.repaired, table.remaining) == (7, 0)
    assert repaired.status == "repaired"
    assert again.status == "consistent"
    assert again.tables[0].inconsistent == 0
    expected = [
        dict(zip(("id", "full_name", "email", "city", "visits"), _user(r), strict=True))
        for r in CUSTOMER_ROWS
    ]
    assert users == expected

    assert [(r.id, r.status) for r in runs] == [
        (again.run_id, "consistent"),
        (repaired.run_id, "repaired"),
    ]
    assert (runs[1].missing, runs[1].extra, runs[1].different) == (2, 2, 3)
    assert runs[1].rate == pytest.approx(7 / ROWS)
    assert (runs[1].repaired, runs[1].remaining) == (7, 0)
    by_key = {r.key["id"]: r for r in repairs}
    assert sorted(by_key) == [3, 10, 20, 33, 2777, 5001, 9000]
    assert {k: by_key[k].action for k in (3, 10, 5001)} == {
        3: "insert",
        10: "update",
        5001: "delete",
    }
    assert all(r.side == "target" and r.table == "users" for r in repairs)
    assert by_key[3].before is None
    assert by_key[3].after == dict(
        zip(("id", "full_name", "email", "city", "visits"), _user(CUSTOMER_ROWS[2]), strict=True)
    )
    assert by_key[10].before is not None and by_key[10].before["full_name"] == "Renamed"
    assert by_key[10].after is not None and by_key[10].after["full_name"] == "Customer 10"
    assert by_key[5001].after is None
    assert by_key[5001].before == {
        "id": 5001,
        "full_name": "Ghost",
        "email": None,
        "city": None,
        "visits": 1,
    }
    labels = {"replication": "erp-customers", "table": "users"}
    assert metrics.sample("hybridmesh_reconcile_inconsistency_rate", **labels) == 0.0
    assert metrics.sample("hybridmesh_reconcile_repaired_rows", **labels) == 0.0


async def test_repair_from_the_target_writes_the_source(
    pair_urls: tuple[str, str], tmp_path: Path
) -> None:
    store = await _history(tmp_path)
    try:
        async with opened(pair_urls) as (source, target):
            await _tables(source, target)
            await _break(target)
            reconciler = Reconciler(
                _spec(pair_urls, truth="target"),
                source=source,
                target=target,
                history=ReconcileHistory(store),
            )
            repaired = await reconciler.run(repair=True)
            again = await reconciler.run()
            customers = {r["id"]: r for r in await rows_of(source, "customers", "id")}
            users = await rows_of(target, "users", "id")
        repairs = await ReconcileHistory(store).repairs("erp-customers")
    finally:
        await store.close()
    assert repaired.status == "repaired"
    assert repaired.tables[0].remaining == 0
    assert again.status == "consistent"
    assert sorted(customers) == [u["id"] for u in users]  # 3 and 2777 gone, ghosts added
    assert customers[5001] == {
        "id": 5001,
        "name": "Ghost",
        "email": None,
        "fax": None,  # dropped on the way to the target: nothing to bring back
        "city": None,
        "visits": 1,
    }
    assert customers[10]["name"] == "Renamed"
    assert customers[10]["fax"] == "fax"  # an update leaves the dropped column alone
    assert customers[20]["email"] is None
    assert {r.key["id"]: r.action for r in repairs} == {
        3: "delete",
        2777: "delete",
        5001: "insert",
        9000: "insert",
        10: "update",
        20: "update",
        33: "update",
    }
    assert all(r.side == "source" and r.table == "customers" for r in repairs)


async def test_a_failed_run_is_recorded(tmp_path: Path) -> None:
    urls = (f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}")
    store = await _history(tmp_path)
    try:
        async with opened(urls) as (source, target):
            await create(source, "customers", CUSTOMERS, CUSTOMER_ROWS[:10])
            reconciler = Reconciler(
                _spec(urls), source=source, target=target, history=ReconcileHistory(store)
            )
            with pytest.raises(Exception, match="users"):
                await reconciler.run()
        runs = await ReconcileHistory(store).runs("erp-customers")
    finally:
        await store.close()
    assert [r.status for r in runs] == ["failed"]
    assert runs[0].error is not None and "users" in runs[0].error


async def test_json_report_holds_every_figure(tmp_path: Path) -> None:
    import json

    from hybridmesh.core.serialization import dumps

    urls = (f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}")
    async with opened(urls) as (source, target):
        await _tables(source, target)
        await _break(target)
        report = await Reconciler(_spec(urls), source=source, target=target).run()
    data = json.loads(dumps(report.to_dict()))
    table = data["tables"][0]
    assert data["status"] == "inconsistent"
    assert data["inconsistent"] == 7
    assert {k: table[k] for k in ("missing", "extra", "different")} == {
        "missing": 2,
        "extra": 2,
        "different": 3,
    }
    assert table["differences"][0] == {
        "key": {"id": 10},
        "columns": {"full_name": {"source": "Customer 10", "target": "Renamed"}},
    }
    assert table["inconsistency_rate"] == pytest.approx(7 / ROWS)


PG_TYPES = (
    "id BIGINT PRIMARY KEY, price NUMERIC(12, 2), at TIMESTAMPTZ, local TIMESTAMP, day DATE, "
    "ratio DOUBLE PRECISION, small REAL, ok BOOLEAN, ref UUID, doc JSONB, raw BYTEA, t TIME"
)


def _typed(i: int) -> tuple[Any, ...]:
    import json
    import uuid
    from datetime import UTC, date, datetime, time, timedelta
    from decimal import Decimal

    return (
        i,
        Decimal(i) / 4,
        datetime(2024, 1, 1, tzinfo=UTC) + timedelta(seconds=i, microseconds=i),
        datetime(2024, 1, 1) + timedelta(minutes=i),
        date(2024, 1, 1) + timedelta(days=i % 300),
        i / 3,
        i / 8,
        i % 2 == 0,
        uuid.UUID(int=i),
        json.dumps({"n": i, "tags": ["a", "b"]}),
        bytes([i % 256, 0]),
        time(i % 24, i % 60),
    )


@pytest.mark.postgres
async def test_postgresql_types_compare_in_sql_between_two_postgresql_databases(
    postgres_url: str, second_postgres_url: str
) -> None:
    rows = [_typed(i) for i in range(1, 500)]
    mapping = TableMapping("typed", "typed", ("id",))
    async with opened((postgres_url, second_postgres_url)) as (source, target):
        await create(source, "typed", PG_TYPES, rows)
        await create(target, "typed", PG_TYPES, rows)
        same = await compare_table(source, target, mapping)
        await target.execute("UPDATE typed SET ratio = ratio + 1e-12 WHERE id = 10")
        await target.execute("UPDATE typed SET at = at + interval '1 microsecond' WHERE id = 20")
        await target.execute("UPDATE typed SET price = price + 0.01 WHERE id = 30")
        await target.execute("UPDATE typed SET doc = '{\"n\": 0}' WHERE id = 40")
        await target.execute("UPDATE typed SET ok = NULL WHERE id = 50")
        found = await compare_table(source, target, mapping)
    assert same.method == "sql/range"
    assert same.inconsistent == 0 and same.rows_read == 0
    assert {d.key["id"]: set(d.columns) for d in found.differences} == {
        10: {"ratio"},
        20: {"at"},
        30: {"price"},
        40: {"doc"},
        50: {"ok"},
    }


@pytest.mark.postgres
async def test_types_whose_text_differs_between_sqlite_and_postgresql(
    tmp_path: Path, postgres_url: str
) -> None:
    """Floats, booleans and times: SQLite's values (REAL, 0/1, text) equal PostgreSQL's,
    compared in Python."""
    from datetime import datetime

    legacy = [(i, i / 3, i % 2, f"2024-01-0{1 + i % 9} 10:00:00") for i in range(1, 200)]
    service = [(i, r, bool(b), datetime.fromisoformat(t)) for i, r, b, t in legacy]
    mapping = TableMapping("m", "m", ("id",))
    async with opened((f"sqlite:///{tmp_path / 'l.db'}", postgres_url)) as (source, target):
        await create(source, "m", "id INTEGER PRIMARY KEY, r REAL, b BOOLEAN, at TIMESTAMP", legacy)
        await create(
            target,
            "m",
            "id BIGINT PRIMARY KEY, r DOUBLE PRECISION, b BOOLEAN, at TIMESTAMP",
            service,
        )
        same = await compare_table(source, target, mapping)
        await target.execute("UPDATE m SET b = NOT b WHERE id = 5")
        await target.execute("UPDATE m SET at = at + interval '1 second' WHERE id = 6")
        await target.execute("UPDATE m SET r = 0.5 WHERE id = 7")
        found = await compare_table(source, target, mapping)
    assert same.method == "python/keyset"
    assert same.inconsistent == 0
    assert {d.key["id"]: set(d.columns) for d in found.differences} == {
        5: {"b"},
        6: {"at"},
        7: {"r"},
    }
