"""What changed between the committed contracts and a new recording.

Interactions are paired by their identity (method, path with ids generalised and status;
or the event type), not by their description, so renaming an interaction or naming its
provider state in the committed file is not a change. For each pair, what a provider
promises and what a consumer sends is compared: the request (method, path, query, headers,
body), the response (status, headers, body), a message's contents and metadata, and the
matching rules. The ids in a path are examples, not promises, and so is a value a matcher
covers (in either file): a new UUID or timestamp is no change; the matcher itself is
compared.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hybridmesh.contracts.pact import (
    HttpInteraction,
    Interaction,
    MatchingRules,
    MessageInteraction,
    Pact,
    read_pacts,
)
from hybridmesh.contracts.rules import child_path

ADDED = "added"
REMOVED = "removed"
CHANGED = "changed"


@dataclass
class InteractionChange:
    """One interaction added, removed or changed in the pair's file; ``fields`` names
    what differs (``response.body.email``, ``request.headers.Accept``)."""

    file: str
    consumer: str
    provider: str
    interaction: str
    change: str
    fields: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "consumer": self.consumer,
            "provider": self.provider,
            "interaction": self.interaction,
            "change": self.change,
            "fields": self.fields,
        }


def diff_folders(committed: Path | str, recorded: Path | str) -> list[InteractionChange]:
    """Every change from the pacts in ``committed`` to those in ``recorded``, by file and
    interaction. Raises ``ValidationError`` when a file in either is malformed."""
    old = {p.file_name: p for p in read_pacts(committed)}
    new = {p.file_name: p for p in read_pacts(recorded)}
    changes: list[InteractionChange] = []
    for name in sorted(old.keys() | new.keys()):
        changes.extend(diff_pacts(old.get(name), new.get(name)))
    return changes


def diff_pacts(old: Pact | None, new: Pact | None) -> list[InteractionChange]:
    """The changes from ``old`` to ``new``, two versions of one pair's file (None: the
    file is not there)."""
    either = new or old
    if either is None:
        return []

    def change(identity: str, kind: str, fields: list[str] | None = None) -> InteractionChange:
        assert either is not None
        return InteractionChange(
            either.file_name, either.consumer, either.provider, identity, kind, fields or []
        )

    before = {i.identity: i for i in (old.interactions if old else [])}
    after = {i.identity: i for i in (new.interactions if new else [])}
    changes: list[InteractionChange] = []
    for identity in sorted(before.keys() | after.keys()):
        was, now = before.get(identity), after.get(identity)
        if was is None:
            changes.append(change(identity, ADDED))
        elif now is None:
            changes.append(change(identity, REMOVED))
        else:
            fields = interaction_differences(was, now)
            if fields:
                changes.append(change(identity, CHANGED, fields))
    return changes


def interaction_differences(old: Interaction, new: Interaction) -> list[str]:
    """The fields that differ between two versions of one interaction."""
    if type(old) is not type(new):
        return ["type"]
    out: list[str] = []
    if isinstance(old, HttpInteraction) and isinstance(new, HttpInteraction):
        a, b = old.request, new.request
        rules = _merged(a.matching_rules, b.matching_rules)
        # Method and path (its ids generalised) are the identity the two share; the ids
        # themselves are examples.
        _compare(a.query, b.query, "request.query", out, _names(rules.get("query")))
        _compare(
            _fold(a.headers), _fold(b.headers), "request.headers", out, _names(rules.get("header"))
        )
        _compare_body(a.body, b.body, "request.body", rules, out)
        _compare_rules(a.matching_rules, b.matching_rules, "request.matchingRules", out)
        c, d = old.response, new.response
        rules = _merged(c.matching_rules, d.matching_rules)
        _compare(c.status, d.status, "response.status", out)
        _compare(
            _fold(c.headers), _fold(d.headers), "response.headers", out, _names(rules.get("header"))
        )
        _compare_body(c.body, d.body, "response.body", rules, out)
        _compare_rules(c.matching_rules, d.matching_rules, "response.matchingRules", out)
    elif isinstance(old, MessageInteraction) and isinstance(new, MessageInteraction):
        rules = _merged(old.matching_rules, new.matching_rules)
        _compare_body(old.contents, new.contents, "contents", rules, out)
        _compare(old.metadata, new.metadata, "metadata", out, _names(rules.get("metadata")))
        _compare_rules(old.matching_rules, new.matching_rules, "matchingRules", out)
    return out


# ------------------------------------------------------------------------------ comparing


def _merged(a: MatchingRules, b: MatchingRules) -> MatchingRules:
    merged: MatchingRules = {k: dict(v) for k, v in a.items()}
    for category, groups in b.items():
        merged.setdefault(category, {}).update(groups)
    return merged


def _fold(headers: Mapping[str, list[str]]) -> dict[str, list[str]]:
    """Header names compared without regard to case."""
    return {k.lower(): v for k, v in headers.items()}


def _names(groups: Mapping[str, Any] | None) -> Callable[[str], bool]:
    """Whether a top-level name (a header, a query parameter, a metadata key) has a rule."""
    names = {k.lower() for k in groups or {}}
    return lambda path: path.split(".", 1)[0].lower() in names


def _compare_rules(a: MatchingRules, b: MatchingRules, where: str, out: list[str]) -> None:
    for category in sorted(a.keys() | b.keys()):
        ga, gb = a.get(category, {}), b.get(category, {})
        for name in sorted(ga.keys() | gb.keys()):
            ra, rb = ga.get(name), gb.get(name)
            if (ra.to_json() if ra else None) != (rb.to_json() if rb else None):
                out.append(f"{where}.{category}" + (f".{name}" if name else ""))


def _compare_body(a: Any, b: Any, where: str, rules: MatchingRules, out: list[str]) -> None:
    if a is None or b is None:
        if (a is None) != (b is None):
            out.append(where)
        return
    if a.content_type != b.content_type:
        out.append(f"{where}.contentType")
    covered = list(rules.get("body", {}))

    def is_covered(jsonpath: str) -> bool:
        return any(jsonpath == p or jsonpath.startswith((p + ".", p + "[")) for p in covered)

    _compare_json(a.content, b.content, where, is_covered, out)


def _compare(
    a: Any, b: Any, where: str, out: list[str], skip: Callable[[str], bool] | None = None
) -> None:
    """Leaf by leaf, keys of mappings in turn; ``skip`` takes the path below ``where``."""
    pending: list[tuple[str, Any, Any]] = [("", a, b)]
    while pending:
        path, x, y = pending.pop()
        if skip is not None and path and skip(path):
            continue
        if isinstance(x, dict) and isinstance(y, dict):
            for key in sorted(x.keys() | y.keys(), reverse=True):
                inner = f"{path}.{key}" if path else str(key)
                pending.append((inner, x.get(key), y.get(key)))
        elif x != y:
            out.append(f"{where}.{path}" if path else where)


def _compare_json(
    a: Any, b: Any, where: str, covered: Callable[[str], bool], out: list[str]
) -> None:
    """Two JSON bodies; a value at a JSONPath a rule covers is not compared."""
    pending: list[tuple[str, str, Any, Any]] = [("$", "", a, b)]
    while pending:
        jsonpath, shown, x, y = pending.pop()
        if covered(jsonpath):
            continue
        here = where + (shown if not shown or shown.startswith("[") else f".{shown}")
        if isinstance(x, dict) and isinstance(y, dict):
            for key in sorted(x.keys() | y.keys(), reverse=True):
                if key not in x or key not in y:
                    out.append(f"{here}.{key}")
                    continue
                inner = f"{shown}.{key}" if shown else str(key)
                pending.append((child_path(jsonpath, key), inner, x[key], y[key]))
        elif isinstance(x, list) and isinstance(y, list):
            if len(x) != len(y):
                out.append(f"{here} (length {len(x)} -> {len(y)})")
            for index in reversed(range(min(len(x), len(y)))):
                pending.append(
                    (child_path(jsonpath, index), f"{shown}[{index}]", x[index], y[index])
                )
        elif x != y or type(x) is not type(y):
            out.append(here)


__all__ = [
    "ADDED",
    "CHANGED",
    "REMOVED",
    "InteractionChange",
    "diff_folders",
    "diff_pacts",
    "interaction_differences",
]
