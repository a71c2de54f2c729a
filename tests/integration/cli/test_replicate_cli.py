"""`hybridmesh replicate` on a real state store (SQLite and PostgreSQL): definitions applied
from YAML (and refused with file, line and field), a replication run until caught up, its
status and listing, the asked-for state that pause, resume and stop set, unknown names, and a
running `start` that a second `start` leaves alone and that ends when `replicate stop` asks
it to."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import sys
from pathlib import Path
from typing import Any

import pytest
from tests.cli_in_process import run_cli as cli
from tests.waiting import eventually

from hybridmesh.data.control import DataControl
from hybridmesh.store import open_store

WAIT = 30.0  # seconds: only a hang takes this long


def definitions(source: Path, target: Path, name: str = "erp-customers") -> str:
    return f"""\
replications:
  - name: {name}
    source: {{url: "sqlite:///{source}", system: legacy-erp}}
    target: {{url: "sqlite:///{target}"}}
    chunk_size: 7
    tables:
      - source: customers
        target: users
        columns: {{name: full_name, fax: null}}
"""


@pytest.fixture
def legacy(tmp_path: Path) -> Path:
    """A legacy SQLite database with 20 customers."""
    path = tmp_path / "legacy.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT, fax TEXT)")
        db.executemany(
            "INSERT INTO customers VALUES (?, ?, ?)",
            [(n, f"customer {n}", "0123") for n in range(1, 21)],
        )
    db.close()
    return path


@pytest.fixture
def service(tmp_path: Path) -> Path:
    return tmp_path / "service.db"


@pytest.fixture
def file(tmp_path: Path, legacy: Path, service: Path) -> Path:
    path = tmp_path / "replications.yaml"
    path.write_text(definitions(legacy, service))
    return path


def users(path: Path) -> list[tuple[Any, ...]]:
    db = sqlite3.connect(path)
    try:
        return db.execute("SELECT id, full_name FROM users ORDER BY id").fetchall()
    finally:
        db.close()


def copied(path: Path) -> int:
    """The rows in the new service's table so far (0 before the replication made it)."""
    try:
        return len(users(path))
    except sqlite3.OperationalError:  # no table yet
        return 0


