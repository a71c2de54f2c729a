"""Recording the gateway's proxied exchanges and the events a consumer group handles."""

from __future__ import annotations

import uuid
from pathlib import Path

import aiohttp
from tests.integration.contracts.user_service import user_service
from tests.integration.loopback import serve

from hybridmesh.contracts.pact import (
    HttpInteraction,
    Matcher,
    MessageInteraction,
    ProviderState,
    read_pact,
    read_pacts,
)
from hybridmesh.contracts.recorder import ContractRecorder
from hybridmesh.contracts.rules import UUID_REGEX
from hybridmesh.core.settings import Settings
from hybridmesh.events import CloudEvent, open_bus
from hybridmesh.gateway.config import parse_routes
from hybridmesh.gateway.server import Gateway, GatewaySettings
from hybridmesh.gateway.state import GatewayState
from hybridmesh.store import open_store

ROUTES = """
routes:
  - name: users
    match: {{path: {{prefix: /api/}}}}
    strip_prefix: true
    backends:
      - {{name: user-service, url: "{url}", weight: 100}}
"""


async def test_the_gateways_exchanges_are_recorded_as_the_backend_saw_them(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "recorded"
    async with serve(user_service()) as url:
        store = await open_store(f"sqlite:///{tmp_path / 'mesh.db'}")
        await store.upgrade()
        gateway = Gateway(GatewaySettings(access_log=False), recorder=ContractRecorder(folder))
        try:
            state = GatewayState(store)
            await state.apply(parse_routes(ROUTES.format(url=url), "routes.yaml"))
            gateway.use(await state.snapshot())
            host, port = await gateway.start("127.0.0.1", 0)
            base = f"http://{host}:{port}/api"
            async with aiohttp.ClientSession() as http:
                for _ in range(10):
                    async with http.get(
                        f"{base}/users/{uuid.uuid4()}",
                        headers={"X-Source-Service": "web-shop", "X-Provider-State": "a user"},
                    ) as answer:
                        assert answer.status == 200
                async with http.post(
                    f"{base}/users", json={"name": "Ada"}, headers={"X-Source-Service": "web-shop"}
                ) as answer:
                    assert answer.status == 201
                    created = await answer.json()
                    assert created["name"] == "Ada"  # the client still gets its answer
        finally:
            await gateway.close(grace=1)
            await store.close()

    pact = read_pact(folder / "web-shop-user-service.json")
    assert [i.identity for i in pact.interactions] == ["GET /users/{id} 200", "POST /users 201"]
    get = pact.find("GET /users/{id} 200")
    assert isinstance(get, HttpInteraction)
    assert get.request.path.startswith("/users/")  # the prefix stripped, as the backend saw it
    assert get.provider_states == [ProviderState("a user")]
    rules = get.response.matching_rules["body"]
    assert rules["$.id"].matchers == (Matcher("regex", {"regex": UUID_REGEX}),)
    assert rules["$.created_at"].matchers[0].match == "datetime"
    post = pact.find("POST /users 201")
    assert isinstance(post, HttpInteraction)
    assert post.request.body is not None and post.request.body.content == {"name": "Ada"}
    assert post.response.matching_rules["body"]["$.id"].matchers[0].match == "regex"


async def test_each_consumer_group_gets_message_interactions_per_event_type(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "recorded"
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'mesh.db'}", contracts_record=str(folder)
    )
    bus = await open_bus(settings)
    handled: list[str] = []

    async def handle(event: CloudEvent) -> None:
        handled.append(event.type)

    bus.subscribe("user.*", handle, group="notification-service")
    bus.subscribe("user.created", handle, group="analytics-reporting")
    try:
        for n in range(5):
            await bus.publish(
                CloudEvent.create(
                    "user.created",
                    "/user-service",
                    {"user_id": str(uuid.uuid4()), "email": "ada@example.com", "n": n},
                )
            )
        await bus.publish(CloudEvent.create("user.deleted", "/user-service", {"user_id": "u-1"}))
        await bus.drain()
    finally:
        await bus.close()
    assert len(handled) == 11

    files = {p.file_name: p for p in read_pacts(folder)}
    assert sorted(files) == [
        "analytics-reporting-user-service.json",
        "notification-service-user-service.json",
    ]
    notifications = files["notification-service-user-service.json"]
    assert [i.identity for i in notifications.interactions] == [
        "event user.created",
        "event user.deleted",
    ]
    created = notifications.find("event user.created")
    assert isinstance(created, MessageInteraction)
    assert created.description == "a user.created event from user-service"
    assert created.contents is not None
    assert created.contents.content["email"] == "ada@example.com"
    assert created.contents.content_type == "application/json"
    assert created.metadata["type"] == "user.created"
    assert created.metadata["source"] == "/user-service"
    assert created.matching_rules["body"]["$.user_id"].matchers[0].match == "regex"
    assert created.matching_rules["metadata"]["id"].matchers == (Matcher("type"),)
    assert created.matching_rules["metadata"]["time"].matchers[0].match == "datetime"
    analytics = files["analytics-reporting-user-service.json"]
    assert [i.identity for i in analytics.interactions] == ["event user.created"]
