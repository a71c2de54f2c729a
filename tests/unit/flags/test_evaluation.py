"""Evaluating flags: rule semantics, reasons, errors, and fractional rollouts as flagd
buckets them."""

from __future__ import annotations

from collections import Counter
from typing import Any

import mmh3
import pytest

from hybridmesh.flags import Flag, FlagClient
from hybridmesh.flags.evaluation import bucket, bucketing_hash


def flag(**spec: Any) -> Flag:
    base: dict[str, Any] = {
        "key": "checkout",
        "variants": {"on": True, "off": False},
        "default_variant": "off",
    }
    return Flag.model_validate({**base, **spec})


def when(*conditions: dict[str, Any], variant: str = "on") -> dict[str, Any]:
    return {"when": list(conditions), "variant": variant}


def rollout(on: int, off: int | None = None) -> dict[str, Any]:
    return {
        "fractional": [
            {"variant": "on", "weight": on},
            {"variant": "off", "weight": 100 - on if off is None else off},
        ]
    }


def served(f: Flag, context: dict[str, Any]) -> tuple[Any, str | None, str]:
    found = FlagClient.from_flags([f]).evaluate(f.key, context)
    return found.value, found.variant, found.reason


# -- conditions ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("condition", "context", "matches"),
    [
        ({"equals": "pro"}, {"plan": "pro"}, True),
        ({"equals": "pro"}, {"plan": "free"}, False),
        ({"equals": 1}, {"plan": True}, False),  # true is not 1
        ({"equals": 1}, {"plan": "1"}, False),  # "1" is not 1
        ({"equals": 1}, {"plan": 1.0}, True),
        ({"equals": True}, {"plan": 1}, False),
        ({"not_equals": "pro"}, {"plan": "free"}, True),
        ({"not_equals": "pro"}, {"plan": "pro"}, False),
        ({"not_equals": "pro"}, {}, False),  # a missing attribute fails every test
        ({"in": ["pro", "team", 3]}, {"plan": "team"}, True),
        ({"in": ["pro", "team", 3]}, {"plan": 3}, True),
        ({"in": ["pro", 1]}, {"plan": True}, False),
        ({"in": ["pro"]}, {"plan": "free"}, False),
        ({"not_in": ["pro"]}, {"plan": "free"}, True),
        ({"not_in": ["pro"]}, {"plan": "pro"}, False),
        ({"not_in": ["pro"]}, {"plan": None}, False),
        ({"starts_with": "ad"}, {"plan": "admin"}, True),
        ({"starts_with": "ad"}, {"plan": 5}, False),
        ({"ends_with": "@example.com"}, {"plan": "ada@example.com"}, True),
        ({"ends_with": "@example.com"}, {"plan": "ada@example.org"}, False),
        ({"matches": r"^v2\.\d+$"}, {"plan": "v2.13"}, True),
        ({"matches": r"beta"}, {"plan": "closed-beta-1"}, True),  # found anywhere
        ({"matches": r"^v2\.\d+$"}, {"plan": "v3.1"}, False),
        ({"lt": 18}, {"plan": 17.5}, True),
        ({"lt": 18}, {"plan": 18}, False),
        ({"lte": 18}, {"plan": 18}, True),
        ({"gt": 18}, {"plan": 19}, True),
        ({"gte": 18}, {"plan": 17}, False),
        ({"gte": 18}, {"plan": "19"}, False),  # text is not a number
        ({"gte": 0}, {"plan": True}, False),  # nor is a boolean
    ],
)
def test_each_operator(condition: dict[str, Any], context: dict[str, Any], matches: bool) -> None:
    f = flag(targeting=[when({"attribute": "plan", **condition})])
    assert served(f, context)[0] is matches


def test_every_condition_of_a_rule_must_hold_and_the_first_rule_that_applies_decides() -> None:
    f = flag(
        variants={"old": "v1", "new": "v2", "beta": "v3"},
        default_variant="old",
        targeting=[
            when(
                {"attribute": "country", "in": ["TH", "SG"]},
                {"attribute": "age", "gte": 18},
                variant="beta",
            ),
            when({"attribute": "country", "equals": "TH"}, variant="new"),
        ],
    )
    assert served(f, {"country": "TH", "age": 30}) == ("v3", "beta", "TARGETING_MATCH")
    assert served(f, {"country": "TH", "age": 10}) == ("v2", "new", "TARGETING_MATCH")
    assert served(f, {"country": "SG", "age": 10}) == ("v1", "old", "DEFAULT")
    assert served(flag(), {}) == (False, "off", "STATIC")


