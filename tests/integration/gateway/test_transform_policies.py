"""request_transformer and response_transformer through a real gateway: each operation
(remove, rename, replace, add, append, in Kong's order) on headers, query strings, JSON
bodies and the path as the backend gets them, and on the answer's headers and JSON as the
client gets it."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from tests.integration.gateway.policy_harness import Upstream, gateways
from tests.waiting import HANG

from hybridmesh.core.errors import ValidationError
from hybridmesh.gateway.config import parse_routes


def routes(upstream: Upstream, policies: str, match: str = "{path: {prefix: /orders}}") -> str:
    return f"""
routes:
  - name: orders
    match: {match}
    backends: [{{name: legacy, url: "{upstream.url}", weight: 100}}]
    policies:
{policies}
"""


async def test_request_headers_in_kongs_order(tmp_path: Path) -> None:
    policy = """
      request_transformer:
        remove: {headers: [x-drop, x-override]}
        rename: {headers: {x-old: x-new}}
        replace: {headers: {x-env: prod, x-absent: never}}
        add: {headers: {x-team: erp, x-env: ignored, x-override: gateway, x-version: 2}}
        append: {headers: {x-tag: gw}}
"""
    async with (
        Upstream().running() as upstream,
        gateways(tmp_path, routes(upstream, policy)) as gw,
        aiohttp.ClientSession() as http,
    ):
        sent = [
            ("X-Drop", "1"),
            ("X-Old", "a"),
            ("X-Old", "b"),
            ("X-New", "stale"),
            ("X-Env", "dev"),
            ("X-Tag", "client"),
            ("X-Override", "client"),
        ]
        async with http.get(gw.url + "/orders", headers=sent) as answer:
            assert answer.status == 200
    [seen] = upstream.seen
    headers = seen.headers
    assert "X-Drop" not in headers
    assert "X-Old" not in headers
    assert headers.getall("X-New") == ["a", "b"]  # renamed, replacing what stood there
    assert headers.getall("X-Env") == ["prod"]  # replaced; add skips a present header
    assert "X-Absent" not in headers  # replace only changes present headers
    assert headers["X-Team"] == "erp"
    assert headers["X-Version"] == "2"
    assert headers.getall("X-Override") == ["gateway"]  # remove, then add
    assert headers.getall("X-Tag") == ["client", "gw"]


async def test_query_string_keeps_what_it_does_not_touch(tmp_path: Path) -> None:
    policy = """
      request_transformer:
        remove: {querystring: [drop]}
        rename: {querystring: {old: new}}
        replace: {querystring: {v: "3", absent: never}}
        add: {querystring: {lang: en, keep: ignored}}
        append: {querystring: {tag: "g w"}}
"""
    async with (
        Upstream().running() as upstream,
        gateways(tmp_path, routes(upstream, policy)) as gw,
        aiohttp.ClientSession() as http,
    ):
        query = "keep=a%20b&drop=1&old=x&v=1&new=stale&v=2&tag=c"
        async with http.get(gw.url + "/orders?" + query) as answer:
            assert answer.status == 200
    [seen] = upstream.seen
    assert seen.query == "keep=a%20b&new=x&v=3&tag=c&lang=en&tag=g+w"


async def test_json_body_fields_and_its_new_length(tmp_path: Path) -> None:
    policy = """
      request_transformer:
        remove: {body: [password]}
        rename: {body: {fname: first_name}}
        replace: {body: {source: gateway, absent: never}}
        add: {body: {channel: web, keep: 2, meta: {via: [gw]}}}
        append: {body: {tags: gw, meta: {more: true}}}
"""
    async with (
        Upstream().running() as upstream,
        gateways(tmp_path, routes(upstream, policy)) as gw,
        aiohttp.ClientSession() as http,
    ):
        sent = {"password": "x", "fname": "Ada", "source": "client", "tags": "a", "keep": 1}
        async with http.post(gw.url + "/orders", json=sent) as answer:
            assert answer.status == 200
        # The same operations leave a body that is not a JSON object alone.
        async with http.post(gw.url + "/orders", data=b"password=x&fname=Ada") as answer:
            assert answer.status == 200
        async with http.post(
            gw.url + "/orders", data=b"{not json", headers={"Content-Type": "application/json"}
        ) as answer:
            assert answer.status == 200
    changed, form, broken = upstream.seen
    assert json.loads(changed.body) == {
        "first_name": "Ada",
        "source": "gateway",
        "tags": ["a", "gw"],
        "keep": 1,
        "channel": "web",
        "meta": [{"via": ["gw"]}, {"more": True}],
    }
    assert changed.content_length == len(changed.body)
    assert form.body == b"password=x&fname=Ada"
    assert broken.body == b"{not json"


async def test_uri_replaced_with_the_route_regex_captures(tmp_path: Path) -> None:
    policy = """
      request_transformer:
        replace: {uri: "/v2/orders/{id}/lines/{line}"}
