"""`hybridmesh contracts verify` against the reference services, started for real."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.cli_in_process import run_cli, run_cli_parts
from tests.integration.contracts.conftest import CONTRACTS

from hybridmesh.contracts.pact import read_pact
from hybridmesh.contracts.reference import ReferenceProviders
from hybridmesh.contracts.verify import verify_messages


def _base_urls(urls: dict[str, str]) -> list[str]:
    return [arg for name, url in urls.items() for arg in ("--base-url", f"{name}={url}")]


async def test_committed_contracts_hold_for_the_reference_services(
    capsys: pytest.CaptureFixture[str],
    sqlite_url: str,
    providers: ReferenceProviders,
    events_file: Path,
) -> None:
    code, out, _ = await run_cli_parts(
        capsys,
        sqlite_url,
        "contracts",
        "verify",
        "--dir",
        str(CONTRACTS),
        "--events",
        str(events_file),
        "--json",
        *_base_urls(providers.urls),
    )
    assert code == 0, out
    report = json.loads(out)
    assert report["ok"] is True
    verified = {
        (i["consumer"], p["provider"], i["interaction"])
        for p in report["providers"]
        for i in p["interactions"]
        if i["ok"]
    }
    assert {
        ("order-processing", "user-service", "POST /operations/validate-user returns 200"),
        ("order-processing", "inventory-management", "POST /operations/reserve-items returns 201"),
        ("order-processing", "payment-service", "POST /operations/charge-payment returns 201"),
        ("order-processing", "shipping-service", "POST /operations/create-shipment returns 201"),
        (
            "order-processing",
            "notification-services",
            "POST /operations/send-order-confirmation returns 201",
        ),
        ("notification-services", "user-service", "a user.registered event from user-service"),
        ("notification-services", "user-service", "a user.deactivated event from user-service"),
        ("analytics-reporting", "user-service", "a user.registered event from user-service"),
    } <= verified


async def test_a_renamed_response_field_fails_naming_the_field(
    capsys: pytest.CaptureFixture[str], sqlite_url: str, renamed_user_service: str
) -> None:
    code, out = await run_cli(
        capsys,
        sqlite_url,
        "contracts",
        "verify",
        "--dir",
        str(CONTRACTS),
        "--provider",
        "user-service",
        "--base-url",
        f"user-service={renamed_user_service}",
    )
    assert code == 1
    assert "FAILED order-processing: POST /operations/validate-user" in out
    assert "$.user_id: missing from the provider's answer" in out


def test_a_published_event_without_a_field_fails_naming_it(
    providers: ReferenceProviders,
) -> None:
    contract = read_pact(CONTRACTS / "notification-services-user-service.json")
    changed = [
        {**e, "data": {k: v for k, v in e["data"].items() if k != "email"}}
        for e in providers.published
    ]
    assert all(r.ok for r in verify_messages("user-service", [contract], providers.published))
    results = verify_messages("user-service", [contract], changed)
    assert {str(m) for r in results for m in r.mismatches} == {
        "$.email: missing from the provider's message"
    }
    assert not any(r.ok for r in results)


@pytest.mark.parametrize("port_fixture", ["closed_port", "silent_port"])
async def test_an_unreachable_provider_fails_at_once_with_its_url(
    capsys: pytest.CaptureFixture[str],
    sqlite_url: str,
    request: pytest.FixtureRequest,
    port_fixture: str,
) -> None:
    url = f"http://127.0.0.1:{request.getfixturevalue(port_fixture)}"
    code, out = await run_cli(
        capsys,
        sqlite_url,
        "contracts",
        "verify",
        "--dir",
        str(CONTRACTS),
        "--provider",
        "payment-service",
        "--base-url",
        f"payment-service={url}",
    )
    assert code == 1
    assert f"provider payment-service at {url} is unreachable" in out


async def test_a_malformed_contract_is_refused_with_file_line_and_field(
    capsys: pytest.CaptureFixture[str], sqlite_url: str, contracts_dir: Path
) -> None:
    bad = contracts_dir / "broken.json"
    bad.write_text(
        "{\n"
        '  "consumer": {"name": "order-processing"},\n'
        '  "provider": {"name": "user-service"},\n'
        '  "interactions": [\n'
        '    {"type": "Synchronous/HTTP",\n'
        '     "description": "no response",\n'
        '     "request": {"method": "GET", "path": "/users"}}\n'
        "  ],\n"
        '  "metadata": {"pactSpecification": {"version": "4.0"}}\n'
        "}\n"
    )
    code, out = await run_cli(
        capsys, sqlite_url, "contracts", "verify", "--dir", str(contracts_dir)
    )
    assert code == 2
    # A missing field is located at the object that lacks it: the interaction, on line 5.
    assert (
        f"{bad}:5: error [interactions[0].response]: must be an object, not null (or missing)"
        in out
    )


@pytest.mark.parametrize(
    ("provider", "says"),
    [
        ("billing-service", "no contract under"),
        # in the contracts, but neither --base-url nor the (empty) registry says where
        ("payment-service", "unknown provider payment-service"),
    ],
)
async def test_an_unknown_provider_is_bad_input(
    capsys: pytest.CaptureFixture[str], sqlite_url: str, provider: str, says: str
) -> None:
    code, out = await run_cli(
        capsys, sqlite_url, "contracts", "verify", "--dir", str(CONTRACTS), "--provider", provider
    )
    assert code == 2
    assert says in out
