"""GET /ws/events: subscriptions, per-user rooms, tokens, and slow clients."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from tests.integration.api.helpers import (
    WAIT,
    Served,
    connect,
    next_json,
    next_of_type,
    request,
)

from hybridmesh.api.websocket import (
    TOKENS_NOT_CONFIGURED,
    TOKENS_SETTING,
    TRY_AGAIN_LATER,
    UNAUTHORIZED,
    Principal,
    StaticTokens,
    users_named_by,
)
from hybridmesh.events.envelope import CloudEvent


def event(type: str = "user.registered", data: Any = None, **options: Any) -> CloudEvent:
    # One partition key throughout, so the hub sees a test's events in publishing order.
    return CloudEvent.create(type, "/tests", data, partition_key="k", **options)


async def test_a_subscriber_receives_matching_events(served: Served) -> None:
    ws = await connect(served)
    subscribe = {"action": "subscribe", "patterns": ["user.*"], "id": 1}
    reply = await request(ws, subscribe, "subscribed")
    assert reply == {"type": "subscribed", "patterns": ["user.*"], "id": 1}
    published = await served.bus.publish(event(data={"name": "Ada"}))
    message = await next_of_type(ws, "event")
    assert message["event"]["id"] == published.id
    assert message["event"]["type"] == "user.registered"
    assert message["event"]["data"] == {"name": "Ada"}
    assert message["event"]["specversion"] == "1.0"
    await ws.close()


async def test_events_not_matching_any_pattern_are_not_sent(served: Served) -> None:
    ws = await connect(served)
    await request(ws, {"action": "subscribe", "patterns": ["order.*"]}, "subscribed")
    await served.bus.publish(event("user.registered"))
    expected = await served.bus.publish(event("order.created"))
    message = await next_of_type(ws, "event")
    assert message["event"]["id"] == expected.id
    await ws.close()


async def test_unsubscribe_stops_delivery(served: Served) -> None:
    ws = await connect(served)
    await request(ws, {"action": "subscribe", "patterns": ["user.*", "order.>"]}, "subscribed")
    reply = await request(ws, {"action": "unsubscribe", "patterns": ["user.*"]}, "unsubscribed")
    assert reply["patterns"] == ["order.>"]
    await served.bus.publish(event("user.registered"))
    expected = await served.bus.publish(event("order.payment.failed"))
    assert (await next_of_type(ws, "event"))["event"]["id"] == expected.id
    await ws.close()


async def test_an_event_for_a_user_reaches_only_that_users_room(served: Served) -> None:
    ada = await connect(served, token="42")
    bob = await connect(served, token="43")
    assert await request(ada, {"action": "join", "room": "user:42"}, "joined") == {
        "type": "joined",
        "room": "user:42",
    }
    await request(bob, {"action": "join", "room": "user:43"}, "joined")
    for_ada = await served.bus.publish(event("order.shipped", {"user_id": 42}))
    for_bob = await served.bus.publish(event("order.shipped", {"userId": "43"}))
    by_subject = await served.bus.publish(event("profile.updated", subject="user:42"))
    assert (await next_of_type(ada, "event"))["event"]["id"] == for_ada.id
    assert (await next_of_type(ada, "event"))["event"]["id"] == by_subject.id
    assert (await next_of_type(bob, "event"))["event"]["id"] == for_bob.id
    await ada.close()
    await bob.close()


async def test_a_client_both_subscribed_and_in_the_room_gets_an_event_once(served: Served) -> None:
    ws = await connect(served, token="42")
    await request(ws, {"action": "join", "room": "user:42"}, "joined")
    await request(ws, {"action": "subscribe", "patterns": ["order.*"]}, "subscribed")
    await served.bus.publish(event("order.shipped", {"user_id": 42}))
    await next_of_type(ws, "event")
    assert await request(ws, {"action": "ping"}, "pong") == {"type": "pong"}
    await ws.close()


async def test_joining_another_users_room_is_refused_and_the_socket_stays_open(
    served: Served,
) -> None:
    ws = await connect(served, token="42")
    refusal = await request(ws, {"action": "join", "room": "user:43"}, "error")
    assert "not allowed" in refusal["message"]
    assert await request(ws, {"action": "ping"}, "pong") == {"type": "pong"}
    await ws.close()


@pytest.mark.parametrize(
    ("message", "complaint"),
    [
        ("not json", "not valid JSON"),
        ("[1, 2]", "JSON object"),
        ('{"action": "dance"}', "unknown action"),
        ('{"action": "subscribe"}', "patterns"),
        ('{"action": "subscribe", "patterns": ["user.>.x"]}', "'>'"),
        ('{"action": "join"}', "room"),
        (
            '{"action": "ping", "id": 18446744073709551616}',
            "id: must be a whole number within 64 bits (-9223372036854775808 to "
            "18446744073709551615)",
        ),
    ],
)
async def test_invalid_messages_get_an_error_and_do_not_close_the_socket(
    served: Served, message: str, complaint: str
) -> None:
    ws = await connect(served)
    await ws.send_str(message)
    error = await next_of_type(ws, "error")
    assert complaint in error["message"]
    assert await request(ws, {"action": "ping"}, "pong") == {"type": "pong"}
    await ws.close()


async def test_the_token_may_come_as_a_bearer_header(served: Served) -> None:
    ws = await served.http.ws_connect(served.ws_url, headers={"Authorization": "Bearer 42"})
    assert await next_json(ws) == {"type": "welcome", "user_id": "42"}
    await ws.close()


async def test_a_missing_token_is_closed_with_4401(served: Served) -> None:
    ws = await connect(served, token=None)
    message = await ws.receive(timeout=WAIT)
    assert message.type is aiohttp.WSMsgType.CLOSE
    assert ws.close_code == UNAUTHORIZED == 4401
    assert served.hub.stats.rejected == 1


async def test_an_unknown_token_is_closed_with_4401(serve: Callable[..., Any]) -> None:
    tokens = StaticTokens({"s3cr3t": Principal(user_id="42", rooms=frozenset({"user:7"}))})
    async with serve(authenticate=tokens) as served:
        refused = await served.http.ws_connect(served.ws_url + "?token=guess")
        await refused.receive(timeout=WAIT)
        assert refused.close_code == 4401
        ws = await connect(served, token="s3cr3t")
        await request(ws, {"action": "join", "room": "user:7"}, "joined")
        await request(ws, {"action": "join", "room": "user:42"}, "joined")
        await ws.close()


async def test_without_tokens_configured_every_connection_gets_401_naming_the_setting(
    serve: Callable[..., Any],
) -> None:
    async with serve(authenticate=None) as served:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await served.http.ws_connect(served.ws_url + "?token=anything")
        assert refused.value.status == 401
        handshake = {
            "Connection": "Upgrade",
            "Upgrade": "websocket",
            "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        }
        async with served.http.get(served.ws_url, headers=handshake) as answer:
            assert answer.status == 401
            assert answer.content_type == "application/problem+json"
            assert answer.headers["WWW-Authenticate"].startswith("Bearer")
            problem = await answer.json(content_type=None)
        assert problem["type"] == TOKENS_NOT_CONFIGURED
        assert problem["setting"] == TOKENS_SETTING == "HYBRIDMESH_WS_TOKENS"
        assert "HYBRIDMESH_WS_TOKENS" in problem["detail"]
        assert "--token" in problem["detail"]
        assert served.hub.stats.rejected == 2
        assert served.hub.clients == 0


async def test_a_slow_client_is_disconnected_with_1013_and_others_are_still_served(
    serve: Callable[..., Any],
) -> None:
    async with serve(queue_limit=5) as served:
        slow = await connect(served, token="slow")
        await request(slow, {"action": "subscribe", "patterns": ["bulk.*"]}, "subscribed")
        fast = await connect(served, token="fast")
        await request(fast, {"action": "subscribe", "patterns": ["bulk.*"]}, "subscribed")
        seen: list[str] = []
        arrived = asyncio.Event()

        async def read_fast() -> None:
            async for message in fast:
                seen.append(message.json()["event"]["id"])
                arrived.set()

        reader = asyncio.create_task(read_fast())
        payload = "x" * 256 * 1024  # large, so that the slow client's socket fills quickly
        published: list[str] = []
        async with asyncio.timeout(30):
            while served.hub.stats.slow_disconnects == 0:
                published.append((await served.bus.publish(event("bulk.item", payload))).id)
                await asyncio.sleep(0.01)
        assert served.hub.stats.slow_disconnects == 1

        # The slow client, reading at last, finds what was sent before the close, then 1013.
        async with asyncio.timeout(WAIT):
            while (await slow.receive()).type is aiohttp.WSMsgType.TEXT:
                pass
        assert slow.close_code == TRY_AGAIN_LATER == 1013

        # The server goes on serving the others.
        last = await served.bus.publish(event("bulk.item", "after"))
        published.append(last.id)
        async with asyncio.timeout(WAIT):
            while last.id not in seen:
                arrived.clear()
                await arrived.wait()
        assert seen == published
        async with served.http.get(served.url + "/metrics") as response:
            assert "hybridmesh_ws_slow_disconnects_total 1.0" in await response.text()
        await fast.close()
        reader.cancel()


async def test_closing_the_hub_closes_clients_with_1001(served: Served) -> None:
    ws = await connect(served)
    await served.hub.close()
    message = await ws.receive(timeout=WAIT)
    assert message.type is aiohttp.WSMsgType.CLOSE
    assert ws.close_code == 1001
    late = await served.http.ws_connect(served.ws_url + "?token=42")
    await late.receive(timeout=WAIT)
    assert late.close_code == 1001


@pytest.mark.parametrize(
    ("subject", "data", "users"),
    [
        ("user:42", None, {"42"}),
        ("users/42/orders/7", None, {"42"}),
        ("order-7", {"user_id": 42, "userId": "43"}, {"42", "43"}),
        (None, {"user_id": True}, set()),
        (None, ["user_id", 42], set()),
        ("user:", {"user_id": ""}, set()),
    ],
)
def test_the_users_an_event_names(subject: str | None, data: Any, users: set[str]) -> None:
    named = CloudEvent.create("x.y", "/tests", data, subject=subject)
    assert users_named_by(named) == users


async def test_a_principal_subscribes_only_within_its_allowed_patterns(
    serve: Callable[..., Any],
) -> None:
    tokens = StaticTokens({"ops": Principal(user_id="7", patterns=frozenset({"user.*"}))})
    async with serve(authenticate=tokens) as served:
        ws = await connect(served, token="ops")
        await request(ws, {"action": "subscribe", "patterns": ["user.*"]}, "subscribed")
        await request(ws, {"action": "subscribe", "patterns": ["user.registered"]}, "subscribed")
        for too_wide in (">", "order.*", "user.>"):
            await ws.send_json({"action": "subscribe", "patterns": [too_wide]})
            refused = await next_of_type(ws, "error")
            assert "not allowed" in refused["message"] and too_wide in refused["message"]
        published = await served.bus.publish(event("user.registered"))
        message = await next_of_type(ws, "event")
        assert message["event"]["id"] == published.id
        await ws.close()
