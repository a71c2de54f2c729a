"""Which recorded values are examples rather than promises: matchers by field.

A recorded response carries the ids, UUIDs and timestamps of the moment it was recorded; a
contract that demanded those exact values would fail against any other run. Each value is
generalised by the first rule that takes it:

1. the user's rules, from ``contracts.yaml`` (per service, a JSONPath and its matcher), for
   the bodies of every interaction the service takes part in;
2. the built-in rules: a UUID gets a regex matcher, an RFC 3339 date-time a ``datetime``
   matcher with its format, a date a ``date`` matcher, and a field that names an id, a
   trace or a time (``id``, ``orderId``, ``user_id``, ``trace_id``, ``created_at``) a
   ``type`` matcher.

Every other value stays an exact example. A ``type`` rule on an object or a list (``$``,
``$.items``) matches everything inside it by type, as Pact's matchers cascade.

Paths are written ``$.a.b``, ``$.items[*].id`` (any item of a list) or ``$['odd key']``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hybridmesh.contracts.pact import MATCHERS, Matcher, RuleGroup
from hybridmesh.core.errors import Problem, ValidationError
from hybridmesh.core.yaml_source import read_yaml

#: The file of user rules, looked for in the recording folder.
RULES_FILE = "contracts.yaml"

UUID_REGEX = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
_UUID = re.compile(UUID_REGEX)
_DATETIME = re.compile(
    r"^\d{4}-\d{2}-\d{2}(?P<sep>[Tt ])\d{2}:\d{2}:\d{2}(?:\.(?P<fraction>\d{1,9}))?"
    r"(?P<zone>[Zz]|[+-]\d{2}:\d{2})$"
)
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# Field names whose values change from one call to the next: ids, traces, times.
_VOLATILE_NAME = re.compile(
    r"(^id$|_id$|[a-z]Id$|^uuid$|trace|span_?id|request_?id|correlation|"
    r"_at$|[a-z]At$|^timestamp$|^time$)",
    re.IGNORECASE,
)
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _group(matcher: Matcher) -> RuleGroup:
    return RuleGroup((matcher,))


def datetime_format(sample: str) -> str | None:
    """The Pact ``datetime`` format (Java's pattern letters) that ``sample`` is written in,
    or None when it is not an RFC 3339 date-time."""
    found = _DATETIME.match(sample)
    if found is None:
        return None
    separator = "'T'" if found["sep"] in "Tt" else " "
    fraction = "." + "S" * len(found["fraction"]) if found["fraction"] else ""
    zone = "'Z'" if found["zone"] in "Zz" else "XXX"
    return f"yyyy-MM-dd{separator}HH:mm:ss{fraction}{zone}"


def builtin_matcher(name: str | int | None, value: Any) -> Matcher | None:
    """The matcher the built-in rules give ``value``, found under key ``name``, or None."""
    if isinstance(value, str):
        if _UUID.match(value):
            return Matcher("regex", {"regex": UUID_REGEX})
        fmt = datetime_format(value)
        if fmt is not None:
            return Matcher("datetime", {"format": fmt})
        if _DATE.match(value):
            return Matcher("date", {"format": "yyyy-MM-dd"})
    if (
        isinstance(name, str)
        and isinstance(value, str | int | float)
        and not isinstance(value, bool)
        and _VOLATILE_NAME.search(name)
    ):
        return Matcher("type")
    return None


def child_path(parent: str, part: str | int) -> str:
    """The JSONPath of ``part`` inside ``parent``; list items are all ``[*]``."""
    if isinstance(part, int):
        return f"{parent}[*]"
    if _IDENTIFIER.match(part):
        return f"{parent}.{part}"
    escaped = part.replace("\\", "\\\\").replace("'", "\\'")
    return f"{parent}['{escaped}']"


@dataclass
class FieldRules:
    """The user's rules by service, and the built-in rules after them."""

    by_service: dict[str, dict[str, Matcher]]

    @classmethod
    def none(cls) -> FieldRules:
        return cls({})

    def for_services(self, services: Iterable[str]) -> dict[str, Matcher]:
        """The user's rules that apply to an interaction between ``services``."""
        rules: dict[str, Matcher] = {}
        for service in services:
            for path, matcher in self.by_service.get(service, {}).items():
                rules.setdefault(path, matcher)
        return rules

    def generalise(self, body: Any, services: Iterable[str]) -> dict[str, RuleGroup]:
        """The ``body`` matching rules for ``body``, by JSONPath.

        Walked with a list of pending nodes, not recursion; a node a user rule takes is
        not looked into further (its rule covers what is inside).
        """
        user = self.for_services(services)
        found: dict[str, RuleGroup] = {}
        pending: list[tuple[str, str | int | None, Any]] = [("$", None, body)]
        while pending:
            path, name, value = pending.pop()
            if path in found:
                continue  # another item of the same list said it already
            chosen = user.get(path)
            if chosen is not None:
                found[path] = _group(chosen)
                continue
            if isinstance(value, dict):
                pending.extend((child_path(path, k), k, v) for k, v in reversed(value.items()))
            elif isinstance(value, list):
                pending.extend(
                    (child_path(path, i), i, v) for i, v in reversed(list(enumerate(value)))
                )
            else:
                matcher = builtin_matcher(name, value)
                if matcher is not None:
                    found[path] = _group(matcher)
        return dict(sorted(found.items()))


def load_field_rules(path: Path | str) -> FieldRules:
    """The user's rules in the YAML file ``path``::

        services:
          user-service:
            $.email: {match: regex, regex: "^[^@]+@[^@]+$"}
            $.name: type

    A missing file holds no rules. A malformed one is refused with its file, line and field.
    """
    file = Path(path)
    if not file.exists():
        return FieldRules.none()
    name = str(file)
    documents = read_yaml(file)
    if not documents or documents[0].data is None:
        return FieldRules.none()
    data, lines = documents[0].data, documents[0].lines
    problems: list[Problem] = []

    def fail(loc: tuple[str | int, ...], message: str) -> None:
        field = ".".join(str(p) for p in loc)
        problems.append(Problem(message, file=name, line=lines.line_of(loc), field=field or None))

    services = data.get("services") if isinstance(data, dict) else None
    if not isinstance(services, dict):
        fail(("services",), "expected 'services:', a mapping of service names to rules")
        raise ValidationError(problems)
    rules: dict[str, dict[str, Matcher]] = {}
    for service, written in services.items():
        if not isinstance(written, dict):
            fail(("services", service), "expected a mapping of JSONPaths to matchers")
            continue
        rules[str(service)] = {}
        for where, spec in written.items():
            loc = ("services", service, where)
            if not isinstance(where, str) or not where.startswith("$"):
                fail(loc, "a rule's path is a JSONPath starting with '$'")
                continue
            matcher = _matcher(spec, loc, fail)
            if matcher is not None:
                rules[str(service)][where] = matcher
    if problems:
        raise ValidationError(problems)
    return FieldRules(rules)


def _matcher(spec: Any, loc: tuple[str | int, ...], fail: Any) -> Matcher | None:
    """A matcher written as its name (``type``) or as a mapping (``{match: regex, ...}``)."""
    if isinstance(spec, str):
        spec = {"match": spec}
    if not isinstance(spec, dict):
        fail(loc, "expected a matcher name or a mapping with 'match'")
        return None
    kind = spec.get("match")
    if kind not in MATCHERS:
        fail((*loc, "match"), f"unknown matcher {kind!r}; one of {', '.join(sorted(MATCHERS))}")
        return None
    options = {str(k): v for k, v in spec.items() if k != "match"}
    if kind == "regex":
        pattern = options.get("regex")
        if not isinstance(pattern, str):
            fail((*loc, "regex"), "a regex matcher needs 'regex'")
            return None
        try:
            re.compile(pattern)
        except re.error as error:
            fail((*loc, "regex"), f"not a valid regex: {error}")
            return None
    return Matcher(str(kind), options)


__all__ = [
    "RULES_FILE",
    "UUID_REGEX",
    "FieldRules",
    "builtin_matcher",
    "child_path",
    "datetime_format",
    "load_field_rules",
]
