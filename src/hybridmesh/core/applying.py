"""What applying a set of named definitions (routes, flags) to the store does.

Applying compares what is stored with what is given, by name: new ones are created,
changed ones updated, the same ones left, and with ``prune`` the stored ones not given are
deleted. :func:`plan_apply` computes it (``diff`` commands show it; ``apply`` does it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class ApplyResult:
    """Names created, updated, left unchanged and deleted."""

    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, list[str]]:
        return {
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "deleted": self.deleted,
        }


def plan_apply(
    current: Mapping[str, T], given: Sequence[T], name: Callable[[T], str], *, prune: bool
) -> ApplyResult:
    """What storing ``given`` over ``current`` (by ``name``) changes."""
    result = ApplyResult()
    names: set[str] = set()
    for item in given:
        key = name(item)
        names.add(key)
        old = current.get(key)
        if old is None:
            result.created.append(key)
        elif old == item:
            result.unchanged.append(key)
        else:
            result.updated.append(key)
    if prune:
        result.deleted.extend(sorted(set(current) - names))
    return result


__all__ = ["ApplyResult", "plan_apply"]
