"""Mirroring through a real gateway: copies reach the candidate as the primary got them,
never hold up the client, are dropped past max_in_flight, and their answers are compared
and the mismatches kept in the store (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from tests.cli_in_process import run_cli
from tests.integration.gateway.mirror_rig import (
    Upstream,
    apply_routes,
    closed_port_url,
    replica,
    upstream,
)
from tests.waiting import eventually

from hybridmesh.core.serialization import loads
from hybridmesh.gateway.state import GatewayState
from hybridmesh.store import open_store

PRICES = {"primary": {"1": 10, "7": 10}, "candidate": {"1": 10, "7": 11}}


def shop(side: str, release: asyncio.Event) -> dict[str, Any]:
    """One side of the shop: the same items with a per-answer request_id and the side's
    name (both ignored by the comparison), item 7's price differing."""

    async def item(request: web.Request) -> web.StreamResponse:
        number = request.path.rsplit("/", 1)[-1]
        return web.json_response(
            {
                "id": number,
                "price": PRICES[side].get(number, 1),
                "tags": ["a", "b"],
                "request_id": random.getrandbits(64),
                "served_by": side,
            }
        )

    async def text(request: web.Request) -> web.StreamResponse:
        return web.Response(text="hello" if side == "primary" else "hellO")

    async def gone(request: web.Request) -> web.StreamResponse:
        if side == "primary":
            return web.json_response({"id": "gone"})
        return web.json_response({"error": "not here"}, status=404)

    async def slow(request: web.Request) -> web.StreamResponse:
        if side == "candidate":
            await release.wait()
        return web.json_response({"slow": True})

    return {"/items/": item, "/text": text, "/gone": gone, "/slow": slow}


ROUTES = """
routes:
  - name: shop
    match: {{path: {{prefix: /shop}}}}
    strip_prefix: true
    backends:
      - {{name: legacy, url: "{primary}", weight: 100}}
      - {{name: modern, url: "{candidate}", weight: 0}}
    mirror:
      backend: modern
      percent: {percent}
      max_in_flight: {in_flight}
      compare:
        ignore: [request_id, served_by]
        keep: {keep}
"""


class Rig:
    def __init__(self, primary: Upstream, candidate: Upstream, release: asyncio.Event) -> None:
        self.primary = primary
        self.candidate = candidate
        self.release = release


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    release = asyncio.Event()
    async with (
        upstream(shop("primary", release)) as primary,
        upstream(shop("candidate", release)) as candidate,
    ):
        yield Rig(primary, candidate, release)
        release.set()


def routes(rig: Rig, *, percent: float = 100, in_flight: int = 64, keep: int = 100) -> str:
    return ROUTES.format(
        primary=rig.primary.url,
        candidate=rig.candidate.url,
        percent=percent,
        in_flight=in_flight,
        keep=keep,
    )


async def test_a_copy_reaches_the_candidate_as_the_primary_got_it(
    rig: Rig, sqlite_url: str
) -> None:
    async with await open_store(sqlite_url) as store:
        await store.upgrade()
        await apply_routes(store, routes(rig))
    async with replica(sqlite_url, name="r1") as gw:
        status, headers, body = await gw.get(
            "/shop/items/1?color=red&size=2",
            headers={"x-custom": "kept", "x-request-id": "req-123"},
        )
        await gw.hooks.mirrors.settle()

        assert status == 200
        assert loads(body)["served_by"] == "primary"
        assert headers["x-request-id"] == "req-123"
        [first] = rig.primary.seen
        [copy] = rig.candidate.seen
        assert (copy.method, copy.path, copy.query, copy.body) == (
            first.method,
            first.path,
            first.query,
            first.body,
        )
        assert copy.path == "/items/1"
        assert copy.headers["x-custom"] == "kept"
        assert copy.headers["x-request-id"] == first.headers["x-request-id"] == "req-123"
        assert gw.mirrored("shop", "match") == 1
        assert gw.mirrored("shop", "mismatch") == 0


async def test_only_the_listed_methods_and_the_percent_are_copied(
    rig: Rig, sqlite_url: str
) -> None:
    async with await open_store(sqlite_url) as store:
        await store.upgrade()
        await apply_routes(store, routes(rig))
    async with replica(sqlite_url, name="r1") as gw:
        status, _, _ = await gw.call("POST", "/shop/items/1", data=b'{"n": 1}')
        assert status == 200
        await gw.get("/shop/items/1", headers={"x-n": "1"})
        await gw.hooks.mirrors.settle()
        assert [s.method for s in rig.primary.seen] == ["POST", "GET"]
        assert [s.method for s in rig.candidate.seen] == ["GET"]

        await apply_routes(gw.store, routes(rig, percent=0))
        gw.gateway.use(await GatewayState(gw.store).snapshot())
        for _ in range(5):
            await gw.get("/shop/items/1")
        await gw.hooks.mirrors.settle()
        assert len(rig.candidate.seen) == 1
        assert len(rig.primary.seen) == 7


