"""The one name rule: what it accepts, what each refusal says, and that every accepted name
fits every place a name goes (SQL keys, NATS tokens, Backstage's metadata.name)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hybridmesh.core.names import MAX_NAME_LENGTH, NAME_RULE, check_name, is_name, name_problem

# What the places a name goes accept, written out independently of the rule itself.
BACKSTAGE_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")  # and <= 63
NATS_TOKEN = re.compile(r"^[^.*>\s]+$")
POSTGRES_INDEX_ENTRY_BYTES = 2704  # the B-tree limit of one entry (8 kB pages)


@pytest.mark.parametrize("name", ["a", "ab", "user-service", "a1", "x" * MAX_NAME_LENGTH, "a--b"])
def test_names_that_follow_the_rule(name: str) -> None:
    assert is_name(name)
    assert name_problem(name) is None
    assert check_name(name) == name


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("", "it is empty"),
        ("x" * (MAX_NAME_LENGTH + 1), "it has 64 characters, more than 63"),
        ("x" * 10_000, "it has 10000 characters, more than 63"),
        ("ab-", "it ends with '-'"),
        ("-ab", "it starts with '-', not a letter"),
        ("1ab", "it starts with '1', not a letter"),
        ("User", "it contains 'U' (use lower case)"),
        ("a_b", "it contains '_'"),
        ("a.b", "it contains '.'"),
        ("a b", "it contains ' '"),
        ("é", "it contains 'é'"),
    ],
)
def test_each_refusal_says_why_and_states_the_whole_rule(name: str, reason: str) -> None:
    problem = name_problem(name)
    assert problem is not None
    assert reason in problem
    assert problem.endswith(f"a name is {NAME_RULE}")
    assert "1 to 63 characters" in NAME_RULE
    assert "lower-case letters a-z, digits 0-9 and '-'" in NAME_RULE
    assert "starting with a letter and not ending with '-'" in NAME_RULE
    assert "\n" not in problem
    with pytest.raises(ValueError, match="is not a valid name"):
        check_name(name)


def test_a_long_name_is_quoted_short() -> None:
    problem = name_problem("y" * 10_000)
    assert problem is not None
    assert len(problem) < 400


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from("ab-09_.Z é"), max_size=70) | st.text(max_size=70))
def test_the_rule_is_exactly_a_dns_label(text: str) -> None:
    label = re.fullmatch(r"[a-z]([a-z0-9-]*[a-z0-9])?", text) is not None
    assert is_name(text) == (label and len(text) <= MAX_NAME_LENGTH)
    assert (name_problem(text) is None) == is_name(text)


@settings(max_examples=300, deadline=None)
@given(st.from_regex(r"[a-z]([a-z0-9-]{0,61}[a-z0-9])?", fullmatch=True))
def test_every_name_fits_backstage_nats_and_a_postgres_index(name: str) -> None:
    assert is_name(name)
    assert BACKSTAGE_NAME.match(name) and len(name) <= 63
    assert NATS_TOKEN.match(name)
    assert len(name.encode()) <= MAX_NAME_LENGTH < POSTGRES_INDEX_ENTRY_BYTES
