"""``request_transformer`` and ``response_transformer``: change a request on its way to the
backend, or an answer on its way back, like Kong's plugins of those names.

Settings (every part optional)::

    request_transformer:
      remove:  {headers: [x-debug], querystring: [trace], body: [password]}
      rename:  {headers: {x-old: x-new}, querystring: {q: query}, body: {fname: first_name}}
      replace: {headers: {x-env: prod}, querystring: {v: "2"}, body: {source: gateway},
                uri: "/v2/orders/{id}"}
      add:     {headers: {x-team: erp}, querystring: {lang: en}, body: {channel: web}}
      append:  {headers: {x-tag: gw}, querystring: {tag: gw}, body: {tags: gw}}

    response_transformer:
      remove:  {headers: [server], json: [internal_id]}
      rename:  {headers: {x-old: x-new}, json: {oldName: new_name}}
      replace: {headers: {cache-control: no-store}, json: {status: ok}}
      add:     {headers: {x-served-by: gateway}, json: {version: 2}}
      append:  {headers: {vary: accept}, json: {links: "/help"}}

The operations run in Kong's order, remove, rename, replace, add, append:

- ``remove``: drop every field of that name;
- ``rename``: move a present field's values to the new name (replacing what stood there);
- ``replace``: set a field only if it is present (one value, where the first one stood);
- ``add``: set a field only if it is absent;
- ``append``: always add a value (another header or query parameter of that name; in a
  JSON body, the field becomes a list holding the old value(s) and the new one).

``body`` (request) and ``json`` (answer) change the top-level fields of a JSON object body
(``application/json`` or ``+json``), and only such bodies: other bodies, or JSON that is
not an object, go through unchanged. The gateway frames bodies itself, so a changed body
gets its new length. ``replace.uri`` is a new path for the backend; ``{name}`` stands for a
named group of the route's path regex (empty when the group did not match).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import quote_plus, unquote_plus

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from hybridmesh.core.serialization import dumpb, json_problems, loads
from hybridmesh.gateway.config import PolicyKind, UrlPath, register_policy
from hybridmesh.gateway.http import Answer, Headers, ProxyRequest
from hybridmesh.gateway.policies.base import (
    ORDER_TRANSFORM,
    Policy,
    PolicyContext,
    register_builder,
)

_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,256}")
_FIELD_VALUE = re.compile(r"[^\x00-\x08\x0a-\x1f\x7f]*")
_TEMPLATE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")

#: Request headers the gateway sets itself (the backend's address, framing, forwarding,
#: the request id): a transformer may not touch them.
GATEWAY_REQUEST_HEADERS = frozenset(
    {
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "upgrade",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "x-request-id",
    }
)
#: Answer headers the gateway sets itself (framing, the request id).
GATEWAY_RESPONSE_HEADERS = frozenset(
    {
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "trailer",
        "upgrade",
        "x-request-id",
    }
)


def _header_name(owned: frozenset[str]) -> Any:
    def check(value: str) -> str:
        if not _TOKEN.fullmatch(value):
            raise ValueError(f"{value[:40]!r} is not a header name (RFC 9110 token characters)")
        value = value.lower()
        if value in owned:
            raise ValueError(f"{value} is set by the gateway and cannot be transformed")
        return value

    return AfterValidator(check)


def _header_value(value: str) -> str:
    if not _FIELD_VALUE.fullmatch(value):
        raise ValueError("a header value may not hold control characters (CR, LF, NUL)")
    return value


def _json_value(value: Any) -> Any:
    problems = json_problems(value)
    if problems:
        where, what = problems[0]
        raise ValueError(f"{where or 'the value'}: {what}")
    return value


def _uri(value: str) -> str:
    if len(value) > 2048:
        raise ValueError("a uri may have at most 2048 characters")
    return value


RequestHeader = Annotated[str, _header_name(GATEWAY_REQUEST_HEADERS)]
ResponseHeader = Annotated[str, _header_name(GATEWAY_RESPONSE_HEADERS)]
HeaderValue = Annotated[str, Field(max_length=8192), AfterValidator(_header_value)]
QueryName = Annotated[str, Field(min_length=1, max_length=256)]
QueryValue = Annotated[str, Field(max_length=8192)]
FieldName = Annotated[str, Field(min_length=1, max_length=256)]
FieldValue = Annotated[Any, AfterValidator(_json_value)]
UriSetting = Annotated[UrlPath, AfterValidator(_uri)]


class _Strict(BaseModel):
    # Header and query values may be written as numbers in YAML (x-version: 2).
    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)


class RequestNames(_Strict):
    headers: tuple[RequestHeader, ...] = ()
    querystring: tuple[QueryName, ...] = ()
    body: tuple[FieldName, ...] = ()


class RequestRenames(_Strict):
    headers: dict[RequestHeader, RequestHeader] = {}
    querystring: dict[QueryName, QueryName] = {}
    body: dict[FieldName, FieldName] = {}


class RequestValues(_Strict):
    headers: dict[RequestHeader, HeaderValue] = {}
    querystring: dict[QueryName, QueryValue] = {}
    body: dict[FieldName, FieldValue] = {}


class RequestReplace(RequestValues):
    #: The backend's new path; ``{name}`` is a named group of the route's path regex.
    uri: UriSetting | None = None


class RequestTransformerSettings(_Strict):
    remove: RequestNames = RequestNames()
    rename: RequestRenames = RequestRenames()
    replace: RequestReplace = RequestReplace()
    add: RequestValues = RequestValues()
    append: RequestValues = RequestValues()


class ResponseNames(_Strict):
    headers: tuple[ResponseHeader, ...] = ()
    json_: tuple[FieldName, ...] = Field((), alias="json")


class ResponseRenames(_Strict):
    headers: dict[ResponseHeader, ResponseHeader] = {}
    json_: dict[FieldName, FieldName] = Field({}, alias="json")


class ResponseValues(_Strict):
    headers: dict[ResponseHeader, HeaderValue] = {}
    json_: dict[FieldName, FieldValue] = Field({}, alias="json")


class ResponseTransformerSettings(_Strict):
    remove: ResponseNames = ResponseNames()
    rename: ResponseRenames = ResponseRenames()
    replace: ResponseValues = ResponseValues()
    add: ResponseValues = ResponseValues()
    append: ResponseValues = ResponseValues()


# -- the operations, precomputed -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ops:
    """One kind of field's operations, in the order they run."""

    remove: tuple[str, ...]
    rename: tuple[tuple[str, str], ...]
    replace: tuple[tuple[str, Any], ...]
    add: tuple[tuple[str, Any], ...]
    append: tuple[tuple[str, Any], ...]

    @classmethod
    def of(
        cls,
        remove: tuple[str, ...],
        rename: dict[str, str],
        replace: dict[str, Any],
        add: dict[str, Any],
        append: dict[str, Any],
    ) -> Ops | None:
        """The operations, or None when there are none (nothing to do per request)."""
        if not (remove or rename or replace or add or append):
            return None
        return cls(
            tuple(remove),
            tuple(rename.items()),
            tuple(replace.items()),
            tuple(add.items()),
            tuple(append.items()),
        )


