"""`hybridmesh contracts check SERVICE`: which consumers a new version breaks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.cli_in_process import run_cli, run_cli_parts
from tests.integration.contracts.conftest import CONTRACTS

from hybridmesh.contracts.reference import ReferenceProviders
from hybridmesh.demo.walkthrough import reference_services_path


@pytest.fixture
async def registry_url(capsys: pytest.CaptureFixture[str], sqlite_url: str) -> str:
    """A store holding the reference registry, whose consumers of user-service are
    order-processing, notification-services, analytics-reporting and content-management."""
    for args in (("db", "upgrade"), ("registry", "load", str(reference_services_path()))):
        code, out = await run_cli(capsys, sqlite_url, *args)
        assert code == 0, out
    return sqlite_url


async def _check(
    capsys: pytest.CaptureFixture[str], database_url: str, url: str, events: Path
) -> tuple[int, dict[str, object]]:
    code, out, err = await run_cli_parts(
        capsys,
        database_url,
        "contracts",
        "check",
        "user-service",
        "--dir",
        str(CONTRACTS),
        "--base-url",
        url,
        "--events",
        str(events),
        "--json",
    )
    assert code in (0, 1), err
    return code, json.loads(out)


async def test_a_new_version_that_renames_a_field_breaks_its_http_consumer(
    capsys: pytest.CaptureFixture[str],
    registry_url: str,
    events_file: Path,
    renamed_user_service: str,
) -> None:
    code, report = await _check(capsys, registry_url, renamed_user_service, events_file)
    assert code == 1
    verdicts = {c["consumer"]: c for c in report["consumers"]}  # type: ignore[attr-defined]
    assert {name: v["status"] for name, v in verdicts.items()} == {
        "order-processing": "BROKEN",
        "notification-services": "OK",
        "analytics-reporting": "OK",
        "content-management": "UNCHECKED",  # depends on user-service, has no contract
    }
    failure = verdicts["order-processing"]["failures"][0]
    assert failure["interaction"].startswith("POST /operations/validate-user")
    assert [m["path"] for m in failure["mismatches"]] == ["$.user_id"]


async def test_the_current_version_breaks_no_consumer(
    capsys: pytest.CaptureFixture[str],
    registry_url: str,
    events_file: Path,
    providers: ReferenceProviders,
) -> None:
    code, report = await _check(capsys, registry_url, providers.urls["user-service"], events_file)
    assert code == 0
    assert report["ok"] is True


async def test_the_table_names_the_broken_consumer_and_field(
    capsys: pytest.CaptureFixture[str],
    registry_url: str,
    renamed_user_service: str,
) -> None:
    code, out = await run_cli(
        capsys,
        registry_url,
        "contracts",
        "check",
        "user-service",
        "--dir",
        str(CONTRACTS),
        "--base-url",
        renamed_user_service,
    )
    assert code == 1
    assert "BROKEN    order-processing" in out
    assert "$.user_id: missing from the provider's answer" in out
    # without --events its message contracts are not checked, and it says so
    assert "UNCHECKED notification-services" in out
