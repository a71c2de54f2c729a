"""`hybridmesh db upgrade` and `hybridmesh db status` against a real SQLite file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from hybridmesh.cli.main import cli
from hybridmesh.store import MIGRATIONS


def invoke(url: str, *args: str) -> str:
    result = CliRunner().invoke(cli, ["--database-url", url, "db", *args])
    assert result.exit_code == 0, (result.output, result.exception)
    return result.output


def test_upgrade_then_status_reports_latest_version_and_nothing_pending(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"

    output = invoke(url, "upgrade")
    assert "applied 1 services" in output
    assert f"version {MIGRATIONS[-1].version}" in output

    report = json.loads(invoke(url, "status", "--json"))
    assert report == {
        "url": url,
        "dialect": "sqlite",
        "version": MIGRATIONS[-1].version,
        "latest": MIGRATIONS[-1].version,
        "pending": [],
    }
    assert report["version"] >= 1


def test_second_upgrade_says_schema_is_up_to_date(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    invoke(url, "upgrade")
    output = invoke(url, "upgrade")
    assert f"schema is up to date (version {MIGRATIONS[-1].version})" in output


def test_status_before_upgrade_lists_every_migration_as_pending(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    report = json.loads(invoke(url, "status", "--json"))
    assert report["version"] == 0
    assert report["pending"] == [{"version": m.version, "name": m.name} for m in MIGRATIONS]

    table = invoke(url, "status")
    assert "version:  0" in table
    assert "1 services" in table


@pytest.mark.postgres
def test_status_on_postgres_masks_the_password(postgres_url: str) -> None:
    # The test server trusts every local user, so any password connects.
    url = postgres_url.replace("postgres@", "postgres:s3cret@", 1)
    assert "s3cret" in url
    invoke(url, "upgrade")

    report = json.loads(invoke(url, "status", "--json"))

    assert "s3cret" not in report["url"]
    assert report["url"] == url.replace("s3cret", "***")
    assert report["dialect"] == "postgresql"
    assert report["pending"] == []