def transform_headers(ops: Ops, headers: Headers) -> None:
    for name in ops.remove:
        headers.remove(name)
    for old, new in ops.rename:
        values = headers.get_all(old)
        if values and old != new:
            headers.remove(old)
            headers.remove(new)
            for value in values:
                headers.add(new, value)
    for name, value in ops.replace:
        if name in headers:
            headers.set(name, value)
    for name, value in ops.add:
        if name not in headers:
            headers.add(name, value)
    for name, value in ops.append:
        headers.add(name, value)


def _query_pair(name: str, value: str) -> tuple[str, str]:
    return name, f"{quote_plus(name)}={quote_plus(value)}"


def transform_query(ops: Ops, query: str) -> str:
    """``query`` changed by ``ops``; parameters no operation touches keep their encoding."""
    # Each parameter as (decoded name, the raw text of the pair).
    pairs = [(unquote_plus(raw.partition("=")[0]), raw) for raw in query.split("&") if raw]
    if ops.remove:
        gone = frozenset(ops.remove)
        pairs = [pair for pair in pairs if pair[0] not in gone]
    for old, new in ops.rename:
        if old == new or not any(name == old for name, _ in pairs):
            continue
        renamed = []
        for name, raw in pairs:
            if name == new:
                continue  # replaced by the renamed ones
            if name == old:
                _, equals, value = raw.partition("=")
                name, raw = new, quote_plus(new) + equals + value
            renamed.append((name, raw))
        pairs = renamed
    for key, value in ops.replace:
        if any(name == key for name, _ in pairs):
            first = next(i for i, (name, _) in enumerate(pairs) if name == key)
            pairs = [
                _query_pair(key, value) if i == first else pair
                for i, pair in enumerate(pairs)
                if i == first or pair[0] != key
            ]
    for key, value in ops.add:
        if not any(name == key for name, _ in pairs):
            pairs.append(_query_pair(key, value))
    for key, value in ops.append:
        pairs.append(_query_pair(key, value))
    return "&".join(raw for _, raw in pairs)


