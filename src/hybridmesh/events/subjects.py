"""Subject patterns with NATS rules, matched against event types.

An event's type is its subject: dot-separated tokens such as ``user.registered``. In a
pattern, ``*`` matches exactly one token and ``>`` (last token only) matches one or more:
``user.*`` matches ``user.registered`` but not ``user.profile.updated``; ``order.>``
matches both ``order.created`` and ``order.payment.failed``; ``>`` matches everything.
"""

from __future__ import annotations

from functools import lru_cache

from hybridmesh.core.errors import ValidationError


def _tokens(text: str, what: str, *, wildcards: bool) -> list[str]:
    if not text or text != text.strip() or any(c.isspace() for c in text):
        raise ValidationError(f"{what} {text!r} must be non-empty and contain no whitespace")
    tokens = text.split(".")
    for index, token in enumerate(tokens):
        if not token:
            raise ValidationError(f"{what} {text!r} has an empty token")
        if not wildcards and ("*" in token or ">" in token):
            raise ValidationError(f"{what} {text!r} may not contain wildcards")
        if wildcards and token == ">" and index != len(tokens) - 1:
            raise ValidationError(f"{what} {text!r}: '>' may only be the last token")
        if wildcards and token not in ("*", ">") and ("*" in token or ">" in token):
            raise ValidationError(f"{what} {text!r}: wildcards must be whole tokens")
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
