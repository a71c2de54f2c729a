"""Subject patterns with NATS rules, matched against event types.

An event's type is its subject: dot-separated tokens such as ``user.registered``. In a
pattern, ``*`` matches exactly one token and ``>`` (last token only) matches one or more:
``user.*`` matches ``user.registered`` but not ``user.profile.updated``; ``order.>``
matches both ``order.created`` and ``order.payment.failed``; ``>`` matches everything.

Types and patterns keep the limits of :mod:`hybridmesh.events.limits`: at most 128
characters, and tokens of ASCII letters, digits, ``-`` and ``_`` (or a wildcard), which are
safe in a NATS subject and a Kafka topic name alike.
"""

from __future__ import annotations

from functools import lru_cache

from hybridmesh.core.errors import ValidationError
from hybridmesh.events.limits import MAX_TYPE, TYPE_TOKEN, shown


def _tokens(text: str, what: str, *, wildcards: bool) -> list[str]:
    if not isinstance(text, str) or not text or any(c.isspace() for c in text):
        raise ValidationError(f"{what} {shown(text)} must be non-empty and contain no whitespace")
    if len(text) > MAX_TYPE:
        raise ValidationError(f"{what} {shown(text)} is longer than {MAX_TYPE} characters")
    tokens = text.split(".")
    for index, token in enumerate(tokens):
        if not token:
            raise ValidationError(f"{what} {shown(text)} has an empty token")
        if not wildcards and ("*" in token or ">" in token):
            raise ValidationError(f"{what} {shown(text)} may not contain wildcards")
        if wildcards and token == ">" and index != len(tokens) - 1:
            raise ValidationError(f"{what} {shown(text)}: '>' may only be the last token")
        if wildcards and token not in ("*", ">") and ("*" in token or ">" in token):
            raise ValidationError(f"{what} {shown(text)}: wildcards must be whole tokens")
        if not TYPE_TOKEN.fullmatch(token) and not (wildcards and token in ("*", ">")):
            raise ValidationError(
                f"{what} {shown(text)}: tokens are ASCII letters, digits, '-' and '_'"
            )
    return tokens


def validate_subject(subject: str) -> str:
    """Return ``subject`` or raise ``ValidationError`` (an event type has no wildcards)."""
    _tokens(subject, "event type", wildcards=False)
    return subject


def validate_pattern(pattern: str) -> str:
    """Return ``pattern`` or raise ``ValidationError``."""
    _tokens(pattern, "pattern", wildcards=True)
    return pattern


@lru_cache(maxsize=4096)
def _compiled(pattern: str) -> tuple[str, ...]:
    return tuple(_tokens(pattern, "pattern", wildcards=True))


@lru_cache(maxsize=65536)
def matches(pattern: str, subject: str) -> bool:
    """Whether ``subject`` matches ``pattern``."""
    want = _compiled(pattern)
    have = subject.split(".")
    for index, token in enumerate(want):
        if token == ">":
            return len(have) > index
        if index >= len(have):
            return False
        if token != "*" and token != have[index]:
            return False
    return len(have) == len(want)


def literal_prefix(pattern: str) -> str:
    """The leading tokens of ``pattern`` before any wildcard (``""`` when it starts with one);
    backends use it to narrow what they read."""
    prefix: list[str] = []
    for token in _compiled(pattern):
        if token in ("*", ">"):
            break
        prefix.append(token)
    return ".".join(prefix)


__all__ = ["literal_prefix", "matches", "validate_pattern", "validate_subject"]
