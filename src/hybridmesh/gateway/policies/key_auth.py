"""``key_auth``: only callers with an API key pass (Kong's key-auth).

Settings::

    key_auth:
      header_names: [apikey, x-api-key]   # where the key is looked for, in this order
      query_names: [apikey]               # then in these query parameters
      hide_credentials: false             # true: the backend never sees the key
      anonymous: null                     # a consumer for requests that bring no key
      realm: hybridmesh                   # of the WWW-Authenticate challenge

Keys are made with ``hybridmesh keys create --consumer NAME [--route ROUTE]`` and stored
as SHA-256 digests; the policy looks the key's digest up among the active keys of the
gateway's live snapshot, so a revoked key is refused as soon as the replica has read the
revocation (within a second). A key made for another route is refused.

A missing, unknown, revoked or foreign key is answered 401 with
``WWW-Authenticate: Key realm="hybridmesh"`` and never reaches a backend. A request that
passes carries its consumer (``X-Consumer-Username``) and key id
(``X-Credential-Identifier``) to the backend; whatever the client sent under those names
is removed first.
"""

from __future__ import annotations

import re
from typing import Annotated
from urllib.parse import unquote_plus

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from hybridmesh.core.names import Name
from hybridmesh.gateway.config import HeaderName, PolicyKind, register_policy
from hybridmesh.gateway.http import Answer, ProxyRequest, problem
from hybridmesh.gateway.policies.base import ORDER_AUTH, Policy, PolicyContext, register_builder
from hybridmesh.gateway.policies.identity import check_realm, set_identity
from hybridmesh.gateway.snapshot import key_digest

_QUERY_NAME = re.compile(r"[A-Za-z0-9._~!$'()*+,;:@/?-]{1,256}")


def _query_name(value: str) -> str:
    if not _QUERY_NAME.fullmatch(value):
        raise ValueError(
            f"{value[:40]!r} is not a query parameter name (letters, digits and URL-safe "
            "characters other than '&', '=', '#' and '%')"
        )
    return value


QueryName = Annotated[str, AfterValidator(_query_name)]
Realm = Annotated[str, AfterValidator(check_realm)]


class KeyAuthSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Request headers that may carry the key, looked at in this order.
    header_names: tuple[HeaderName, ...] = Field(("apikey", "x-api-key"), max_length=16)
    #: Query parameters that may carry the key, looked at after the headers.
    query_names: tuple[QueryName, ...] = Field(("apikey",), max_length=16)
    #: Remove the key (every header and query parameter above) before the backend.
    hide_credentials: bool = False
    #: Requests without a key pass as this consumer (a wrong key is still refused).
    anonymous: Name | None = None
    #: The realm of the ``WWW-Authenticate`` challenge of a refusal.
    realm: Realm = "hybridmesh"

    @model_validator(mode="after")
    def _somewhere(self) -> KeyAuthSettings:
        if not self.header_names and not self.query_names:
            raise ValueError("give at least one of header_names and query_names")
        return self


class KeyAuth(Policy):
    def __init__(self, settings: KeyAuthSettings, context: PolicyContext) -> None:
        self.route = context.route
        self.snapshot = context.snapshot
        self.header_names = settings.header_names
        self.query_names = frozenset(settings.query_names)
        self.hide = settings.hide_credentials
        self.anonymous = settings.anonymous
        self.challenge = [("www-authenticate", f'Key realm="{settings.realm}"')]

    async def request(self, request: ProxyRequest) -> Answer | None:
        headers = request.headers
        key = None
        for name in self.header_names:
            value = headers.get(name)
            if value and value.strip():
                key = value.strip()
                break
        if key is None and self.query_names and request.query:
            key = self._from_query(request.query)
        if self.hide:
            self._hide(request)
        if key is None:
            if self.anonymous is not None:
                set_identity(request, self.anonymous, anonymous=True)
                return None
            return self._refuse(request, "no API key in the request")
        record = self.snapshot().keys.get(key_digest(key))
        if record is None:
            return self._refuse(request, "the API key is not valid (unknown or revoked)")
        if record.route is not None and record.route != self.route:
            return self._refuse(request, "the API key is not valid on this route")
        set_identity(request, record.consumer, record.id)
        return None

    def _from_query(self, query: str) -> str | None:
        for part in query.split("&"):
            name, _, value = part.partition("=")
            if unquote_plus(name) in self.query_names:
                value = unquote_plus(value).strip()
                if value:
                    return value
        return None

    def _hide(self, request: ProxyRequest) -> None:
        headers = request.headers
        names = self.header_names
        if any(name in names for name, _ in headers.pairs):
            headers.pairs = [(n, v) for n, v in headers.pairs if n not in names]
        if self.query_names and request.query:
            parts = request.query.split("&")
            kept = [p for p in parts if unquote_plus(p.partition("=")[0]) not in self.query_names]
            if len(kept) != len(parts):
                request.query = "&".join(kept)

    def _refuse(self, request: ProxyRequest, detail: str) -> Answer:
        return problem(401, detail, request_id=request.request_id, headers=self.challenge)


register_policy(PolicyKind("key_auth", KeyAuthSettings, ORDER_AUTH, __doc__ or ""))
register_builder("key_auth", KeyAuth)
