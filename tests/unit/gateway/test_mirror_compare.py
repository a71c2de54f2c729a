"""How a mirrored answer is compared with the primary's: status, the listed headers, JSON
bodies path by path without the ignored paths, other bodies byte for byte."""

from __future__ import annotations

import pytest

from hybridmesh.core.serialization import dumpb
from hybridmesh.gateway.config import Compare
from hybridmesh.gateway.http import Headers
from hybridmesh.gateway.mirror import Reply, compare_replies, json_differences

JSON = [("content-type", "application/json")]


def reply(status: int, body: object, headers: list[tuple[str, str]] = JSON) -> Reply:
    data = body if isinstance(body, bytes) else dumpb(body)
    return Reply.of(status, Headers(headers), data)


def test_equal_answers_match() -> None:
    body = {"id": 1, "items": [{"sku": "a", "n": 2}]}
    assert compare_replies(reply(200, body), reply(200, dict(body)), Compare()) == []


def test_status_headers_and_body_differences_are_named() -> None:
    primary = reply(200, {"id": 1, "name": "x"}, [*JSON, ("x-version", "1")])
    candidate = reply(201, {"id": 1, "name": "y"}, [*JSON, ("x-version", "2")])
    found = compare_replies(primary, candidate, Compare(headers=("content-type", "x-version")))
    assert found == [
        {"field": "status", "primary": 200, "candidate": 201},
        {"field": "header", "name": "x-version", "primary": "1", "candidate": "2"},
        {"field": "body", "path": "name", "change": "changed", "primary": "x", "candidate": "y"},
    ]


def test_ignored_paths_leave_out_keys_indexes_and_whole_subtrees() -> None:
    primary = {
        "at": 1,
        "items": [{"id": "a", "etag": "1"}, {"id": "b", "etag": "2"}],
        "meta": {"trace": "t1", "host": "h1"},
    }
    candidate = {
        "at": 2,
        "items": [{"id": "a", "etag": "9"}, {"id": "b", "etag": "8"}],
        "meta": {"trace": "t2"},
    }
    assert json_differences(primary, candidate, ("at", "items.*.etag", "meta")) == []
    assert json_differences(primary, candidate, ("at", "items.1.etag", "meta")) == [
        {
            "field": "body",
            "path": "items.0.etag",
            "change": "changed",
            "primary": "1",
            "candidate": "9",
        }
    ]
    assert json_differences({"a": {"b": 1}}, {"a": {"b": 2}}, ("*.b",)) == []


def test_missing_extra_and_type_changes() -> None:
    found = json_differences(
        {"gone": 1, "list": [1, 2, 3], "flag": True, "n": 1},
        {"new": 2, "list": [1, 2], "flag": 1, "n": 1.0},
    )
    assert {"field": "body", "path": "gone", "change": "missing", "primary": 1} in found
    assert {"field": "body", "path": "new", "change": "extra", "candidate": 2} in found
    assert {"field": "body", "path": "list.2", "change": "missing", "primary": 3} in found
    assert {
        "field": "body",
        "path": "flag",
        "change": "changed",
        "primary": True,
        "candidate": 1,
    } in found
    assert not [d for d in found if d["path"] == "n"]  # 1 and 1.0 are one JSON number
    assert len(found) == 4


def test_differences_are_capped() -> None:
    found = json_differences(list(range(80)), [n + 1 for n in range(80)], limit=10)
    assert len(found) == 11
    assert found[-1] == {"field": "body", "change": "more", "count": 70}


def test_deep_documents_do_not_recurse() -> None:
    deep_a: object = 1
    deep_b: object = 2
    for _ in range(5000):
        deep_a, deep_b = [deep_a], [deep_b]
    [found] = json_differences(deep_a, deep_b)
    assert found["change"] == "changed" and found["path"].count(".") == 4999


@pytest.mark.parametrize(
    ("primary", "candidate"),
    [
        (
            reply(200, b"hello", [("content-type", "text/plain")]),
            reply(200, b"hellO", [("content-type", "text/plain")]),
        ),
        (reply(200, b"{not json", JSON), reply(200, b"{not json!", JSON)),
    ],
)
def test_other_bodies_compare_byte_for_byte(primary: Reply, candidate: Reply) -> None:
    [found] = compare_replies(primary, candidate, Compare())
    assert found["change"] == "bytes"


def test_a_candidate_that_breaks_json_is_named() -> None:
    [found] = compare_replies(reply(200, {"a": 1}), reply(200, b"<html>", JSON), Compare())
    assert found == {"field": "body", "change": "not_json", "side": "candidate"}