async def test_apply_stores_the_definitions_stopped_and_applying_again_changes_nothing(
    database_url: str, file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = await cli(capsys, database_url, "replicate", "apply", str(file), "--json")
    assert code == 0, out
    assert json.loads(out) == {
        "created": ["erp-customers"],
        "updated": [],
        "unchanged": [],
        "deleted": [],
    }
    code, out = await cli(capsys, database_url, "replicate", "apply", str(file))
    assert code == 0 and "unchanged: erp-customers" in out

    code, out = await cli(capsys, database_url, "replicate", "list", "--json")
    assert code == 0, out
    (listed,) = json.loads(out)
    assert (listed["name"], listed["kind"], listed["desired"], listed["running"]) == (
        "erp-customers",
        "replication",
        "stopped",
        False,
    )
    assert listed["spec"]["tables"][0]["columns"] == {"name": "full_name", "fax": None}


async def test_a_bad_file_exits_2_naming_file_line_and_field(
    database_url: str,
    tmp_path: Path,
    legacy: Path,
    service: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    good = definitions(legacy, service)
    bad = tmp_path / "bad.yaml"
    # Line 5: no chunk of zero rows.
    bad.write_text(good.replace("chunk_size: 7", "chunk_size: 0"))
    code, out = await cli(capsys, database_url, "replicate", "apply", str(bad))
    assert code == 2, out
    assert f"{bad}:5" in out and "replications.0.chunk_size" in out
    assert "Traceback" not in out

    unknown = tmp_path / "unknown.yaml"
    unknown.write_text(
        good.replace("columns:", "transform: {name: 'no_such_module:f'}\n        columns:")
    )
    code, out = await cli(capsys, database_url, "replicate", "apply", str(unknown))
    assert code == 2 and f"{unknown}:9" in out and "no_such_module" in out

    # Nothing of either file was stored.
    code, out = await cli(capsys, database_url, "replicate", "list", "--json")
    assert code == 0 and json.loads(out) == []


async def test_start_until_caught_up_copies_the_rows_and_status_shows_where_it_stands(
    database_url: str,
    file: Path,
    legacy: Path,
    service: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out = await cli(
        capsys,
        database_url,
        "replicate",
        "start",
        "erp-customers",
        "--file",
        str(file),
        "--until-caught-up",
        "--json",
    )
    assert code == 0, out
    status = json.loads(out.strip().splitlines()[-1])
    assert status["phase"] == "streaming" and status["lag_changes"] == 0
    (table,) = status["tables"]
    assert (table["source"], table["target"], table["rows_copied"]) == ("customers", "users", 20)
    assert users(service) == [(n, f"customer {n}") for n in range(1, 21)]

    # A change made since, carried by the next run.
    with sqlite3.connect(legacy) as db:
        db.execute("UPDATE customers SET name = 'renamed' WHERE id = 3")
        db.execute("DELETE FROM customers WHERE id = 4")
    db.close()
    code, out = await cli(
        capsys, database_url, "replicate", "start", "erp-customers", "--until-caught-up"
    )
    assert code == 0 and "lag 0 changes" in out
    rows = users(service)
    assert (3, "renamed") in rows and len(rows) == 19 and 4 not in [r[0] for r in rows]

    code, out = await cli(capsys, database_url, "replicate", "status", "erp-customers", "--json")
    assert code == 0, out
    shown = json.loads(out)
    assert shown["desired"] == "running" and shown["running"] is False  # it let go
    assert shown["status"]["position"] == shown["status"]["head"] > 0
    assert shown["status"]["tables"][0]["rows_copied"] == 20
    code, out = await cli(capsys, database_url, "replicate", "status", "erp-customers")
    assert code == 0 and "customers -> users" in out and "100 %" in out
    code, out = await cli(capsys, database_url, "replicate", "list")
    assert code == 0 and "erp-" in out and "streaming" in out  # a narrow table wraps names


async def test_pause_resume_and_stop_set_the_asked_for_state(
    database_url: str, file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (await cli(capsys, database_url, "replicate", "apply", str(file)))[0] == 0
    for verb, desired in (("pause", "paused"), ("resume", "running"), ("stop", "stopped")):
        code, out = await cli(capsys, database_url, "replicate", verb, "erp-customers", "--json")
        assert code == 0, out
        assert json.loads(out)["desired"] == desired
        code, out = await cli(
            capsys, database_url, "replicate", "status", "erp-customers", "--json"
        )
        assert json.loads(out)["desired"] == desired
    code, out = await cli(capsys, database_url, "replicate", "pause", "erp-customers")
    assert code == 0 and "erp-customers: asked to be paused" in out


@pytest.mark.parametrize(
    "command",
    [("status",), ("pause",), ("resume",), ("stop",), ("start", "--until-caught-up")],
)
async def test_an_unknown_name_exits_1_naming_the_known_ones(
    database_url: str,
    tmp_path: Path,
    file: Path,
    legacy: Path,
    capsys: pytest.CaptureFixture[str],
    command: tuple[str, ...],
) -> None:
    two = tmp_path / "two.yaml"
    two.write_text(
        definitions(legacy, tmp_path / "a.db", "erp-a")
        + definitions(legacy, tmp_path / "b.db", "erp-b").removeprefix("replications:\n")
    )
    assert (await cli(capsys, database_url, "replicate", "apply", str(two)))[0] == 0
    code, out = await cli(capsys, database_url, "replicate", command[0], "erp-c", *command[1:])
    assert code == 1, out
    assert "'erp-c'" in out and "known: erp-a, erp-b" in out


async def test_a_running_start_ends_when_stop_is_asked(
    database_url: str, file: Path, service: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (await cli(capsys, database_url, "replicate", "apply", str(file)))[0] == 0
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hybridmesh",
        "replicate",
        "start",
        "erp-customers",
        "--json",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={
            **os.environ,
            "HYBRIDMESH_DATABASE_URL": database_url,
            "HYBRIDMESH_LOG_LEVEL": "WARNING",
        },
    )
    try:
        store = await open_store(database_url, create=False)
        try:
            control = DataControl(store)

            async def replicating() -> bool:
                record = await control.get("erp-customers")
                return record.running_now() and record.desired == "running"

            await eventually(replicating, WAIT, "the replication running")
        finally:
            await store.close()
        await eventually(lambda: copied(service) == 20, WAIT, "the rows copied")
        assert process.returncode is None  # it goes on, streaming
        code, out = await cli(
            capsys, database_url, "replicate", "start", "erp-customers", "--until-caught-up"
        )
        assert code == 1 and "erp-customers is run by" in out  # one process at a time

        code, out = await cli(capsys, database_url, "replicate", "stop", "erp-customers")
        assert code == 0, out
        out_bytes, err = await asyncio.wait_for(process.communicate(), WAIT)
        assert process.returncode == 0, err.decode()
        assert json.loads(out_bytes.decode().strip().splitlines()[-1])["lag_changes"] == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    code, out = await cli(capsys, database_url, "replicate", "status", "erp-customers", "--json")
    shown = json.loads(out)
    assert shown["desired"] == "stopped" and shown["running"] is False
