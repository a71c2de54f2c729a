"""Pact V4 contract files: read, check, write.

One file holds the contract between one consumer and one provider,
``<consumer>-<provider>.json``, in the Pact specification's version 4 JSON form, so the
files that hybridmesh records are the files every Pact tool reads, and files written with
Pact's own consumer libraries are read here. Two kinds of interaction are understood:

- ``Synchronous/HTTP``: a request (method, path, query, headers, body) and the response
  (status, headers, body) the provider gives it;
- ``Asynchronous/Messages``: a message's contents (for a CloudEvent, its data) and metadata
  (the CloudEvent's attributes); the consumer is the consumer group, the provider the
  producing service.

Keys this model does not use (``pending``, ``comments``, ``generators``, plugin settings)
are kept as written, so reading and writing a file changes nothing a person put in it.

A file that is not a valid V4 pact is refused with a :class:`ValidationError` whose
problems name the file, the line and the field (``interactions[2].response.status``).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from hybridmesh.contracts._json_lines import json_lines
from hybridmesh.core.errors import Problem, ValidationError
from hybridmesh.core.yaml_lines import Lines, Location

#: The Pact specification version this model reads and writes.
PACT_SPECIFICATION = "4.0"
HTTP_INTERACTION = "Synchronous/HTTP"
MESSAGE_INTERACTION = "Asynchronous/Messages"
#: Largest contract file read, in bytes.
MAX_PACT_BYTES = 16 * 1024 * 1024

#: The matcher names of the V4 specification.
MATCHERS = frozenset(
    {
        "arrayContains",
        "boolean",
        "contentType",
        "date",
        "datetime",
        "decimal",
        "eachKey",
        "eachValue",
        "equality",
        "include",
        "integer",
        "max",
        "min",
        "notEmpty",
        "null",
        "number",
        "regex",
        "semver",
        "statusCode",
        "time",
        "timestamp",
        "type",
        "values",
    }
)
#: The categories of a request's or response's ``matchingRules``; ``path`` holds one rule
#: group itself, the others a group per JSONPath or name.
HTTP_RULE_CATEGORIES = frozenset({"body", "header", "query", "path", "status"})
MESSAGE_RULE_CATEGORIES = frozenset({"body", "metadata"})
_FLAT_CATEGORIES = frozenset({"path", "status"})

_METHOD = re.compile(r"^[A-Za-z]{1,20}$")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_LONG_ID = re.compile(r"^(?=.*\d)[0-9A-Za-z_-]{16,}$")
_INTEGER = re.compile(r"^\d+$")


# ------------------------------------------------------------------------------ the model


@dataclass(frozen=True)
class Matcher:
    """One matcher: its name (``type``, ``regex``, ``datetime``...) and its settings
    (``regex``, ``format``, ``min``...), as they are written beside ``match``."""

    match: str
    options: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"match": self.match, **self.options}


@dataclass(frozen=True)
class RuleGroup:
    """The matchers for one path or name, combined with ``AND`` or ``OR``."""

    matchers: tuple[Matcher, ...]
    combine: str = "AND"

    def to_json(self) -> dict[str, Any]:
        return {"combine": self.combine, "matchers": [m.to_json() for m in self.matchers]}


#: category (``body``, ``header``, ``query``, ``path``, ``metadata``) → JSONPath or name →
#: rules. The ``path`` category has a single group, kept under the key ``""``.
MatchingRules = dict[str, dict[str, RuleGroup]]


@dataclass
class Body:
    """A body as Pact V4 writes it: the content (a JSON value for JSON bodies, else text,
    or base64 text when ``encoded`` names it) and its content type."""

    content: Any
    content_type: str | None = None
    encoded: bool | str = False

    def to_json(self) -> dict[str, Any]:
        written: dict[str, Any] = {"content": self.content, "encoded": self.encoded}
        if self.content_type is not None:
            written["contentType"] = self.content_type
        return written


@dataclass
class ProviderState:
    """A state the provider must be in for an interaction, with its parameters."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, **({"params": self.params} if self.params else {})}


@dataclass
class HttpRequest:
    method: str
    path: str
    query: dict[str, list[str]] = field(default_factory=dict)
    headers: dict[str, list[str]] = field(default_factory=dict)
    body: Body | None = None
    matching_rules: MatchingRules = field(default_factory=dict)
    #: Keys kept as written (``generators``...).
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        written: dict[str, Any] = {**self.extra, "method": self.method, "path": self.path}
        if self.query:
            written["query"] = self.query
        _write_common(written, self.headers, self.body, self.matching_rules)
        return written


