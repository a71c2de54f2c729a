"""POST /events: the three CloudEvents HTTP modes in, problem details for bad input."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from cloudevents.core.bindings import http as ce_http
from cloudevents.core.v1.event import CloudEvent as SdkEvent
from cloudevents.v1.conversion import to_binary as sdk1_to_binary
from cloudevents.v1.conversion import to_structured as sdk1_to_structured
from cloudevents.v1.http import CloudEvent as Sdk1Event
from tests.integration.api.helpers import Served

from hybridmesh.events.envelope import (
    BATCH_CONTENT_TYPE,
    STRUCTURED_CONTENT_TYPE,
    CloudEvent,
    to_batch,
)

PROBLEM = "application/problem+json"


def registered(user_id: str = "42", **options: Any) -> CloudEvent:
    return CloudEvent.create("user.registered", "/user-service", {"user_id": user_id}, **options)


async def post(
    served: Served, body: bytes | Any, headers: dict[str, str]
) -> tuple[aiohttp.ClientResponse, dict[str, Any]]:
    async with served.http.post(served.url + "/events", data=body, headers=headers) as response:
        return response, await response.json(content_type=None)


def fields(problem: dict[str, Any]) -> list[str]:
    return [error["field"] for error in problem["errors"]]


async def test_structured_mode_is_published_and_reaches_a_bus_subscriber(served: Served) -> None:
    event = registered()
    response, body = await post(served, event.to_json(), {"Content-Type": STRUCTURED_CONTENT_TYPE})
    assert response.status == 202
    assert body == {"accepted": 1, "ids": [event.id]}
    (received,) = await served.sink.wait_for(1)
    assert (received.id, received.type, received.data) == (event.id, event.type, event.data)


async def test_batch_mode_publishes_every_event(served: Served) -> None:
    events = [registered("1"), registered("2"), registered("3")]
    response, body = await post(
        served, to_batch(events), {"Content-Type": BATCH_CONTENT_TYPE + "; charset=utf-8"}
    )
    assert response.status == 202
    assert body == {"accepted": 3, "ids": [e.id for e in events]}
    received = await served.sink.wait_for(3)
    assert {e.id for e in received} == {e.id for e in events}


async def test_binary_mode_is_published_with_its_data(served: Served) -> None:
    event = registered(subject="user:42", partition_key="42")
    headers, body = event.to_binary()
    response, answer = await post(served, body, headers)
    assert response.status == 202
    assert answer["ids"] == [event.id]
    (received,) = await served.sink.wait_for(1)
    assert received.data == {"user_id": "42"}
    assert received.subject == "user:42"
    assert received.partition_key == "42"


async def test_a_structured_event_without_type_is_400_naming_type(served: Served) -> None:
    document = registered().to_dict()
    del document["type"]
    response, problem = await post(
        served, json.dumps(document), {"Content-Type": STRUCTURED_CONTENT_TYPE}
    )
    assert response.status == 400
    assert response.content_type == PROBLEM
    assert problem["status"] == 400
    assert problem["title"] == "Invalid CloudEvent"
    assert problem["type"].startswith("urn:hybridmesh:problem:")
    assert problem["detail"]
    assert fields(problem) == ["type"]
    assert "missing" in problem["errors"][0]["message"]


async def test_a_wildcard_type_is_400_and_its_message_says_error_once(served: Served) -> None:
    document = registered().to_dict()
    document["type"] = "user.*"
    response, problem = await post(
        served, json.dumps(document), {"Content-Type": STRUCTURED_CONTENT_TYPE}
    )
    assert response.status == 400
    assert fields(problem) == ["type"]
    message = problem["errors"][0]["message"]
    assert "dot-separated tokens" in message
    assert "error" not in message and problem["detail"].count("error") <= 1


async def test_a_batch_with_a_bad_second_event_is_refused_whole_naming_its_index(
    served: Served,
) -> None:
    good = registered().to_dict()
    bad = registered("7").to_dict()
    del bad["type"]
    response, problem = await post(
        served, json.dumps([good, bad]), {"Content-Type": BATCH_CONTENT_TYPE}
    )
    assert response.status == 400
    assert fields(problem) == ["[1].type"]
    published = served.metrics.sample("hybridmesh_events_published_total", type="user.registered")
    assert published is None


async def test_a_body_that_is_not_json_is_400(served: Served) -> None:
    response, problem = await post(served, b"{not json", {"Content-Type": STRUCTURED_CONTENT_TYPE})
    assert response.status == 400
    assert response.content_type == PROBLEM
    assert fields(problem) == ["body"]
    assert "JSON" in problem["errors"][0]["message"]


async def test_an_unknown_content_type_without_ce_headers_is_400_naming_content_type(
    served: Served,
) -> None:
    response, problem = await post(served, b"hello", {"Content-Type": "text/plain"})
    assert response.status == 400
    assert fields(problem) == ["content-type"]


async def test_a_binary_event_with_a_bad_header_names_the_attribute(served: Served) -> None:
    headers, body = registered().to_binary()
    headers["ce-time"] = "yesterday"
    response, problem = await post(served, body, headers)
    assert response.status == 400
    assert fields(problem) == ["time"]


async def test_a_body_over_the_limit_is_413(served: Served) -> None:
    big = registered().to_dict() | {"data": "x" * (1024 * 1024)}
    body = io.BytesIO(json.dumps(big).encode())  # aiohttp warns about large raw bytes
    response, problem = await post(served, body, {"Content-Type": STRUCTURED_CONTENT_TYPE})
    assert response.status == 413
    assert response.content_type == PROBLEM
    assert problem["status"] == 413
    assert "1048576 bytes" in problem["detail"]


async def test_a_chunked_body_over_the_limit_is_413(served: Served) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(20):
            yield b" " * (64 * 1024)

    response, problem = await post(served, chunks(), {"Content-Type": STRUCTURED_CONTENT_TYPE})
    assert response.status == 413
    assert problem["title"] == "Request Entity Too Large"


async def test_the_incoming_traceparent_is_continued_into_the_event(served: Served) -> None:
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    response, _ = await post(
        served,
        registered().to_json(),
        {
            "Content-Type": STRUCTURED_CONTENT_TYPE,
            "traceparent": f"00-{trace_id}-00f067aa0ba902b7-01",
        },
    )
    assert response.status == 202
    (received,) = await served.sink.wait_for(1)
    assert received.traceparent is not None
    assert received.traceparent.split("-")[1] == trace_id


async def test_events_made_with_the_official_sdk_are_accepted(served: Served) -> None:
    legacy = Sdk1Event({"type": "user.registered", "source": "/sdk"}, {"user_id": 1})
    modern = SdkEvent(
        attributes={
            "type": "user.registered",
            "source": "/sdk-core",
            "datacontenttype": "application/json",
        },
        data={"user_id": 2},
    )
    requests: list[tuple[dict[str, str], bytes]] = [
        sdk1_to_structured(legacy),
        sdk1_to_binary(legacy),
    ]
    for message in (ce_http.to_structured_event(modern), ce_http.to_binary_event(modern)):
        requests.append((message.headers, message.body))
    for headers, body in requests:
        response, answer = await post(served, body, headers)
        assert response.status == 202, answer
    # structured and binary of one SDK event share (source, id): the bus keeps one of each
    received = await served.sink.wait_for(2)
    assert {(e.source, e.id, e.data["user_id"]) for e in received} == {
        ("/sdk", legacy["id"], 1),
        ("/sdk-core", modern.get_id(), 2),
    }


async def test_an_event_with_a_10000_character_type_is_400_naming_type(served: Served) -> None:
    document = {**registered().to_dict(), "type": "a" * 10_000}
    response, problem = await post(
        served, json.dumps(document), {"Content-Type": STRUCTURED_CONTENT_TYPE}
    )
    assert response.status == 400
    assert response.content_type == PROBLEM
    assert problem["errors"] == [
        {"field": "type", "message": "must be at most 128 characters (has 10000)"}
    ]
    good = registered()
    response, _ = await post(served, good.to_json(), {"Content-Type": STRUCTURED_CONTENT_TYPE})
    assert response.status == 202


async def test_an_id_that_is_a_number_is_400_saying_it_must_be_a_string(served: Served) -> None:
    document = {**registered().to_dict(), "id": 5, "specversion": 1.0}
    response, problem = await post(
        served, json.dumps(document), {"Content-Type": STRUCTURED_CONTENT_TYPE}
    )
    assert response.status == 400
    assert {e["field"]: e["message"] for e in problem["errors"]} == {
        "id": "must be a string, not a number",
        "specversion": "must be a string, not a number",
    }


async def test_a_batch_holding_one_event_twice_is_refused_and_nothing_is_published(
    served: Served,
) -> None:
    first, second = registered("1"), registered("2")
    response, problem = await post(
        served, to_batch([first, second, first]), {"Content-Type": BATCH_CONTENT_TYPE}
    )
    assert response.status == 400
    assert fields(problem) == ["[2].id"]
    response, body = await post(
        served, to_batch([first, second]), {"Content-Type": BATCH_CONTENT_TYPE}
    )
    assert (response.status, body["accepted"]) == (202, 2)
    assert {e.id for e in await served.sink.wait_for(2)} == {first.id, second.id}


async def test_an_event_sent_again_is_accepted_again_and_stored_once(served: Served) -> None:
    event, later = registered("1"), registered("2")
    for _ in range(2):
        response, body = await post(
            served, event.to_json(), {"Content-Type": STRUCTURED_CONTENT_TYPE}
        )
        assert (response.status, body) == (202, {"accepted": 1, "ids": [event.id]})
    await post(served, later.to_json(), {"Content-Type": STRUCTURED_CONTENT_TYPE})
    received = await served.sink.wait_for(2)
    assert [e.id for e in received] == [event.id, later.id]


WIDE = 18446744073709551616  # 2**64: orjson alone would read it as a float, digits lost
WIDE_MESSAGE = (
    "must be a whole number within 64 bits (-9223372036854775808 to 18446744073709551615)"
)


def _binary_with_wide_data() -> tuple[bytes, dict[str, str]]:
    headers, _ = registered().to_binary()
    return f'{{"user_id": "42", "score": {WIDE}}}'.encode(), headers


@pytest.mark.parametrize(
    ("mode", "field"),
    [("structured", "data.score"), ("batch", "[1].data.score"), ("binary", "data.score")],
)
async def test_a_whole_number_beyond_64_bits_is_400_naming_its_field(
    served: Served, mode: str, field: str
) -> None:
    document = registered().to_dict()
    document["data"] = {"user_id": "42", "score": WIDE}
    if mode == "structured":
        body, headers = json.dumps(document).encode(), {"Content-Type": STRUCTURED_CONTENT_TYPE}
    elif mode == "batch":
        first = registered("1").to_dict()
        body, headers = json.dumps([first, document]).encode(), {"Content-Type": BATCH_CONTENT_TYPE}
    else:
        body, headers = _binary_with_wide_data()

    response, problem = await post(served, body, headers)

    assert response.status == 400
    assert response.content_type == PROBLEM
    assert problem["errors"] == [{"field": field, "message": WIDE_MESSAGE}]
    published = served.metrics.sample("hybridmesh_events_published_total", type="user.registered")
    assert published is None


async def test_whole_numbers_at_the_ends_of_64_bits_arrive_exactly(served: Served) -> None:
    data = {"user_id": "42", "top": 2**64 - 1, "bottom": -(2**63)}
    event = CloudEvent.create("user.registered", "/user-service", data)

    response, _ = await post(served, event.to_json(), {"Content-Type": STRUCTURED_CONTENT_TYPE})

    assert response.status == 202
    (received,) = await served.sink.wait_for(1)
    assert received.data == data