def transform_object(ops: Ops, document: dict[str, Any]) -> bool:
    """Change a JSON object's top-level fields in place; whether anything changed."""
    changed = False
    for name in ops.remove:
        if name in document:
            del document[name]
            changed = True
    for old, new in ops.rename:
        if old in document and old != new:
            document[new] = document.pop(old)
            changed = True
    for name, value in ops.replace:
        if name in document:
            document[name] = value
            changed = True
    for name, value in ops.add:
        if name not in document:
            document[name] = value
            changed = True
    for name, value in ops.append:
        if name not in document:
            document[name] = value
        elif isinstance(document[name], list):
            document[name] = [*document[name], value]  # a new list: settings stay as written
        else:
            document[name] = [document[name], value]
        changed = True
    return changed


def is_json(content_type: str | None) -> bool:
    """Whether a ``Content-Type`` names JSON (``application/json``, ``*/*+json``)."""
    if not content_type:
        return False
    media = content_type.partition(";")[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


def transform_json_body(ops: Ops, body: bytes) -> bytes | None:
    """The new body, or None to keep ``body`` (not a JSON object, or nothing changed)."""
    if body.strip():
        try:
            document = loads(body)
        except ValueError:
            return None
        if not isinstance(document, dict):
            return None
    else:
        document = {}
    if not transform_object(ops, document):
        return None
    return dumpb(document)


class PathTemplate:
    """``/v2/orders/{id}`` split once into text and capture names."""

    __slots__ = ("parts",)

    def __init__(self, template: str) -> None:
        # re.split with one group: text, name, text, name, ..., text.
        pieces = _TEMPLATE.split(template)
        self.parts = tuple((piece, i % 2 == 1) for i, piece in enumerate(pieces) if piece)

    def render(self, captures: dict[str, str]) -> str:
        return "".join(captures.get(piece, "") if name else piece for piece, name in self.parts)


# -- the policies ----------------------------------------------------------------------------


class RequestTransformer(Policy):
    def __init__(self, settings: RequestTransformerSettings, context: PolicyContext) -> None:
        s = settings
        self.headers = Ops.of(
            s.remove.headers, s.rename.headers, s.replace.headers, s.add.headers, s.append.headers
        )
        self.query = Ops.of(
            s.remove.querystring,
            s.rename.querystring,
            s.replace.querystring,
            s.add.querystring,
            s.append.querystring,
        )
        self.body = Ops.of(s.remove.body, s.rename.body, s.replace.body, s.add.body, s.append.body)
        self.uri = PathTemplate(s.replace.uri) if s.replace.uri is not None else None
        self.reads_request_body = self.body is not None

    async def request(self, request: ProxyRequest) -> Answer | None:
        if self.headers is not None:
            transform_headers(self.headers, request.headers)
        if self.query is not None:
            request.query = transform_query(self.query, request.query)
        if self.body is not None and is_json(request.headers.get("content-type")):
            body = transform_json_body(self.body, request.body)
            if body is not None:
                request.body = body
        if self.uri is not None:
            request.path = self.uri.render(request.captures)
        return None


class ResponseTransformer(Policy):
    def __init__(self, settings: ResponseTransformerSettings, context: PolicyContext) -> None:
        s = settings
        self.headers = Ops.of(
            s.remove.headers, s.rename.headers, s.replace.headers, s.add.headers, s.append.headers
        )
        self.json = Ops.of(
            s.remove.json_, s.rename.json_, s.replace.json_, s.add.json_, s.append.json_
        )
        # Only a policy that changes JSON reads whole answers; others let them stream.
        self.transforms_response_body = self.json is not None

    def response_head(self, request: ProxyRequest, status: int, headers: Headers) -> None:
        if self.headers is not None:
            transform_headers(self.headers, headers)

    def response_body(
        self, request: ProxyRequest, status: int, headers: Headers, body: bytes
    ) -> bytes:
        if self.json is None or not body or not is_json(headers.get("content-type")):
            return body
        encoding = headers.get("content-encoding")
        if encoding is not None and encoding.strip().lower() != "identity":
            return body  # compressed: left as the backend sent it
        changed = transform_json_body(self.json, body)
        return body if changed is None else changed


register_policy(
    PolicyKind("request_transformer", RequestTransformerSettings, ORDER_TRANSFORM, __doc__ or "")
)
register_builder("request_transformer", RequestTransformer)
register_policy(
    PolicyKind("response_transformer", ResponseTransformerSettings, ORDER_TRANSFORM, __doc__ or "")
)
register_builder("response_transformer", ResponseTransformer)