def test_a_condition_on_the_targeting_key_reads_it_however_it_is_given() -> None:
    f = flag(targeting=[when({"attribute": "targetingKey", "in": ["u1"]})])
    client = FlagClient.from_flags([f])
    assert client.evaluate("checkout", {"targetingKey": "u1"}).value is True
    assert client.evaluate("checkout", {}, targeting_key="u1").value is True
    assert client.evaluate("checkout", {}, targeting_key="u2").value is False


def test_a_disabled_flag_serves_its_default_variant() -> None:
    f = flag(enabled=False, targeting=[when({"attribute": "plan", "equals": "pro"})])
    assert served(f, {"plan": "pro"}) == (False, "off", "DISABLED")


# -- errors on the hot path ------------------------------------------------------------------


def test_an_unknown_flag_or_a_default_of_another_type_gives_the_default_back() -> None:
    client = FlagClient.from_flags([flag()])
    missing = client.evaluate("nope", {}, "fallback")
    assert (missing.value, missing.reason, missing.error_code) == (
        "fallback",
        "ERROR",
        "FLAG_NOT_FOUND",
    )
    wrong = client.evaluate("checkout", {}, "yes")
    assert (wrong.value, wrong.variant, wrong.error_code) == ("yes", None, "TYPE_MISMATCH")
    assert client.string("checkout", {}, "text") == "text"
    assert client.boolean("nope", {}, True) is True
    assert client.boolean("checkout", {}, True) is False


def test_typed_helpers() -> None:
    client = FlagClient.from_flags(
        [
            flag(key="color", variants={"red": "#f00", "blue": "#00f"}, default_variant="blue"),
            flag(key="limit", variants={"low": 10, "high": 2.5}, default_variant="low"),
            flag(key="layout", variants={"a": {"cols": [1, 2]}}, default_variant="a"),
        ]
    )
    assert client.string("color") == "#00f"
    assert client.number("limit") == 10
    first = client.object("layout")
    first["cols"].append(3)  # a caller's copy: the flag is unchanged
    assert client.object("layout") == {"cols": [1, 2]}
    assert client.number("color", default=7) == 7


def test_a_split_without_a_targeting_key_serves_the_default_variant_as_an_error() -> None:
    f = flag(
        variants={"old": "v1", "new": "v2"},
        default_variant="old",
        targeting=[{"fractional": [{"variant": "new", "weight": 1}]}],
    )
    client = FlagClient.from_flags([f])
    for context in ({}, {"targetingKey": ""}, {"targetingKey": 42}):
        found = client.evaluate("checkout", context)
        assert (found.value, found.variant, found.reason, found.error_code) == (
            "v1",
            "old",
            "ERROR",
            "TARGETING_KEY_MISSING",
        )
    assert client.evaluate("checkout", {"targetingKey": "u1"}).value == "v2"


# -- fractional rollout ----------------------------------------------------------------------

# flagd's testbed (gherkin/targeting.feature, @fractional-v2): the same flag key and
# targeting key land on the same variant here.
SUITS = [("clubs", 25), ("diamonds", 25), ("hearts", 25), ("spades", 25)]


@pytest.mark.parametrize(
    ("key", "splits", "targeting_key", "expected"),
    [
        ("fractional-flag", SUITS, "jack", "hearts"),
        ("fractional-flag", SUITS, "queen", "spades"),
        ("fractional-flag", SUITS, "ten", "clubs"),
        ("fractional-flag", SUITS, "nine", "diamonds"),
        ("fractional-flag", SUITS, "3", "clubs"),
        ("fractional-flag-shorthand", [("heads", 1), ("tails", 1)], "jon@company.com", "heads"),
        ("fractional-flag-shorthand", [("heads", 1), ("tails", 1)], "jane@company.com", "tails"),
    ],
)
def test_buckets_match_flagd(
    key: str, splits: list[tuple[str, int]], targeting_key: str, expected: str
) -> None:
    f = Flag.model_validate(
        {
            "key": key,
            "variants": {name: name for name, _ in splits},
            "default_variant": splits[0][0],
            "targeting": [{"fractional": [{"variant": n, "weight": w} for n, w in splits]}],
        }
    )
    found = FlagClient.from_flags([f]).evaluate(key, {"targetingKey": targeting_key})
    assert (found.variant, found.reason) == (expected, "SPLIT")


