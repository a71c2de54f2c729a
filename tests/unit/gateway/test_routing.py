"""Which route takes a request, and which backend serves it."""

from __future__ import annotations

import random
from typing import Any

import mmh3
import pytest

from hybridmesh.gateway.config import Route
from hybridmesh.gateway.http import Headers
from hybridmesh.gateway.routing import BUCKETS, CompiledRoute, RouteTable, bucket_of, sticky_key


def route(name: str, **fields: Any) -> Route:
    backends = fields.pop("backends", [{"name": "a", "url": "http://127.0.0.1:1", "weight": 100}])
    return Route.model_validate({"name": name, "backends": backends, **fields})


def winner(
    table: RouteTable, path: str, method: str = "GET", host: str = "", **headers: str
) -> str | None:
    found = table.match(method, host, path, Headers(headers.items()))
    return None if found is None else found[0].route.name


def test_the_most_specific_route_wins_in_the_documented_order() -> None:
    table = RouteTable(
        [
            route("catch-all"),
            route("api", match={"path": {"prefix": "/api"}}),
            route("api-v2", match={"path": {"prefix": "/api/v2"}}),
            route("order", match={"path": {"regex": r"/api/v2/orders/(?P<id>\d+)"}}),
            route("health", match={"path": {"exact": "/api/v2/orders/1"}}),
            route("posts", match={"path": {"prefix": "/api"}, "methods": ["POST"]}),
            route(
                "tenant",
                match={
                    "path": {"prefix": "/api"},
                    "headers": [{"name": "x-tenant", "exact": "acme"}],
                },
            ),
            route("host", match={"hosts": ["shop.example.com"]}),
            route("wild", match={"hosts": ["*.example.com"], "path": {"prefix": "/api/v2"}}),
        ]
    )
    assert winner(table, "/") == "catch-all"
    assert winner(table, "/apix") == "catch-all"  # a prefix matches whole segments
    assert winner(table, "/api") == "api"
    assert winner(table, "/api/x", method="POST") == "posts"
    assert winner(table, "/api/x", **{"X-Tenant": "acme"}) == "tenant"
    assert winner(table, "/api/v2/x") == "api-v2"
    assert winner(table, "/api/v2/orders/7") == "order"
    assert winner(table, "/api/v2/orders/1") == "health"
    assert winner(table, "/api/v2/orders/1", host="shop.example.com") == "host"
    assert winner(table, "/api/v2/orders/1", host="www.example.com:8080") == "wild"
    assert winner(table, "/", host="example.com") == "catch-all"


def test_regex_captures_feed_the_rewrite() -> None:
    compiled = CompiledRoute.of(
        route(
            "r",
            match={"path": {"regex": r"/orders/(?P<id>\d+)/(?P<rest>.*)"}},
            rewrite="/v2/o/{id}?{rest}",
        )
    )
    captures = compiled.path_match("/orders/42/items")
    assert captures == {"id": "42", "rest": "items"}
    assert compiled.upstream_path("/orders/42/items", captures) == "/v2/o/42?items"
    strip = CompiledRoute.of(route("s", match={"path": {"prefix": "/legacy/"}}, strip_prefix=True))
    assert strip.upstream_path("/legacy/a/b", {}) == "/a/b"
    assert strip.upstream_path("/legacy", {}) == "/"


def test_bucket_is_murmur3_of_route_and_key_in_hundredths_of_a_percent() -> None:
    expected = mmh3.hash("checkoutuser-42", 0, signed=False) * BUCKETS // 2**32
    assert bucket_of("checkout", "user-42") == expected
    assert all(0 <= bucket_of("r", str(n)) < BUCKETS for n in range(2000))


def test_a_sticky_user_never_goes_back_while_the_new_side_grows() -> None:
    base = route(
        "checkout",
        sticky={"header": "x-user"},
        backends=[
            {"name": "old", "url": "http://127.0.0.1:1", "weight": 100},
            {"name": "new", "url": "http://127.0.0.1:2", "weight": 0},
        ],
    )
    rng = random.Random(0)
    users = [f"user-{n}" for n in range(3000)]
    reached_new: set[str] = set()
    shares = []
    for percent in (1, 5, 10, 25, 50, 75, 100):
        compiled = CompiledRoute.of(base.with_weight("new", percent))
        on_new = {
            u
            for u in users
            if compiled.choose(
                sticky_key(base, Headers([("x-user", u)]), "", None), Headers(), rng
            ).name
            == "new"
        }
        assert reached_new <= on_new  # nobody who reached the new side goes back
        reached_new = on_new
        shares.append(len(on_new) / len(users))
    assert shares[-1] == 1.0
    assert shares[2] == pytest.approx(0.10, abs=0.02)
    assert shares[4] == pytest.approx(0.50, abs=0.03)


def test_header_rules_beat_weights_and_unkeyed_requests_split_by_weight() -> None:
    compiled = CompiledRoute.of(
        route(
            "r",
            backends=[
                {"name": "old", "url": "http://127.0.0.1:1", "weight": 80},
                {"name": "new", "url": "http://127.0.0.1:2", "weight": 20},
            ],
            header_routes=[{"header": "x-canary", "exact": "always", "backend": "new"}],
        )
    )
    rng = random.Random(1)
    assert {
        compiled.choose(None, Headers([("x-canary", "always")]), rng).name for _ in range(50)
    } == {"new"}
    picks = [compiled.choose(None, Headers(), rng).name for _ in range(5000)]
    assert picks.count("new") / len(picks) == pytest.approx(0.20, abs=0.03)


@pytest.mark.parametrize(
    ("sticky", "headers", "ip", "claims", "key"),
    [
        ({"header": "x-user"}, [("x-user", "u1")], "", None, "u1"),
        ({"cookie": "uid"}, [("cookie", "a=1; uid=u7")], "", None, "u7"),
        ({"cookie": "uid"}, [("cookie", "=;;bad")], "", None, None),
        ({"claim": "sub"}, [], "", {"sub": "alice"}, "alice"),
        ({"client_ip": True}, [], "127.0.0.5", None, "127.0.0.5"),
        ({"header": "x-user"}, [], "", None, None),
    ],
)
def test_sticky_keys(
    sticky: dict[str, Any], headers: list[tuple[str, str]], ip: str, claims: Any, key: str | None
) -> None:
    assert sticky_key(route("r", sticky=sticky), Headers(headers), ip, claims) == key