@dataclass
class HttpResponse:
    status: int
    headers: dict[str, list[str]] = field(default_factory=dict)
    body: Body | None = None
    matching_rules: MatchingRules = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        written: dict[str, Any] = {**self.extra, "status": self.status}
        _write_common(written, self.headers, self.body, self.matching_rules)
        return written


@dataclass
class HttpInteraction:
    """A request and the response the provider gives it."""

    kind: ClassVar[str] = HTTP_INTERACTION

    description: str
    request: HttpRequest
    response: HttpResponse
    provider_states: list[ProviderState] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def identity(self) -> str:
        """What makes two recordings "the same interaction": method, path with its ids
        generalised (``/users/{id}``) and status, whatever the description says."""
        return f"{self.request.method.upper()} {path_template(self.request.path)} " + str(
            self.response.status
        )

    def to_json(self) -> dict[str, Any]:
        return {
            **self.extra,
            "type": self.kind,
            "description": self.description,
            "providerStates": [s.to_json() for s in self.provider_states],
            "request": self.request.to_json(),
            "response": self.response.to_json(),
        }


@dataclass
class MessageInteraction:
    """A message the provider publishes and the consumer handles: for a CloudEvent, its
    data as ``contents`` and its attributes as ``metadata``."""

    kind: ClassVar[str] = MESSAGE_INTERACTION

    description: str
    contents: Body | None
    metadata: dict[str, Any] = field(default_factory=dict)
    matching_rules: MatchingRules = field(default_factory=dict)
    provider_states: list[ProviderState] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def event_type(self) -> str | None:
        """The CloudEvent type the message carries, when its metadata says."""
        found = self.metadata.get("type")
        return found if isinstance(found, str) else None

    @property
    def identity(self) -> str:
        return f"event {self.event_type}" if self.event_type else f"message {self.description}"

    def to_json(self) -> dict[str, Any]:
        written: dict[str, Any] = {
            **self.extra,
            "type": self.kind,
            "description": self.description,
            "providerStates": [s.to_json() for s in self.provider_states],
            "metadata": self.metadata,
        }
        if self.contents is not None:
            written["contents"] = self.contents.to_json()
        if self.matching_rules:
            written["matchingRules"] = _rules_to_json(self.matching_rules)
        return written


Interaction = HttpInteraction | MessageInteraction


@dataclass
class Pact:
    """The contract between one consumer and one provider."""

    consumer: str
    provider: str
    interactions: list[Interaction] = field(default_factory=list)
    #: The file's ``metadata``; ``pactSpecification.version`` is always written as 4.0.
    metadata: dict[str, Any] = field(default_factory=dict)
    #: Where it was read from, if it was.
    path: Path | None = None

    @property
    def file_name(self) -> str:
        return pact_file_name(self.consumer, self.provider)

    def find(self, identity: str) -> Interaction | None:
        """The interaction with this :attr:`HttpInteraction.identity`, or None."""
        return next((i for i in self.interactions if i.identity == identity), None)

    def to_json(self) -> dict[str, Any]:
        metadata = dict(self.metadata)
        metadata["pactSpecification"] = {"version": PACT_SPECIFICATION}
        return {
            "consumer": {"name": self.consumer},
            "provider": {"name": self.provider},
            "interactions": [i.to_json() for i in self.interactions],
            "metadata": metadata,
        }


def pact_file_name(consumer: str, provider: str) -> str:
    """``<consumer>-<provider>.json``, the name Pact tools give the pair's file."""
    return f"{consumer}-{provider}.json"


def path_template(path: str) -> str:
    """``path`` with the segments that are ids (numbers, UUIDs, long tokens with digits)
    written ``{id}``: ``/users/42/orders`` → ``/users/{id}/orders``."""
    segments = path.split("/")
    return "/".join("{id}" if _is_id(s) else s for s in segments)


def path_regex(template: str) -> str:
    """A regex that matches every path of ``template`` (each ``{id}`` one segment)."""
    parts = ["[^/]+" if s == "{id}" else re.escape(s) for s in template.split("/")]
    return "^" + "/".join(parts) + "$"


def _is_id(segment: str) -> bool:
    return bool(_INTEGER.match(segment) or _UUID.match(segment) or _LONG_ID.match(segment))


def _write_common(
    written: dict[str, Any],
    headers: dict[str, list[str]],
    body: Body | None,
    rules: MatchingRules,
) -> None:
    if headers:
        written["headers"] = headers
    if body is not None:
        written["body"] = body.to_json()
    if rules:
        written["matchingRules"] = _rules_to_json(rules)


