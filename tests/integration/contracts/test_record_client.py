"""Recording the hybrid client's calls to a real service on loopback."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pact_ffi
import pytest
from pact import Verifier
from tests.integration.client.helpers import service
from tests.integration.contracts.user_service import MISSING, user_service
from tests.integration.loopback import serve

from hybridmesh.client import CommunicationRequest, HybridClient
from hybridmesh.contracts.pact import HttpInteraction, Matcher, ProviderState, read_pact
from hybridmesh.contracts.recorder import ContractRecorder
from hybridmesh.contracts.rules import UUID_REGEX
from hybridmesh.core.errors import TransportError
from hybridmesh.registry import ServiceRegistry


async def test_the_clients_calls_become_a_handful_of_generalised_interactions(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "recorded"
    recorder = ContractRecorder(folder)
    async with serve(user_service()) as url:
        registry = ServiceRegistry(
            [
                service("user-service", "microservice", url),
                service("order-service", "microservice", url),
            ]
        )
        async with HybridClient(registry, recorder=recorder) as client:
            for _ in range(20):
                await client.communicate(
                    "order-service",
                    "user-service",
                    CommunicationRequest(
                        endpoint=f"/users/{uuid.uuid4()}",
                        params={"expand": "orders"},
                        headers={"X-Provider-State": "a user exists", "Authorization": "secret"},
                    ),
                )
            created = await client.communicate(
                "order-service",
                "user-service",
                CommunicationRequest(
                    type="command",
                    method="POST",
                    endpoint="/users",
                    payload={"name": "Ada"},
                    pattern="rest",
                ),
            )
            assert created.status == 201
            with pytest.raises(TransportError):
                await client.communicate(
                    "order-service",
                    "user-service",
                    CommunicationRequest(endpoint=f"/users/{MISSING}"),
                )

    path = folder / "order-service-user-service.json"
    pact = read_pact(path)
    assert (pact.consumer, pact.provider) == ("order-service", "user-service")
    assert [i.identity for i in pact.interactions] == [
        "GET /users/{id} 200",
        "GET /users/{id} 404",
        "POST /users 201",
    ]
    found = pact.find("GET /users/{id} 200")
    assert isinstance(found, HttpInteraction)
    assert found.provider_states == [ProviderState("a user exists")]
    assert found.request.query == {"expand": ["orders"]}
    # Credentials, request ids and trace headers are not part of a contract.
    assert found.request.headers == {"Accept": ["application/json"]}
    assert found.request.matching_rules["path"][""].matchers == (
        Matcher("regex", {"regex": "^/users/[^/]+$"}),
    )
    body_rules = found.response.matching_rules["body"]
    assert body_rules["$.id"].matchers == (Matcher("regex", {"regex": UUID_REGEX}),)
    assert body_rules["$.created_at"].matchers == (
        Matcher("datetime", {"format": "yyyy-MM-dd'T'HH:mm:ss.SSS'Z'"}),
    )
    assert body_rules["$.orders[*].order_id"].matchers == (Matcher("type"),)
    assert "$.name" not in body_rules
    assert found.response.body is not None and found.response.body.content["name"] == "Ada"

    post = pact.find("POST /users 201")
    assert isinstance(post, HttpInteraction)
    assert post.provider_states == []  # left for a person to name
    assert post.request.body is not None and post.request.body.content == {"name": "Ada"}
    assert post.request.matching_rules["header"]["Idempotency-Key"].matchers == (Matcher("type"),)

    missing = pact.find("GET /users/{id} 404")
    assert isinstance(missing, HttpInteraction)
    assert missing.response.body is not None
    assert missing.response.body.content == {"title": "no such user", "status": 404}
    assert missing.response.headers == {"Content-Type": ["application/problem+json; charset=utf-8"]}

    # Pact's own loader takes the recorded file.
    model = pact_ffi.lib.pactffi_parse_pact_json(path.read_bytes())
    assert model != pact_ffi.ffi.NULL
    pact_ffi.lib.pactffi_pact_model_delete(model)


async def test_a_second_recorder_adds_only_what_the_file_lacks(tmp_path: Path) -> None:
    """Two processes recording into one folder: the second keeps the first's interactions
    and adds none twice."""
    folder = tmp_path / "recorded"
    async with serve(user_service()) as url:
        registry = ServiceRegistry(
            [
                service("user-service", "microservice", url),
                service("order-service", "microservice", url),
            ]
        )
        for payload in (None, {"name": "Bo"}):
            async with HybridClient(registry, recorder=ContractRecorder(folder)) as client:
                await client.communicate(
                    "order-service", "user-service", CommunicationRequest(endpoint="/users/5")
                )
                if payload is not None:
                    await client.communicate(
                        "order-service",
                        "user-service",
                        CommunicationRequest(
                            type="command",
                            method="POST",
                            endpoint="/users",
                            payload=payload,
                            pattern="rest",
                        ),
                    )
    pact = read_pact(folder / "order-service-user-service.json")
    assert [i.identity for i in pact.interactions] == ["GET /users/{id} 200", "POST /users 201"]


async def test_recording_keeps_only_the_services_asked_for(tmp_path: Path) -> None:
    folder = tmp_path / "recorded"
    async with serve(user_service()) as url:
        registry = ServiceRegistry(
            [
                service("user-service", "microservice", url),
                service("order-service", "microservice", url),
            ]
        )
        recorder = ContractRecorder(folder, services=frozenset({"billing"}))
        async with HybridClient(registry, recorder=recorder) as client:
            await client.communicate(
                "order-service", "user-service", CommunicationRequest(endpoint="/users/5")
            )
    assert not (folder / "order-service-user-service.json").exists()


async def test_pacts_verifier_accepts_a_recording_against_its_provider(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The recorded matchers are ones Pact's own verifier applies: another run of the same
    provider (new UUIDs, new timestamps) passes."""
    monkeypatch.setenv("PACT_DO_NOT_TRACK", "true")
    folder = tmp_path / "recorded"
    async with serve(user_service()) as url:
        registry = ServiceRegistry(
            [
                service("user-service", "microservice", url),
                service("order-service", "microservice", url),
            ]
        )
        async with HybridClient(registry, recorder=ContractRecorder(folder)) as client:
            await client.communicate(
                "order-service",
                "user-service",
                CommunicationRequest(endpoint=f"/users/{uuid.uuid4()}"),
            )
            await client.communicate(
                "order-service",
                "user-service",
                CommunicationRequest(
                    type="command",
                    method="POST",
                    endpoint="/users",
                    payload={"name": "Ada"},
                    pattern="rest",
                ),
            )

        def verify() -> dict[str, object]:
            verifier = (
                Verifier("user-service", host="127.0.0.1")
                .add_transport(url=url)
                .add_source(str(folder))
            )
            verifier.verify()
            return verifier.results

        results = await asyncio.to_thread(verify)
    outcomes = {r["description"]: r["result"] for r in results["interactionResults"]}  # type: ignore[index]
    assert outcomes == {"GET /users/{id} returns 200": "OK", "POST /users returns 201": "OK"}
