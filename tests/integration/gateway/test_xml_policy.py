"""The xml policy through a real gateway in front of a legacy backend that speaks XML: JSON
requests reach it as XML, its XML answers reach the client as JSON, and what cannot be
converted is refused (a request before it reaches the backend; a hostile or broken answer,
an XML bomb among them, without hanging the gateway)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from tests.integration.gateway.mirror_rig import apply_routes, replica, upstream
from tests.integration.gateway.policy_harness import Upstream, gateways

from hybridmesh.core.errors import ValidationError
from hybridmesh.core.serialization import loads
from hybridmesh.gateway.config import parse_routes
from hybridmesh.gateway.state import GatewayState
from hybridmesh.store import open_store

ORDER_XML = (
    b'<?xml version="1.0" encoding="utf-8"?>'
    b'<order id="7"><status>accepted</status><lines><line>1</line><line>2</line></lines></order>'
)


async def legacy_erp(request: web.Request, body: bytes) -> web.StreamResponse:
    """The legacy backend: reads XML orders, answers XML (or what the path asks for)."""
    answers = {
        "/erp/bomb": BILLION_LAUGHS,
        "/erp/external": EXTERNAL_ENTITY,
        "/erp/broken": b"<order><status>accepted</order>",
        "/erp/big": b"<list>" + b"<item>x</item>" * 2000 + b"</list>",
    }
    if request.path in answers:
        return web.Response(body=answers[request.path], content_type="application/xml")
    if request.path == "/erp/json":
        return web.json_response({"already": "json"})
    if body:
        ElementTree.fromstring(body)  # the backend only takes well-formed XML
    return web.Response(body=ORDER_XML, content_type="text/xml", charset="utf-8")


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<lolz>&lol9;</lolz>"""

EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE order [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<order>&secret;</order>"""


def routes(upstream: Upstream, policies: str) -> str:
    return f"""
routes:
  - name: erp
    match: {{path: {{prefix: /erp}}}}
    backends: [{{name: legacy, url: "{upstream.url}", weight: 100}}]
    policies:
{policies}
"""


BOTH_WAYS = """
      xml: {request: json_to_xml, root: order, response: xml_to_json, max_bytes: 20000}
"""


async def test_json_in_xml_to_the_backend_and_json_back(tmp_path: Path) -> None:
    async with (
        Upstream(legacy_erp).running() as upstream,
        gateways(tmp_path, routes(upstream, BOTH_WAYS)) as gw,
        aiohttp.ClientSession() as http,
    ):
        sent = {"customer": "ada", "@priority": "high", "lines": [1, 2], "note": None}
        async with http.post(gw.url + "/erp/orders", json=sent) as answer:
            assert answer.status == 200
            assert answer.headers["Content-Type"] == "application/json"
            raw = await answer.read()
            assert int(answer.headers["Content-Length"]) == len(raw)
    [seen] = upstream.seen
    assert seen.headers["Content-Type"] == "application/xml; charset=utf-8"
    assert seen.content_length == len(seen.body)
    order = ElementTree.fromstring(seen.body)
    assert order.tag == "order" and order.attrib == {"priority": "high"}
    assert order.findtext("customer") == "ada"
    assert [line.text for line in order.findall("lines")] == ["1", "2"]
    assert json.loads(raw) == {
        "order": {"@id": "7", "status": "accepted", "lines": {"line": ["1", "2"]}}
    }


async def test_a_json_list_becomes_items_under_the_root(tmp_path: Path) -> None:
    async with (
        Upstream(legacy_erp).running() as upstream,
        gateways(tmp_path, routes(upstream, BOTH_WAYS)) as gw,
        aiohttp.ClientSession() as http,
        http.post(gw.url + "/erp/orders", json=[{"sku": "a"}, {"sku": "b"}]) as answer,
    ):
        assert answer.status == 200
    order = ElementTree.fromstring(upstream.seen[0].body)
    assert [item.findtext("sku") for item in order.findall("item")] == ["a", "b"]


async def test_transformers_change_the_json_on_both_sides_of_the_conversion(
    tmp_path: Path,
) -> None:
    """On the way in the request transformer runs before the XML conversion, on the way
    back the response transformer after it: both see JSON."""
    policies = (
        BOTH_WAYS
        + """
      request_transformer: {add: {body: {channel: web}}}
      response_transformer: {rename: {json: {order: result}}}
"""
    )
    async with (
        Upstream(legacy_erp).running() as upstream,
        gateways(tmp_path, routes(upstream, policies)) as gw,
        aiohttp.ClientSession() as http,
        http.post(gw.url + "/erp/orders", json={"customer": "ada"}) as answer,
    ):
        result = await answer.json()
    assert ElementTree.fromstring(upstream.seen[0].body).findtext("channel") == "web"
    assert result["result"]["status"] == "accepted"


async def test_what_is_not_json_goes_through_as_it_is(tmp_path: Path) -> None:
    async with (
        Upstream(legacy_erp).running() as upstream,
        gateways(tmp_path, routes(upstream, BOTH_WAYS)) as gw,
        aiohttp.ClientSession() as http,
    ):
        async with http.get(gw.url + "/erp/orders") as answer:
            assert answer.status == 200
        xml_body = b"<order><customer>ada</customer></order>"
        async with http.post(
            gw.url + "/erp/orders", data=xml_body, headers={"Content-Type": "application/xml"}
        ) as answer:
            assert answer.status == 200
        async with http.get(gw.url + "/erp/json") as answer:
            assert await answer.json() == {"already": "json"}
    assert [seen.body for seen in upstream.seen] == [b"", xml_body, b""]


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b'{"customer": ', "not valid JSON"),
        (b'{"a b": 1}', "cannot be written as XML"),
        (b'{"items": [{"1st": true}]}', "cannot be written as XML"),
    ],
)
async def test_a_json_body_that_cannot_be_xml_never_reaches_the_backend(
    tmp_path: Path, body: bytes, detail: str
) -> None:
    async with (
        Upstream(legacy_erp).running() as upstream,
        gateways(tmp_path, routes(upstream, BOTH_WAYS)) as gw,
        aiohttp.ClientSession() as http,
        http.post(
            gw.url + "/erp/orders", data=body, headers={"Content-Type": "application/json"}
        ) as answer,
    ):
        assert answer.status == 400
        assert answer.headers["Content-Type"] == "application/problem+json"
        problem = await answer.json(content_type=None)
    assert detail in problem["detail"]
    assert upstream.seen == []


@pytest.mark.parametrize(
    ("path", "detail"),
    [
        ("/erp/bomb", "document type declaration"),
        ("/erp/external", "document type declaration"),
        ("/erp/broken", "not well-formed"),
        ("/erp/big", "over 20000 bytes"),
    ],
)
async def test_an_xml_answer_that_cannot_be_converted_is_502(
    tmp_path: Path, path: str, detail: str
) -> None:
    async with (
        Upstream(legacy_erp).running() as upstream,
        gateways(tmp_path, routes(upstream, BOTH_WAYS)) as gw,
        aiohttp.ClientSession() as http,
    ):
        async with http.get(gw.url + path) as answer:
            assert answer.status == 502
            assert answer.headers["Content-Type"] == "application/problem+json"
            raw = await answer.read()
        # The gateway is still there for the next request.
        async with http.get(gw.url + "/erp/orders") as after:
            assert after.status == 200
    problem = json.loads(raw)
    assert detail in problem["detail"]
    assert b"root:" not in raw and b"lollol" not in raw
    assert len(upstream.seen) == 2


def test_settings_are_checked() -> None:
    text = """
routes:
  - name: erp
    backends: [{name: legacy, url: "http://127.0.0.1:9", weight: 100}]
    policies:
      xml: {request: xml_to_json, root: "bad root"}
"""
    with pytest.raises(ValidationError) as raised:
        parse_routes(text, "routes.yaml")
    assert sorted(p.field or "" for p in raised.value.problems) == [
        "policies.xml.request",
        "policies.xml.root",
    ]


async def test_a_mirrored_answer_is_converted_and_compared_as_the_client_would_get_it(
    sqlite_url: str,
) -> None:
    """A candidate behind a mirror gets the route's policies on its answer too, in the same
    order as the client's: the primary's XML becomes JSON (then renamed), the candidate's
    XML bomb becomes the 502 the client would have got."""

    async def primary(request: web.Request) -> web.StreamResponse:
        return web.Response(body=ORDER_XML, content_type="application/xml")

    async def candidate(request: web.Request) -> web.StreamResponse:
        return web.Response(body=BILLION_LAUGHS, content_type="application/xml")

    async with upstream({"/": primary}) as legacy, upstream({"/": candidate}) as modern:
        text = f"""
routes:
  - name: erp
    match: {{path: {{prefix: /erp}}}}
    backends:
      - {{name: legacy, url: "{legacy.url}", weight: 100}}
      - {{name: modern, url: "{modern.url}", weight: 0}}
    mirror: {{backend: modern}}
    policies:
      xml: {{response: xml_to_json}}
      response_transformer: {{rename: {{json: {{order: result}}}}}}
"""
        async with await open_store(sqlite_url) as store:
            await store.upgrade()
            await apply_routes(store, text)
        async with replica(sqlite_url, name="r1") as gw:
            status, _, body = await gw.get("/erp/orders/7")
            await gw.hooks.mirrors.settle()
            [kept] = await GatewayState(gw.store).mismatches("erp")
    assert status == 200
    assert loads(body)["result"]["@id"] == "7"
    assert (kept.primary_status, kept.candidate_status) == (200, 502)
    assert loads(kept.primary_body or "")["result"]["status"] == "accepted"
