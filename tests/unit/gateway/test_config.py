"""Routes files: what is accepted, and errors that name file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from hybridmesh.core.errors import ValidationError
from hybridmesh.gateway.config import Route, load_routes, parse_routes

GOOD = """\
routes:
  - name: shop
    match:
      hosts: [shop.example.com]
      path: {prefix: /shop}
      methods: [get, POST]
      headers:
        - {name: X-Tenant, exact: acme}
    strip_prefix: true
    backends:
      - {name: old, service: legacy-shop, weight: 75}
      - {name: new, url: "http://127.0.0.1:9000/api/", weight: 25}
    sticky: {cookie: uid}
    header_routes:
      - {header: x-canary, exact: always, backend: new}
    mirror: {backend: new, percent: 10}
    policies:
      faults: {abort: {percent: 1, status: 503}}
"""


def problems_of(text: str) -> list[str]:
    with pytest.raises(ValidationError) as raised:
        parse_routes(text, "routes.yaml")
    return [str(p) for p in raised.value.problems]


def test_a_full_route_is_read_with_names_normalised() -> None:
    [loaded] = parse_routes(GOOD, "routes.yaml")
    route = loaded.route
    assert route.match.methods == ("GET", "POST")
    assert route.match.hosts == ("shop.example.com",)
    assert route.match.headers[0].name == "x-tenant"
    assert route.backend("new").url == "http://127.0.0.1:9000/api"
    assert loaded.line == 2


def test_weights_must_add_up_to_100() -> None:
    found = problems_of(GOOD.replace("weight: 25", "weight: 20"))
    assert any("add up to 100 (they add up to 95)" in p for p in found), found


@pytest.mark.parametrize(
    ("old", "new", "where", "words"),
    [
        (
            "{prefix: /shop}",
            "{regex: '(unclosed'}",
            "routes.yaml:5: error [match.path.regex]",
            "not a regular expression",
        ),
        (
            "{prefix: /shop}",
            "{prefix: shop}",
            "routes.yaml:5: error [match.path.prefix]",
            "must start with '/'",
        ),
        (
            "{prefix: /shop}",
            "{prefix: /a, exact: /b}",
            "routes.yaml:5: error [match.path]",
            "exactly one of exact, prefix, regex",
        ),
        (
            "methods: [get, POST]",
            "methods: [FETCH]",
            "routes.yaml:6: error [match.methods.0]",
            "'FETCH' is not one of",
        ),
        (
            "weight: 75",
            "weight: 75.001",
            "routes.yaml:11: error [backends.0.weight]",
            "at most two decimals",
        ),
        (
            "weight: 75",
            "weight: .inf",
            "routes.yaml:11: error [backends.0.weight]",
            "percent from 0 to 100",
        ),
        (
            'url: "http://127.0.0.1:9000/api/"',
            'url: "http://a b/"',
            "routes.yaml:12: error [backends.1.url]",
            "not an http(s) URL",
        ),
        ("backend: new}", "backend: newer}", "routes.yaml:2: error", "no backend 'newer'"),
        (
            "{cookie: uid}",
            "{cookie: uid, header: x-user}",
            "routes.yaml:13: error [sticky]",
            "exactly one of",
        ),
        (
            "faults: {abort: {percent: 1, status: 503}}",
            "faults: {abort: {percent: 1, status: 200}}",
            "routes.yaml:18: error [policies.faults.abort.status]",
            "greater than or equal to 400",
        ),
        (
            "faults: {abort",
            "nosuch: {abort",
            "routes.yaml:18: error [policies.nosuch]",
            "unknown policy 'nosuch'",
        ),
        (
            "strip_prefix: true",
            "strip_prefix: true\n    colour: red",
            "routes.yaml:10: error [colour]",
            "unknown field",
        ),
    ],
)
def test_errors_name_file_line_and_field(old: str, new: str, where: str, words: str) -> None:
    assert old in GOOD
    found = problems_of(GOOD.replace(old, new))
    assert any(p.startswith(where) and words in p for p in found), found


def test_a_rewrite_may_only_use_captures_the_regex_has() -> None:
    text = GOOD.replace("{prefix: /shop}", r"{regex: '/orders/(?P<id>\d+)'}").replace(
        "strip_prefix: true", "rewrite: /v2/orders/{order}"
    )
    found = problems_of(text)
    assert any("rewrite uses {order}" in p for p in found), found


def test_duplicate_routes_across_files_name_both(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(GOOD)
    (tmp_path / "b.yaml").write_text(GOOD)
    with pytest.raises(ValidationError) as raised:
        load_routes(tmp_path)
    [problem] = raised.value.problems
    assert str(problem).startswith(f"{tmp_path / 'b.yaml'}:2: error [name]")
    assert f"first defined at {tmp_path / 'a.yaml'}:2" in problem.message


def test_a_path_defining_no_route_is_an_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty.yaml"
    empty.write_text("---\n")
    with pytest.raises(ValidationError, match="defines no route"):
        load_routes(empty)


def test_set_weight_shares_the_rest_in_proportion() -> None:
    route = Route.model_validate(
        {
            "name": "r",
            "backends": [
                {"name": "a", "url": "http://127.0.0.1:1", "weight": 60},
                {"name": "b", "url": "http://127.0.0.1:2", "weight": 30},
                {"name": "c", "url": "http://127.0.0.1:3", "weight": 10},
            ],
        }
    )
    moved = route.with_weight("c", 55)
    assert [b.weight for b in moved.backends] == [30, 15, 55]
    assert sum(b.weight for b in route.with_weight("a", 33.33).backends) == pytest.approx(100)
    two = Route.model_validate(
        {
            "name": "r",
            "backends": [
                {"name": "old", "url": "http://127.0.0.1:1", "weight": 100},
                {"name": "new", "url": "http://127.0.0.1:2", "weight": 0},
            ],
        }
    )
    assert [b.weight for b in two.with_weight("new", 5).backends] == [95, 5]
