"""``hybridmesh reconcile run`` and ``history``: exit codes, the table report and JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.cli_in_process import run_cli, run_cli_parts
from tests.integration.data.reconcile_rig import create, opened

COLUMNS = "id INTEGER PRIMARY KEY, name TEXT, fax TEXT"
TARGET = "id INTEGER PRIMARY KEY, full_name TEXT"


def _flat(text: str) -> str:
    """``text`` with its lines joined, however narrow the terminal wrapped them."""
    return " ".join(text.split())


async def _setup(tmp_path: Path, truth: str = "source") -> Path:
    legacy, service = tmp_path / "legacy.db", tmp_path / "service.db"
    async with opened((f"sqlite:///{legacy}", f"sqlite:///{service}")) as (source, target):
        await create(source, "customers", COLUMNS, [(i, f"c{i}", "f") for i in range(1, 301)])
        await create(
            target,
            "users",
            TARGET,
            [(i, "changed" if i == 42 else f"c{i}") for i in range(1, 301) if i != 7],
        )
        await target.execute("INSERT INTO users VALUES (999, 'ghost')")
    file = tmp_path / "replication.yaml"
    file.write_text(
        f"""replications:
  - name: erp-customers
    source: {{url: "sqlite:///{legacy}"}}
    target: {{url: "sqlite:///{service}"}}
    tables:
      - source: customers
        target: users
        columns: {{name: full_name, fax: null}}
    reconcile: {{truth: {truth}}}
  - name: erp-orders
    source: {{url: "sqlite:///{legacy}"}}
    target: {{url: "sqlite:///{service}"}}
    tables: [{{source: orders}}]
"""
    )
    return file


async def test_differences_exit_1_a_repair_exits_0_and_then_all_agree(
    tmp_path: Path, sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    file = await _setup(tmp_path)
    args = ("reconcile", "run", "erp-customers", "--file", str(file))

    code, out = await run_cli(capsys, sqlite_url, *args)
    out = _flat(out)
    assert code == 1, out
    assert "missing from the target: id=7" in out
    assert "extra in the target: id=999" in out
    assert "different at id=42: full_name: 'c42' ≠ 'changed'" in out
    assert "inconsistent" in out

    code, out = await run_cli(capsys, sqlite_url, *args, "--repair")
    out = _flat(out)
    assert code == 0, out
    assert "repaired (3 differing rows" in out
    assert "3 repaired, 0 remaining" in out

    code, out, err = await run_cli_parts(capsys, sqlite_url, *args, "--json")
    assert code == 0, out + err
    report = json.loads(out)
    assert report["status"] == "consistent"
    assert report["tables"][0]["source_rows"] == report["tables"][0]["target_rows"] == 300

    code, out, _ = await run_cli_parts(
        capsys, sqlite_url, "reconcile", "history", "erp-customers", "--json"
    )
    assert code == 0
    assert [r["status"] for r in json.loads(out)] == ["consistent", "repaired", "inconsistent"]
    code, out, _ = await run_cli_parts(
        capsys, sqlite_url, "reconcile", "history", "erp-customers", "--repairs", "--json"
    )
    assert code == 0
    repairs = {r["key"]["id"]: r for r in json.loads(out)}
    assert {k: r["action"] for k, r in repairs.items()} == {
        7: "insert",
        42: "update",
        999: "delete",
    }
    assert repairs[42]["before"] == {"id": 42, "full_name": "changed"}
    assert repairs[42]["after"] == {"id": 42, "full_name": "c42"}


async def test_json_report_of_differences_exits_1(
    tmp_path: Path, sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    file = await _setup(tmp_path)
    code, out, _ = await run_cli_parts(
        capsys, sqlite_url, "reconcile", "run", "erp-customers", "--file", str(file), "--json"
    )
    assert code == 1
    table = json.loads(out)["tables"][0]
    assert (table["missing"], table["extra"], table["different"]) == (1, 1, 1)
    assert table["missing_keys"] == [{"id": 7}]
    assert table["differences"] == [
        {"key": {"id": 42}, "columns": {"full_name": {"source": "c42", "target": "changed"}}}
    ]


async def test_truth_target_repairs_the_source(
    tmp_path: Path, sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    file = await _setup(tmp_path, truth="target")
    args = ("reconcile", "run", "erp-customers", "--file", str(file), "--table", "users")
    code, out = await run_cli(capsys, sqlite_url, *args, "--repair")
    assert code == 0, out
    async with opened((f"sqlite:///{tmp_path / 'legacy.db'}",) * 2) as (legacy, _):
        rows = {r["id"]: r for r in await legacy.fetch_all("SELECT * FROM customers")}
    assert 7 not in rows
    assert rows[42]["name"] == "changed"
    assert rows[999] == {"id": 999, "name": "ghost", "fax": None}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("run", "nope"), "has no replication 'nope'; it defines: erp-customers, erp-orders"),
        (("run", "erp-customers", "--table", "nope"), "has no table 'nope'; its tables: customers"),
    ],
)
async def test_usage_errors_exit_2(
    tmp_path: Path,
    sqlite_url: str,
    capsys: pytest.CaptureFixture[str],
    args: tuple[str, ...],
    message: str,
) -> None:
    file = await _setup(tmp_path)
    code, out = await run_cli(capsys, sqlite_url, "reconcile", *args, "--file", str(file))
    assert code == 2, out
    assert message in _flat(out)


async def test_an_invalid_file_exits_2_naming_the_line(
    tmp_path: Path, sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    file = tmp_path / "bad.yaml"
    file.write_text("replications:\n  - name: x\n    source: {url: 'mysql://nope'}\n")
    code, out = await run_cli(capsys, sqlite_url, "reconcile", "run", "x", "--file", str(file))
    assert code == 2, out
    assert f"{file}:3" in out


async def test_a_missing_table_is_a_failure_at_run_time(
    tmp_path: Path, sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    file = await _setup(tmp_path)
    code, out = await run_cli(
        capsys, sqlite_url, "reconcile", "run", "erp-orders", "--file", str(file)
    )
    assert code == 1, out
    assert "no table 'orders'" in _flat(out)


async def test_history_of_a_replication_never_run(
    sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = await run_cli(capsys, sqlite_url, "reconcile", "history", "erp-customers")
    assert code == 0
    assert "no reconciliation runs of erp-customers" in _flat(out)


async def test_without_a_file_the_stored_definition_is_used(
    tmp_path: Path, sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    file = await _setup(tmp_path)
    code, out = await run_cli(capsys, sqlite_url, "replicate", "apply", str(file))
    assert code == 0, out

    code, out, _ = await run_cli_parts(
        capsys, sqlite_url, "reconcile", "run", "erp-customers", "--json"
    )
    assert code == 1
    assert json.loads(out)["tables"][0]["missing"] == 1

    code, out, err = await run_cli_parts(capsys, sqlite_url, "reconcile", "run", "nowhere")
    assert code == 2
    assert "no replication 'nowhere'" in _flat(err) and "erp-customers" in _flat(err)


async def test_reconcile_name_is_short_for_reconcile_run_name(
    tmp_path: Path, sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    file = await _setup(tmp_path)

    code, out, _ = await run_cli_parts(
        capsys, sqlite_url, "reconcile", "erp-customers", "--file", str(file), "--repair", "--json"
    )

    assert code == 0
    report = json.loads(out)
    assert report["repair"] is True and report["tables"][0]["repaired"] == 3
