"""Subject patterns with NATS rules: ``*`` is one token, ``>`` one or more at the end."""

from __future__ import annotations

import re

import pytest

from hybridmesh.core.errors import ValidationError
from hybridmesh.events.subjects import (
    literal_prefix,
    matches,
    validate_pattern,
    validate_subject,
)


class TestMatches:
    @pytest.mark.parametrize(
        ("pattern", "subject", "expected"),
        [
            # exact
            ("user.registered", "user.registered", True),
            ("user.registered", "user.deleted", False),
            ("user.registered", "user", False),
            ("user.registered", "user.registered.v2", False),
            ("user", "user", True),
            ("user", "users", False),
            ("user.registered", "User.Registered", False),  # case-sensitive
            # '*' is exactly one token
            ("user.*", "user.registered", True),
            ("user.*", "user.deleted", True),
            ("user.*", "user", False),
            ("user.*", "user.profile.updated", False),
            ("user.*", "order.created", False),
            ("*.created", "order.created", True),
            ("*.created", "order.item.created", False),
            ("*.created", "created", False),
            ("order.*.failed", "order.payment.failed", True),
            ("order.*.failed", "order.failed", False),
            ("order.*.failed", "order.payment.retry.failed", False),
            ("*", "anything", True),
            ("*", "two.tokens", False),
            ("*.*", "two.tokens", True),
            ("*.*", "one", False),
            ("*.*", "three.tokens.here", False),
            # '>' is one or more tokens, at the end
            ("order.>", "order.created", True),
            ("order.>", "order.payment.failed", True),
            ("order.>", "order.a.b.c.d.e", True),
            ("order.>", "order", False),
            ("order.>", "orders.created", False),
            ("order.>", "user.order.created", False),
            ("*.>", "order.created", True),
            ("*.>", "order", False),
            ("order.*.>", "order.payment.failed", True),
            ("order.*.>", "order.payment", False),
        ],
    )
    def test_matches(self, pattern: str, subject: str, expected: bool) -> None:
        assert matches(pattern, subject) is expected

    @pytest.mark.parametrize(
        "subject", ["a", "user.registered", "order.payment.failed", "x.y.z.w.v.u"]
    )
    def test_greater_than_alone_matches_everything(self, subject: str) -> None:
        assert matches(">", subject) is True

    def test_tokens_match_whole_not_as_prefixes(self) -> None:
        assert matches("user.reg", "user.registered") is False
        assert matches("user", "user.registered") is False
        assert matches("use.>", "user.registered") is False

    def test_invalid_pattern_raises_when_matching(self) -> None:
        with pytest.raises(ValidationError):
            matches("a.>.b", "a.x.b")


class TestValidatePattern:
    @pytest.mark.parametrize(
        "pattern",
        ["user.registered", "user.*", "order.>", ">", "*", "*.*.>", "a-b.c_d.E9", "order.*.failed"],
    )
    def test_valid_patterns_are_returned(self, pattern: str) -> None:
        assert validate_pattern(pattern) == pattern

    @pytest.mark.parametrize(
        "pattern",
        [
            pytest.param("", id="empty"),
            pytest.param(".", id="only-dot"),
            pytest.param("user.", id="trailing-dot"),
            pytest.param(".user", id="leading-dot"),
            pytest.param("user..registered", id="empty-middle-token"),
            pytest.param(">.user", id="gt-first"),
            pytest.param("order.>.failed", id="gt-middle"),
            pytest.param(">.>", id="gt-twice"),
            pytest.param("a*", id="star-in-token"),
            pytest.param("user.reg*", id="star-suffix"),
            pytest.param("user.*x", id="star-prefix"),
            pytest.param("user.**", id="double-star"),
            pytest.param("order.a>", id="gt-in-token"),
            pytest.param("order.>>", id="double-gt"),
            pytest.param("user registered", id="space"),
            pytest.param(" user.registered", id="leading-space"),
            pytest.param("user.registered ", id="trailing-space"),
            pytest.param("user.\tregistered", id="tab"),
            pytest.param("user.registered\n", id="newline"),
            pytest.param("user.\u00a0x", id="nbsp"),
            pytest.param(" ", id="blank"),
        ],
    )
    def test_invalid_patterns_raise(self, pattern: str) -> None:
        with pytest.raises(ValidationError):
            validate_pattern(pattern)
        with pytest.raises(ValidationError):
            matches(pattern, "user.registered")
        with pytest.raises(ValidationError):
            literal_prefix(pattern)

    def test_error_names_the_pattern(self) -> None:
        with pytest.raises(ValidationError, match=re.escape("'order.>.failed'")):
            validate_pattern("order.>.failed")


class TestValidateSubject:
    @pytest.mark.parametrize("subject", ["user.registered", "order.payment.failed", "a", "v1.x-y"])
    def test_valid_event_types_are_returned(self, subject: str) -> None:
        assert validate_subject(subject) == subject

    @pytest.mark.parametrize(
        "subject",
        ["user.*", "*", ">", "order.>", "*.created", "order.*.failed", "user.a*", "b>.c"],
    )
    def test_event_types_with_wildcards_are_refused(self, subject: str) -> None:
        with pytest.raises(ValidationError, match="wildcard"):
            validate_subject(subject)

    @pytest.mark.parametrize(
        "subject",
        ["", "user.", ".user", "user..registered", "user registered", " user", "user\n", "a*"],
    )
    def test_malformed_event_types_are_refused(self, subject: str) -> None:
        with pytest.raises(ValidationError):
            validate_subject(subject)


class TestLiteralPrefix:
    @pytest.mark.parametrize(
        ("pattern", "prefix"),
        [
            ("user.registered", "user.registered"),
            ("user.*", "user"),
            ("order.>", "order"),
            ("order.payment.>", "order.payment"),
            ("order.*.failed", "order"),
            ("a.b.*.d.>", "a.b"),
            ("*", ""),
            (">", ""),
            ("*.created", ""),
        ],
    )
    def test_literal_prefix(self, pattern: str, prefix: str) -> None:
        assert literal_prefix(pattern) == prefix

    @pytest.mark.parametrize("pattern", ["user.*", "order.>", "order.*.failed", "a.b.*.d.>"])
    def test_every_match_starts_with_the_prefix(self, pattern: str) -> None:
        prefix = literal_prefix(pattern)
        for subject in ("user.x", "order.payment.failed", "order.x.failed", "a.b.c.d.e", "zzz"):
            if matches(pattern, subject):
                assert subject.startswith(prefix + ".")