def test_the_bucket_arithmetic_at_the_hash_edges() -> None:
    # Keys from flagd's testbed whose MurmurHash3 (seed 0) is exactly 0, 1, 2**31 - 1,
    # 2**31 and 2**32 - 1; a 50/50 split puts the first three low, the others high.
    edges = {"ejOoVL": 0, "bY9fO-": 1, "SI7p-": 2**31 - 1, "6LvT0": 2**31, "ceQdGm": 2**32 - 1}
    for text, hashed in edges.items():
        assert mmh3.hash(text, 0, False) == hashed
    assert [bucket(h, 100) for h in edges.values()] == [0, 0, 49, 50, 99]
    assert bucket(2**32 - 1, 2**31 - 1) == 2**31 - 2  # never past the last weight
    assert bucketing_hash("flag", "user") == mmh3.hash("flaguser", 0, False)


def test_no_user_goes_back_as_a_rollout_grows() -> None:
    users = [f"user-{i}" for i in range(10_000)]
    previous: set[str] = set()
    for percent in (0, 1, 5, 10, 20, 25, 50, 75, 99, 100):
        client = FlagClient.from_flags([flag(targeting=[rollout(percent)])])
        on = {u for u in users if client.evaluate("checkout", {"targetingKey": u}).value}
        assert previous <= on, f"{len(previous - on)} user(s) went back at {percent} %"
        assert abs(len(on) - percent * 100) <= 150  # 10,000 users: within 1.5 points
        previous = on
    assert len(previous) == 10_000


def test_the_same_share_in_other_units_splits_the_same_users() -> None:
    users = [f"user-{i}" for i in range(2_000)]
    coarse = FlagClient.from_flags([flag(targeting=[rollout(25)])])
    fine = FlagClient.from_flags([flag(targeting=[rollout(2500, 7500)])])
    for user in users:
        context = {"targetingKey": user}
        assert coarse.evaluate("checkout", context) == fine.evaluate("checkout", context)


def test_a_split_follows_its_weights() -> None:
    f = flag(
        variants={"a": "a", "b": "b", "c": "c", "none": "-"},
        default_variant="a",
        targeting=[
            {
                "fractional": [
                    {"variant": "a", "weight": 50},
                    {"variant": "b", "weight": 30},
                    {"variant": "none", "weight": 0},
                    {"variant": "c", "weight": 20},
                ]
            }
        ],
    )
    client = FlagClient.from_flags([f])
    seen = Counter(
        client.evaluate("checkout", {"targetingKey": f"u{i}"}).variant for i in range(20_000)
    )
    assert seen["none"] == 0
    for variant, share in (("a", 0.5), ("b", 0.3), ("c", 0.2)):
        assert abs(seen[variant] / 20_000 - share) < 0.015


def test_users_split_independently_per_flag() -> None:
    users = [f"u{i}" for i in range(4_000)]
    one = FlagClient.from_flags([flag(key="one", targeting=[rollout(50)])])
    two = FlagClient.from_flags([flag(key="two", targeting=[rollout(50)])])
    both = sum(
        1
        for u in users
        if one.evaluate("one", {"targetingKey": u}).value
        and two.evaluate("two", {"targetingKey": u}).value
    )
    assert abs(both / len(users) - 0.25) < 0.03  # not the same half each time


def test_a_rule_with_conditions_can_split_and_later_rules_still_apply() -> None:
    f = flag(
        variants={"old": 1, "new": 2, "staff": 3},
        default_variant="old",
        targeting=[
            {
                "when": [{"attribute": "plan", "equals": "pro"}],
                "fractional": [{"variant": "new", "weight": 1}],
            },
            when({"attribute": "email", "ends_with": "@example.com"}, variant="staff"),
        ],
    )
    client = FlagClient.from_flags([f])
    found = client.evaluate("checkout", {"plan": "pro", "targetingKey": "u"})
    assert (found.value, found.reason) == (2, "SPLIT")
    assert client.evaluate("checkout", {"email": "a@example.com"}).value == 3
    assert client.evaluate("checkout", {"plan": "free"}).reason == "DEFAULT"