"""
    match = r"{path: {regex: '/orders/(?P<id>\d+)/items/(?P<line>\d+)'}}"
    async with (
        Upstream().running() as upstream,
        gateways(tmp_path, routes(upstream, policy, match)) as gw,
        aiohttp.ClientSession() as http,
        http.get(gw.url + "/orders/17/items/3?expand=1") as answer,
    ):
        assert answer.status == 200
    [seen] = upstream.seen
    assert (seen.path, seen.query) == ("/v2/orders/17/lines/3", "expand=1")


async def _answer_with_headers(request: web.Request, body: bytes) -> web.StreamResponse:
    if request.path == "/orders/list":
        return web.json_response([1, 2])
    if request.path == "/orders/text":
        return web.Response(text="plain", headers={"X-Old": "a"})
    return web.json_response(
        {"internal_id": 5, "oldName": 1, "status": "x", "links": "/a", "keep": 1},
        headers={"X-Old": "a", "Cache-Control": "max-age=60", "Vary": "Origin"},
    )


async def test_answer_headers_and_json(tmp_path: Path) -> None:
    policy = """
      response_transformer:
        remove: {headers: [server], json: [internal_id]}
        rename: {headers: {x-old: x-new}, json: {oldName: new_name}}
        replace: {headers: {cache-control: no-store, x-absent: never}, json: {status: ok}}
        add: {headers: {x-served-by: gateway}, json: {version: 2, keep: 2}}
        append: {headers: {vary: accept}, json: {links: /help}}
"""
    async with (
        Upstream(_answer_with_headers).running() as upstream,
        gateways(tmp_path, routes(upstream, policy)) as gw,
        aiohttp.ClientSession() as http,
    ):
        async with http.get(gw.url + "/orders") as answer:
            headers = answer.headers
            raw = await answer.read()
        async with http.get(gw.url + "/orders/list") as listed:
            listed_body = await listed.read()
        async with http.get(gw.url + "/orders/text") as text:
            text_body = await text.read()
            text_headers = text.headers
    assert "Server" not in headers
    assert "X-Old" not in headers and headers["X-New"] == "a"
    assert headers["Cache-Control"] == "no-store"
    assert "X-Absent" not in headers
    assert headers["X-Served-By"] == "gateway"
    assert headers.getall("Vary") == ["Origin", "accept"]
    assert int(headers["Content-Length"]) == len(raw)
    assert json.loads(raw) == {
        "new_name": 1,
        "status": "ok",
        "links": ["/a", "/help"],
        "keep": 1,
        "version": 2,
    }
    # JSON that is not an object, and answers that are not JSON, are left alone.
    assert json.loads(listed_body) == [1, 2]
    assert text_body == b"plain"
    assert text_headers["X-New"] == "a"


async def test_only_json_changes_hold_the_answer_back(tmp_path: Path) -> None:
    """A response transformer that changes headers only lets the answer stream: its head
    reaches the client while the backend is still sending the body."""
    release = asyncio.Event()

    async def slow(request: web.Request, body: bytes) -> web.StreamResponse:
        answer = web.StreamResponse(headers={"Content-Type": "application/json"})
        await answer.prepare(request)
        await answer.write(b'{"first": ')
        await release.wait()
        await answer.write(b"1}")
        await answer.write_eof()
        return answer

    policy = """
      response_transformer:
        add: {headers: {x-served-by: gateway}}
"""
    async with (
        Upstream(slow).running() as upstream,
        gateways(tmp_path, routes(upstream, policy)) as gw,
        aiohttp.ClientSession() as http,
    ):
        async with asyncio.timeout(HANG):
            async with http.get(gw.url + "/orders") as answer:
                assert answer.headers["X-Served-By"] == "gateway"
                release.set()
                assert json.loads(await answer.read()) == {"first": 1}


@pytest.mark.parametrize(
    ("policy", "field"),
    [
        ("request_transformer: {add: {headers: {Host: x}}}", "add.headers.Host"),
        ("request_transformer: {remove: {headers: [x-forwarded-for]}}", "remove.headers.0"),
        ('request_transformer: {replace: {headers: {x-a: "a\\r\\nb: c"}}}', "replace.headers"),
        ("request_transformer: {replace: {uri: no-slash}}", "replace.uri"),
        ("response_transformer: {add: {headers: {content-length: '1'}}}", "add.headers"),
        ("response_transformer: {add: {body: {a: 1}}}", "add.body"),
    ],
)
def test_settings_are_checked_with_file_line_and_field(policy: str, field: str) -> None:
    text = f"""
routes:
  - name: orders
    backends: [{{name: legacy, url: "http://127.0.0.1:9", weight: 100}}]
    policies:
      {policy}
"""
    with pytest.raises(ValidationError) as raised:
        parse_routes(text, "routes.yaml")
    [problem] = raised.value.problems
    kind = policy.partition(":")[0]
    assert problem.file == "routes.yaml" and problem.line == 6
    assert (problem.field or "").startswith(f"policies.{kind}.{field}")
    assert "must be a string" not in problem.message


def test_a_header_the_gateway_sets_is_named_as_such() -> None:
    text = """
routes:
  - name: orders
    backends: [{name: legacy, url: "http://127.0.0.1:9", weight: 100}]
    policies:
      request_transformer:
        add:
          headers: {X-Request-ID: mine}
"""
    with pytest.raises(ValidationError) as raised:
        parse_routes(text, "routes.yaml")
    [problem] = raised.value.problems
    assert problem.field == "policies.request_transformer.add.headers.X-Request-ID"
    assert problem.line == 8
    assert problem.message == "x-request-id is set by the gateway and cannot be transformed"