async def test_a_stalled_candidate_never_holds_the_client_and_copies_past_the_limit_drop(
    rig: Rig, sqlite_url: str
) -> None:
    async with await open_store(sqlite_url) as store:
        await store.upgrade()
        await apply_routes(store, routes(rig, in_flight=2))
    async with replica(sqlite_url, name="r1") as gw:
        # The candidate does not answer until released: every client still gets the
        # primary's answer, while two copies wait and the others are dropped.
        for _ in range(5):
            status, _, body = await gw.get("/shop/slow")
            assert (status, loads(body)) == (200, {"slow": True})
        await eventually(lambda: len(rig.candidate.seen) == 2, what="two copies in flight")
        assert gw.mirrored("shop", "dropped") == 3
        assert gw.mirrored("shop", "match") == 0

        rig.release.set()
        await gw.hooks.mirrors.settle()
        assert gw.mirrored("shop", "match") == 2
        assert len(rig.primary.seen) == 5


async def test_an_unreachable_candidate_counts_failed_and_the_client_is_served(
    rig: Rig, sqlite_url: str
) -> None:
    text = routes(rig).replace(rig.candidate.url, closed_port_url())
    async with await open_store(sqlite_url) as store:
        await store.upgrade()
        await apply_routes(store, text)
    async with replica(sqlite_url, name="r1") as gw:
        for _ in range(3):
            status, _, body = await gw.get("/shop/items/1")
            assert status == 200
            assert loads(body)["served_by"] == "primary"
        await gw.hooks.mirrors.settle()
        assert gw.mirrored("shop", "failed") == 3
        assert gw.mirrored("shop", "match") == 0


async def test_answers_are_compared_and_the_newest_mismatches_kept(
    rig: Rig, database_url: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    async with await open_store(database_url) as store:
        await store.upgrade()
        await apply_routes(store, routes(rig, keep=3))
    async with replica(database_url, name="r1") as gw:
        # Item 1 differs only in ignored fields; item 7 in its price; /text byte for byte;
        # /gone in status (and body); /items/2 and /items/3 again only in ignored fields.
        for path in ["/items/1", "/items/7", "/text", "/gone", "/items/2", "/items/3"]:
            status, _, _ = await gw.get("/shop" + path)
            assert status == 200
            await gw.hooks.mirrors.settle()  # one at a time: "newest" is well defined
        assert gw.mirrored("shop", "match") == 3
        assert gw.mirrored("shop", "mismatch") == 3

        kept = await GatewayState(gw.store).mismatches("shop")
        assert [m.path for m in kept] == ["/gone", "/text", "/items/7"]
        gone, text, price = kept
        assert {"field": "status", "primary": 200, "candidate": 404} in gone.differences
        assert (gone.primary_status, gone.candidate_status) == (200, 404)
        assert text.differences == [
            {"field": "body", "change": "bytes", "primary_length": 5, "candidate_length": 5}
        ]
        assert (text.primary_body, text.candidate_body) == ("hello", "hellO")
        assert price.differences == [
            {"field": "body", "path": "price", "change": "changed", "primary": 10, "candidate": 11}
        ]
        assert loads(price.primary_body or "")["price"] == 10
        assert loads(price.candidate_body or "")["price"] == 11

        # A fourth mismatch pushes the oldest out: three are kept. The query string is not
        # kept (it may carry a key).
        await gw.get("/shop/items/7?api_key=secret")
        await gw.hooks.mirrors.settle()
        kept = await GatewayState(gw.store).mismatches("shop")
        assert [m.path for m in kept] == ["/items/7", "/gone", "/text"]
        assert kept[0].id != price.id

    code, out = await run_cli(capsys, database_url, "routes", "mismatches", "shop", "--json")
    assert code == 0, out
    listed = json.loads(out)
    assert [m["path"] for m in listed] == ["/items/7", "/gone", "/text"]
    assert listed[0]["differences"][0]["path"] == "price"
    assert "secret" not in out

    code, out = await run_cli(
        capsys, database_url, "routes", "mismatches", "shop", "--limit", "1", "--json"
    )
    assert code == 0, out
    assert [m["path"] for m in json.loads(out)] == ["/items/7"]

    code, out = await run_cli(capsys, database_url, "routes", "mismatches", "shop")
    assert code == 0, out
    assert "price" in out and "/gone" in out

    code, out = await run_cli(capsys, database_url, "routes", "mismatches", "nowhere")
    assert code == 1, out
    code, out = await run_cli(capsys, database_url, "routes", "mismatches", "shop", "--limit", "0")
    assert code == 2, out


async def test_no_mismatch_is_kept_when_keep_is_0_but_each_is_counted(
    rig: Rig, sqlite_url: str
) -> None:
    async with await open_store(sqlite_url) as store:
        await store.upgrade()
        await apply_routes(store, routes(rig, keep=0))
    async with replica(sqlite_url, name="r1") as gw:
        await gw.get("/shop/items/7")
        await gw.hooks.mirrors.settle()
        assert gw.mirrored("shop", "mismatch") == 1
        assert await GatewayState(gw.store).mismatches("shop") == []