def _rules_to_json(rules: MatchingRules) -> dict[str, Any]:
    written: dict[str, Any] = {}
    for category, groups in rules.items():
        if category in _FLAT_CATEGORIES:
            group = groups.get("")
            if group is not None:
                written[category] = group.to_json()
        else:
            written[category] = {where: g.to_json() for where, g in groups.items()}
    return written


# ------------------------------------------------------------------------------ writing


def dumps_pact(pact: Pact) -> str:
    """The file's text: keys sorted and indented, as Pact's own tools write them, so a
    recording and its committed copy differ only where the contract does."""
    return json.dumps(pact.to_json(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write_pact(pact: Pact, folder: Path | str) -> Path:
    """Write ``pact`` to ``folder``/``<consumer>-<provider>.json`` (made if missing),
    atomically: a reader sees the old file or the new one, never half of one."""
    directory = Path(folder)
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / pact.file_name
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=f".{pact.file_name}.")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(dumps_pact(pact))
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return target


# ------------------------------------------------------------------------------ reading


def read_pact(path: Path | str) -> Pact:
    """The pact in the file at ``path``; :class:`ValidationError` when it is not one."""
    file = Path(path)
    try:
        size = file.stat().st_size
        if size > MAX_PACT_BYTES:
            raise ValidationError(
                [Problem(f"the file is {size} bytes, over {MAX_PACT_BYTES}", file=str(file))]
            )
        data = file.read_bytes()
    except OSError as error:
        raise ValidationError(
            [Problem(f"cannot read: {error.strerror or error}", file=str(file))]
        ) from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ValidationError([Problem("the file is not UTF-8 text", file=str(file))]) from None
    pact = parse_pact(text, str(file))
    pact.path = file
    return pact


def read_pacts(folder: Path | str) -> list[Pact]:
    """Every pact in ``folder`` (its ``*.json`` files, by name; a missing folder holds
    none). Every file is checked: the problems of all of them are raised together."""
    directory = Path(folder)
    if not directory.exists():
        return []
    if not directory.is_dir():
        raise ValidationError([Problem("not a folder", file=str(directory))])
    pacts: list[Pact] = []
    problems: list[Problem] = []
    for file in sorted(directory.glob("*.json")):
        try:
            pacts.append(read_pact(file))
        except ValidationError as refused:
            problems.extend(refused.problems)
    if problems:
        raise ValidationError(problems)
    return pacts


def parse_pact(text: str, file: str = "<pact>") -> Pact:
    """The pact written in ``text`` (read from ``file``, for the messages)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValidationError(
            [Problem(f"not JSON: {error.msg} (column {error.colno})", file=file, line=error.lineno)]
        ) from None
    checker = _Checker(file, json_lines(text))
    pact = checker.pact(data)
    if checker.problems or pact is None:
        raise ValidationError(checker.problems)
    return pact


def _field(loc: Location) -> str:
    """``interactions[2].response.status`` for ``("interactions", 2, "response", "status")``."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


class _Checker:
    """Builds the model from parsed JSON, collecting a located problem for each thing that
    is wrong rather than stopping at the first."""

    def __init__(self, file: str, lines: Lines) -> None:
        self.file = file
        self.lines = lines
        self.problems: list[Problem] = []

    def fail(self, loc: Location, message: str) -> None:
        self.problems.append(
            Problem(message, file=self.file, line=self.lines.line_of(loc), field=_field(loc))
        )

    # -- shapes

    def mapping(self, value: Any, loc: Location) -> dict[str, Any] | None:
        if isinstance(value, dict):
            return value
        self.fail(loc, f"must be an object, not {_kind(value)}")
        return None

    def text(self, value: Any, loc: Location, *, empty: bool = False) -> str | None:
        if isinstance(value, str) and (empty or value):
            return value
        self.fail(loc, "must be a non-empty string" if not empty else "must be a string")
        return None

    def items(self, value: Any, loc: Location) -> Iterator[tuple[int, Any]]:
        if value is None:
            return iter(())
        if not isinstance(value, list):
            self.fail(loc, f"must be a list, not {_kind(value)}")
            return iter(())
        return enumerate(value)

    # -- the file

    def pact(self, data: Any) -> Pact | None:
        root = self.mapping(data, ())
        if root is None:
            return None
        metadata = self.mapping(root.get("metadata"), ("metadata",)) or {}
        version = None
        spec = metadata.get("pactSpecification")
        if isinstance(spec, dict):
            version = spec.get("version")
        if version != PACT_SPECIFICATION:
            self.fail(
                ("metadata", "pactSpecification", "version"),
                f"must be {PACT_SPECIFICATION!r} (a Pact V4 file), not {version!r}",
            )
        consumer = self.party(root.get("consumer"), ("consumer",))
        provider = self.party(root.get("provider"), ("provider",))
        if "interactions" not in root:
            self.fail(("interactions",), "is missing")
        interactions: list[Interaction] = []
        seen: dict[str, int] = {}
        for index, item in self.items(root.get("interactions"), ("interactions",)):
            loc = ("interactions", index)
            interaction = self.interaction(item, loc)
            if interaction is None:
                continue
            key = interaction.description + repr([s.name for s in interaction.provider_states])
            if key in seen:
                self.fail(
                    (*loc, "description"),
                    f"interactions[{seen[key]}] has the same description and provider states",
                )
            seen.setdefault(key, index)
            interactions.append(interaction)
        if consumer is None or provider is None:
            return None
        return Pact(consumer, provider, interactions, dict(metadata))

    def party(self, value: Any, loc: Location) -> str | None:
        found = self.mapping(value, loc)
        return None if found is None else self.text(found.get("name"), (*loc, "name"))

    def interaction(self, value: Any, loc: Location) -> Interaction | None:
        item = self.mapping(value, loc)
        if item is None:
            return None
        kind = item.get("type")
        description = self.text(item.get("description"), (*loc, "description"))
        states = self.states(item.get("providerStates"), (*loc, "providerStates"))
        extra = {
            k: v
            for k, v in item.items()
            if k
            not in {
                "type",
                "description",
                "providerStates",
                "request",
                "response",
                "contents",
                "metadata",
                "matchingRules",
            }
        }
        if kind == HTTP_INTERACTION:
            request = self.request(item.get("request"), (*loc, "request"))
            response = self.response(item.get("response"), (*loc, "response"))
            if description is None or request is None or response is None:
                return None
            return HttpInteraction(description, request, response, states, extra)
        if kind == MESSAGE_INTERACTION:
            contents = (
                self.body(item["contents"], (*loc, "contents")) if "contents" in item else None
            )
            metadata = self.mapping(item.get("metadata", {}), (*loc, "metadata"))
            rules = self.rules(
                item.get("matchingRules"), (*loc, "matchingRules"), MESSAGE_RULE_CATEGORIES
            )
            if description is None or metadata is None:
                return None
            return MessageInteraction(description, contents, metadata, rules, states, extra)
        self.fail(
            (*loc, "type"),
            f"must be {HTTP_INTERACTION!r} or {MESSAGE_INTERACTION!r}, not {kind!r}",
        )
        return None

    def states(self, value: Any, loc: Location) -> list[ProviderState]:
        states: list[ProviderState] = []
        for index, item in self.items(value, loc):
            state = self.mapping(item, (*loc, index))
            if state is None:
                continue
            name = self.text(state.get("name"), (*loc, index, "name"))
            params = self.mapping(state.get("params", {}), (*loc, index, "params"))
            if name is not None and params is not None:
                states.append(ProviderState(name, params))
        return states

    def request(self, value: Any, loc: Location) -> HttpRequest | None:
        found = self.mapping(value, loc)
        if found is None:
            return None
        method = self.text(found.get("method"), (*loc, "method"))
        if method is not None and not _METHOD.match(method):
            self.fail((*loc, "method"), f"{method!r} is not an HTTP method")
            method = None
        path = self.text(found.get("path"), (*loc, "path"))
        if path is not None and not path.startswith("/"):
            self.fail((*loc, "path"), "must start with '/'")
            path = None
        query = self.multi(found.get("query"), (*loc, "query"))
        headers = self.multi(found.get("headers"), (*loc, "headers"))
        body = self.body(found["body"], (*loc, "body")) if "body" in found else None
        rules = self.rules(found.get("matchingRules"), (*loc, "matchingRules"))
        extra = _rest(found, {"method", "path", "query", "headers", "body", "matchingRules"})
        if method is None or path is None:
            return None
        return HttpRequest(method, path, query, headers, body, rules, extra)

    def response(self, value: Any, loc: Location) -> HttpResponse | None:
        found = self.mapping(value, loc)
        if found is None:
            return None
        status = found.get("status")
        if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
            self.fail((*loc, "status"), f"must be an HTTP status from 100 to 599, not {status!r}")
            status = None
        headers = self.multi(found.get("headers"), (*loc, "headers"))
        body = self.body(found["body"], (*loc, "body")) if "body" in found else None
        rules = self.rules(found.get("matchingRules"), (*loc, "matchingRules"))
        extra = _rest(found, {"status", "headers", "body", "matchingRules"})
        if status is None:
            return None
        return HttpResponse(status, headers, body, rules, extra)

    def multi(self, value: Any, loc: Location) -> dict[str, list[str]]:
        """Headers or query parameters: each name with its values (one value written as a
        string is read as a list of one)."""
        if value is None:
            return {}
        found = self.mapping(value, loc)
        result: dict[str, list[str]] = {}
        for name, values in (found or {}).items():
            if isinstance(values, str):
                result[name] = [values]
            elif isinstance(values, list) and all(isinstance(v, str) for v in values):
                result[name] = list(values)
            else:
                self.fail((*loc, name), "must be a string or a list of strings")
        return result

    def body(self, value: Any, loc: Location) -> Body | None:
        found = self.mapping(value, loc)
        if found is None:
            return None
        if "content" not in found:
            self.fail((*loc, "content"), "is missing (a V4 body is {content, contentType})")
            return None
        content_type = found.get("contentType")
        if content_type is not None and not isinstance(content_type, str):
            self.fail((*loc, "contentType"), "must be a string")
            content_type = None
        encoded = found.get("encoded", False)
        if not isinstance(encoded, bool | str):
            self.fail((*loc, "encoded"), "must be false, true or an encoding name")
            encoded = False
        return Body(found["content"], content_type, encoded)

    def rules(
        self,
        value: Any,
        loc: Location,
        categories: frozenset[str] = HTTP_RULE_CATEGORIES,
    ) -> MatchingRules:
        if value is None:
            return {}
        found = self.mapping(value, loc)
        rules: MatchingRules = {}
        for category, groups in (found or {}).items():
            where = (*loc, category)
            if category not in categories:
                self.fail(
                    where, f"unknown category; expected one of {', '.join(sorted(categories))}"
                )
                continue
            if category in _FLAT_CATEGORIES:
                group = self.group(groups, where)
                rules[category] = {"": group} if group is not None else {}
                continue
            paths = self.mapping(groups, where) or {}
            rules[category] = {}
            for path, written in paths.items():
                if category == "body" and not str(path).startswith("$"):
                    self.fail((*where, path), "a body rule's path is a JSONPath starting with '$'")
                    continue
                group = self.group(written, (*where, path))
                if group is not None:
                    rules[category][path] = group
        return rules

    def group(self, value: Any, loc: Location) -> RuleGroup | None:
        found = self.mapping(value, loc)
        if found is None:
            return None
        combine = found.get("combine", "AND")
        if combine not in ("AND", "OR"):
            self.fail((*loc, "combine"), f"must be 'AND' or 'OR', not {combine!r}")
            return None
        matchers: list[Matcher] = []
        if "matchers" not in found:
            self.fail((*loc, "matchers"), "is missing")
        for index, item in self.items(found.get("matchers"), (*loc, "matchers")):
            matcher = self.matcher(item, (*loc, "matchers", index))
            if matcher is not None:
                matchers.append(matcher)
        return RuleGroup(tuple(matchers), combine)

    def matcher(self, value: Any, loc: Location) -> Matcher | None:
        found = self.mapping(value, loc)
        if found is None:
            return None
        name = found.get("match")
        if name not in MATCHERS:
            self.fail((*loc, "match"), f"unknown matcher {name!r}")
            return None
        options = {k: v for k, v in found.items() if k != "match"}
        if name == "regex":
            pattern = options.get("regex")
            if not isinstance(pattern, str):
                self.fail((*loc, "regex"), "a regex matcher needs its regex as a string")
                return None
            try:
                re.compile(pattern)
            except re.error as error:
                self.fail((*loc, "regex"), f"not a valid regex: {error}")
                return None
        if name in ("date", "time", "datetime", "timestamp") and not isinstance(
            options.get("format", ""), str
        ):
            self.fail((*loc, "format"), "must be a string")
            return None
        return Matcher(str(name), options)


def _rest(found: Mapping[str, Any], used: Iterable[str]) -> dict[str, Any]:
    skip = set(used)
    return {k: v for k, v in found.items() if k not in skip}


def _kind(value: Any) -> str:
    if value is None:
        return "null (or missing)"
    return {
        dict: "an object",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
    }.get(type(value), type(value).__name__)


__all__ = [
    "HTTP_INTERACTION",
    "MATCHERS",
    "MESSAGE_INTERACTION",
    "PACT_SPECIFICATION",
    "Body",
    "HttpInteraction",
    "HttpRequest",
    "HttpResponse",
    "Interaction",
    "Matcher",
    "MatchingRules",
    "MessageInteraction",
    "Pact",
    "ProviderState",
    "RuleGroup",
    "dumps_pact",
    "pact_file_name",
    "parse_pact",
    "path_regex",
    "path_template",
    "read_pact",
    "read_pacts",
    "write_pact",
]
