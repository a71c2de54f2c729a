"""``jwt``: only callers with a valid JSON Web Token pass (Kong's jwt, with keys from a
secret, a PEM public key or an identity provider's JWKS).

Settings::

    jwt:
      algorithms: [RS256]                  # required: HS256, RS256, ES256
      jwks_url: https://idp.example.com/.well-known/jwks.json
      issuer: https://idp.example.com/
      audience: orders-api
      leeway: 30                           # seconds of clock skew allowed
      consumer_claim: sub                  # the claim that names the consumer

The token comes from ``Authorization: Bearer TOKEN`` (another ``header``, or a ``cookie``).
Its signature is checked with a key that fits its algorithm: HS256 with the shared secret
(``secret_env``, or ``secret``), RS256 with an RSA key, ES256 with a P-256 key (from
``public_key``, ``public_key_file`` or ``jwks_url``). Only the algorithms the settings
name are accepted, ``alg: none`` never is, and a key is never used for an algorithm of
another family, so an HS256 token "signed" with the RSA public key fails (RFC 8725
section 2.1). Then ``exp``, ``nbf`` and ``iat``, ``iss`` and ``aud`` are checked, with
``leeway`` seconds of skew.

A request without a valid token is answered 401 with ``WWW-Authenticate: Bearer`` (and
``error="invalid_token"`` when a token was sent) and a detail that says what was wrong;
it never reaches a backend. A request that passes carries its claims
(``request.claims``: sticky splits by ``claim`` use them) and its consumer, told to the
backend in ``X-Consumer-Username``.

A JWKS is fetched on the first request, kept ``jwks_cache_seconds`` (then refetched in
the background while the old keys serve), and fetched again at once for a token whose
``kid`` it does not have, at most once every ``jwks_refetch_seconds``. While it has
never been fetched, requests are answered 503.

A token that passed is remembered until it expires, so a client sending the same token
again costs a dictionary look-up; a new JWKS (or a new route revision) forgets them all.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import aiohttp
import jwt
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from hybridmesh.core.limits import Delay, Seconds
from hybridmesh.gateway.config import HeaderName, PolicyKind, register_policy
from hybridmesh.gateway.http import Answer, Headers, ProxyRequest, problem
from hybridmesh.gateway.policies.base import ORDER_AUTH, Policy, PolicyContext, register_builder
from hybridmesh.gateway.policies.identity import check_realm, set_identity
from hybridmesh.observability import get_logger

log = get_logger("hybridmesh.gateway.jwt")

#: The algorithms a route may accept.
ALGORITHMS = ("HS256", "RS256", "ES256")
#: RFC 7518 section 3.2: an HS256 key has at least as many bits as the hash (256).
MIN_SECRET_BYTES = 32
#: RFC 7518 section 3.3: RS256 keys have 2048 bits or more.
MIN_RSA_BITS = 2048
#: The largest JWKS document read.
MAX_JWKS_BYTES = 1024 * 1024
#: Tokens a route remembers as verified (the oldest are forgotten first).
MAX_VERIFIED = 10_000

_ENV = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,254}")
_CLAIM = re.compile(r"[\x21-\x7e]{1,256}")
_COOKIE = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,256}")
#: What a consumer named by a claim may look like (it goes into a header).
_CONSUMER = re.compile(r"[\x21-\x7e](?:[\x20-\x7e]{0,254}[\x21-\x7e])?")


def _algorithms(value: tuple[str, ...]) -> tuple[str, ...]:
    if not value:
        raise ValueError(f"name at least one of {', '.join(ALGORITHMS)}")
    for name in value:
        if name not in ALGORITHMS:
            never = " (unsigned tokens are never accepted)" if name.lower() == "none" else ""
            raise ValueError(
                f"{name[:20]!r} is not an algorithm accepted here{never}; the algorithms are "
                f"{', '.join(ALGORITHMS)}"
            )
    return tuple(dict.fromkeys(value))


def _jwks_url(value: str) -> str:
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018  (raises on a malformed port)
    except ValueError:
        raise ValueError(f"{value[:80]!r} is not an http(s) URL: malformed host or port") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{value[:80]!r} is not an http(s) URL with a host")
    if parts.username is not None or parts.password is not None or parts.fragment:
        raise ValueError(f"{value[:80]!r}: a JWKS URL has no user, password or fragment")
    if re.search(r"[\x00-\x20\x7f]", value):
        raise ValueError(f"{value[:80]!r}: a URL has no spaces or control characters")
    return value


def _env_name(value: str) -> str:
    if not _ENV.fullmatch(value):
        raise ValueError(f"{value[:40]!r} is not an environment variable name")
    return value


def _claim(value: str) -> str:
    if not _CLAIM.fullmatch(value):
        raise ValueError("a claim name is 1 to 256 printable ASCII characters, no spaces")
    return value


def _cookie(value: str) -> str:
    if not _COOKIE.fullmatch(value):
        raise ValueError(f"{value[:40]!r} is not a cookie name (RFC 6265 token characters)")
    return value


def _secret_problem(secret: str) -> str | None:
    if len(secret.encode()) < MIN_SECRET_BYTES:
        return f"is shorter than {MIN_SECRET_BYTES} bytes, too short for HS256 (RFC 7518 3.2)"
    if secret.lstrip().startswith("-----BEGIN"):
        return "is a PEM key; HS256 takes a shared secret (RS256 and ES256 take public keys)"
    return None


def _secret(value: str) -> str:
    problem = _secret_problem(value)
    if problem is not None:
        raise ValueError(f"the secret {problem}")
    return value


PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey


def load_public_key(data: bytes, what: str) -> PublicKey:
    """A PEM public key (or X.509 certificate) for RS256 or ES256; ValueError saying what
    is wrong with ``what`` otherwise."""
    try:
        if b"-----BEGIN CERTIFICATE-----" in data:
            key: Any = x509.load_pem_x509_certificate(data).public_key()
        else:
            key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise ValueError(
            f"{what} is not a PEM public key or certificate ('-----BEGIN PUBLIC KEY-----')"
        ) from None
    problem = _key_problem(key)
    if problem is not None:
        raise ValueError(f"{what} {problem}")
    return key  # type: ignore[no-any-return]


def _key_problem(key: Any) -> str | None:
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            return f"is an RSA key of {key.key_size} bits; RS256 needs {MIN_RSA_BITS} or more"
        return None
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name != "secp256r1":
            return f"is an EC key on {key.curve.name}; ES256 needs P-256"
        return None
    return "must be an RSA key (RS256) or a P-256 EC key (ES256)"


def _algorithm_of(key: PublicKey) -> str:
    return "RS256" if isinstance(key, rsa.RSAPublicKey) else "ES256"


def _public_key(value: str) -> str:
    load_public_key(value.encode(), "public_key")
    return value


class JwtSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    #: The algorithms accepted; a token with any other (or ``none``) is refused.
    algorithms: Annotated[tuple[str, ...], AfterValidator(_algorithms)]
    #: The HS256 shared secret, stored with the route (prefer ``secret_env``).
    secret: Annotated[str, StringConstraints(max_length=4096), AfterValidator(_secret)] | None = (
        None
    )
    #: The environment variable of each gateway replica that holds the HS256 secret.
    secret_env: Annotated[str, AfterValidator(_env_name)] | None = None
    #: A PEM public key (or certificate) for RS256 or ES256, in the route itself.
    public_key: (
        Annotated[str, StringConstraints(max_length=65_536), AfterValidator(_public_key)] | None
    ) = None
    #: A PEM file on each replica with the public key (or certificate).
    public_key_file: str | None = Field(None, min_length=1, max_length=4096)
    #: Where the identity provider publishes its JSON Web Key Set.
    jwks_url: Annotated[str, AfterValidator(_jwks_url)] | None = None
    #: How long a fetched JWKS is used before it is fetched again.
    jwks_cache_seconds: Seconds = 300.0
    #: The least time between two fetches of the JWKS (for unknown ``kid`` s, after failures).
    jwks_refetch_seconds: Seconds = 30.0
    #: How long a JWKS fetch may take.
    jwks_timeout: Seconds = 5.0
    #: The ``iss`` required (one, or any of a list).
    issuer: str | tuple[str, ...] | None = None
    #: The ``aud`` required: the token names this audience (or one of a list).
    audience: str | tuple[str, ...] | None = None
    #: Seconds of clock skew allowed on ``exp``, ``nbf`` and ``iat``.
    leeway: Delay = 0.0
    #: Claims every token must have.
    required_claims: tuple[Annotated[str, AfterValidator(_claim)], ...] = Field(
        ("exp",), max_length=32
    )
    #: The request header with the token (``Bearer`` scheme in ``Authorization``).
    header: HeaderName | None = "authorization"
    #: A cookie with the token, looked at when the header has none.
    cookie: Annotated[str, AfterValidator(_cookie)] | None = None
    #: The claim whose value is the consumer (rate limits, ``X-Consumer-Username``).
    consumer_claim: Annotated[str, AfterValidator(_claim)] = "sub"
    #: The realm of the ``WWW-Authenticate`` challenge of a refusal.
    realm: Annotated[str, AfterValidator(check_realm)] = "hybridmesh"

    @model_validator(mode="after")
    def _keys_fit(self) -> JwtSettings:
        symmetric = "HS256" in self.algorithms
        asymmetric = [a for a in self.algorithms if a != "HS256"]
        secrets = [n for n in ("secret", "secret_env") if getattr(self, n) is not None]
        if symmetric and len(secrets) != 1:
            raise ValueError("HS256 needs exactly one of secret and secret_env")
        if not symmetric and secrets:
            raise ValueError(f"{secrets[0]} is given but HS256 is not in algorithms")
        sources = [
            n for n in ("public_key", "public_key_file", "jwks_url") if getattr(self, n) is not None
        ]
        if asymmetric and len(sources) != 1:
            raise ValueError(
                f"{asymmetric[0]} needs exactly one of public_key, public_key_file and jwks_url"
            )
        if not asymmetric and sources:
            raise ValueError(f"{sources[0]} is given but neither RS256 nor ES256 is in algorithms")
        if self.public_key is not None:
            served = _algorithm_of(load_public_key(self.public_key.encode(), "public_key"))
            unserved = [a for a in asymmetric if a != served]
            if unserved:
                raise ValueError(
                    f"{unserved[0]} is in algorithms but public_key is a key for {served}"
                )
        if self.header is None and self.cookie is None:
            raise ValueError("give a header or a cookie (or both) to take the token from")
        return self


# -- keys from a JWKS ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class JwkKey:
    kid: str | None
    algorithm: str
    key: Any


class JwksUnavailable(Exception):
    pass


def parse_jwks(document: Any) -> list[JwkKey]:
    """The RS256 and ES256 signing keys of a JWKS document (others are left out)."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError("is not a JWKS (a JSON object with a 'keys' list)")
    found: list[JwkKey] = []
    for entry in document["keys"]:
        if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
            continue
        kid = entry.get("kid")
        if kid is not None and not isinstance(kid, str):
            continue
        try:
            if entry.get("kty") == "RSA":
                key: Any = RSAAlgorithm.from_jwk(entry)
            elif entry.get("kty") == "EC" and entry.get("crv") == "P-256":
                key = ECAlgorithm.from_jwk(entry)
            else:
                continue  # symmetric keys never come from a JWKS, other curves are not used
        except (jwt.PyJWTError, ValueError, TypeError):
            continue
        if isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
            key = key.public_key()
        if _key_problem(key) is not None:
            continue
        algorithm = _algorithm_of(key)
        if entry.get("alg", algorithm) != algorithm:
            continue
        found.append(JwkKey(kid, algorithm, key))
    return found


async def _download(url: str, seconds: float) -> list[JwkKey]:
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=seconds)) as session,
        session.get(url, headers={"accept": "application/json"}) as response,
    ):
        if response.status != 200:
            raise ValueError(f"answered {response.status}")
        body = bytearray()
        async for chunk in response.content.iter_chunked(65_536):
            body += chunk
            if len(body) > MAX_JWKS_BYTES:
                raise ValueError(f"is over {MAX_JWKS_BYTES} bytes")
    try:
        document = json.loads(body)
    except ValueError:
        raise ValueError("is not JSON") from None
    keys = parse_jwks(document)
    if not keys:
        raise ValueError("has no RS256 or ES256 signing key")
    return keys


class JwksCache:
    """One JWKS URL's keys, shared by the routes (and route revisions) that use it."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.keys: tuple[JwkKey, ...] = ()
        self.fetched = False
        self.fetched_at = -math.inf
        self.attempted_at = -math.inf
        self.fetches = 0
        #: Moves with every successful fetch: tokens verified before must be verified again.
        self.generation = 0
        self.error = "it has not been fetched yet"
        self.ttl = 300.0
        self.refetch = 30.0
        self.timeout = 5.0
        self._task: asyncio.Task[None] | None = None

    def lookup(self, algorithm: str, kid: str | None) -> list[Any]:
        return [
            k.key
            for k in self.keys
            if k.algorithm == algorithm and (kid is None or k.kid is None or k.kid == kid)
        ]

    async def keys_for(self, algorithm: str, kid: str | None) -> list[Any]:
        """The keys a token of ``algorithm`` and ``kid`` may be signed with (fetching the
        JWKS when it is due); :class:`JwksUnavailable` while there is no JWKS at all."""
        now = time.monotonic()
        if not self.fetched:
            if self._running() or now - self.attempted_at >= self.refetch:
                await self._refresh()
            if not self.fetched:
                raise JwksUnavailable(self.error)
        elif now - self.fetched_at >= self.ttl and now - self.attempted_at >= self.refetch:
            self._start()  # the keys in hand serve while the new ones come
        found = self.lookup(algorithm, kid)
        if (
            not found
            and kid is not None
            and (self._running() or now - self.attempted_at >= self.refetch)
        ):
            await self._refresh()
            found = self.lookup(algorithm, kid)
        return found

    def _running(self) -> bool:
        task = self._task
        return (
            task is not None and not task.done() and task.get_loop() is asyncio.get_running_loop()
        )

    def _start(self) -> asyncio.Task[None]:
        if not self._running():
            self._task = asyncio.get_running_loop().create_task(
                self._fetch(), name=f"gateway:jwks:{self.url}"
            )
        assert self._task is not None
        return self._task

    async def _refresh(self) -> None:
        await asyncio.shield(self._start())

    async def _fetch(self) -> None:
        self.attempted_at = time.monotonic()
        self.fetches += 1
        try:
            keys = await _download(self.url, self.timeout)
        except Exception as error:
            what = str(error) or type(error).__name__
            self.error = f"the JWKS at {self.url} could not be fetched: {what}"
            log.warning("gateway: %s", self.error)
            return
        self.keys = tuple(keys)
        self.fetched = True
        self.fetched_at = time.monotonic()
        self.generation += 1
        self.error = ""

    async def close(self) -> None:
        if self._running():
            assert self._task is not None
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


_CACHES: dict[str, JwksCache] = {}


def jwks_cache(url: str) -> JwksCache:
    cache = _CACHES.get(url)
    if cache is None:
        cache = _CACHES[url] = JwksCache(url)
    return cache


# -- the policy ------------------------------------------------------------------------------

_REFUSALS: tuple[tuple[type[Exception], str], ...] = (
    (jwt.ExpiredSignatureError, "the token has expired"),
    (jwt.ImmatureSignatureError, "the token is not valid yet (nbf or iat in the future)"),
    (jwt.InvalidAudienceError, "wrong audience: the token is not meant for this route"),
    (jwt.InvalidIssuerError, "wrong issuer: the token was not issued by the issuer trusted here"),
    (jwt.InvalidSignatureError, "bad signature: the token was not signed with a trusted key"),
)


class JwtAuth(Policy):
    def __init__(self, settings: JwtSettings, context: PolicyContext) -> None:
        self.algorithms = frozenset(settings.algorithms)
        self.accepted = ", ".join(settings.algorithms)
        self.header = settings.header
        self.cookie = settings.cookie
        self.consumer_claim = settings.consumer_claim
        self.decoder = jwt.PyJWT()
        self.options: Any = {
            "require": list(settings.required_claims),
            "verify_aud": settings.audience is not None,
        }
        self.audience = settings.audience
        self.issuer = settings.issuer
        self.leeway = settings.leeway
        #: Tokens verified lately: token -> (good until, JWKS generation, claims, consumer).
        #: Clients send the same token again and again; checking it once per key set saves
        #: the signature and PyJWT's parsing (tens of microseconds) on the others.
        self.verified: dict[str, tuple[float, int, dict[str, Any], str]] = {}
        self.missing = [("www-authenticate", f'Bearer realm="{settings.realm}"')]
        self.invalid_prefix = f'Bearer realm="{settings.realm}", error="invalid_token"'
        #: Keys by algorithm (HS256: the secret; RS256, ES256: a public key).
        self.keys: dict[str, list[Any]] = {}
        self.jwks: JwksCache | None = None
        #: Why the policy cannot verify anything (a key it could not load), or None.
        self.broken: str | None = None
        try:
            self._load_keys(settings)
        except ValueError as error:
            self.broken = str(error)
            log.error(
                "gateway: route %s: the jwt policy refuses every request: %s", context.route, error
            )

    def _load_keys(self, settings: JwtSettings) -> None:
        secret = settings.secret
        if settings.secret_env is not None:
            secret = os.environ.get(settings.secret_env)
            if not secret:
                raise ValueError(f"the environment variable {settings.secret_env} is not set")
            problem = _secret_problem(secret)
            if problem is not None:
                raise ValueError(f"the secret in {settings.secret_env} {problem}")
        if secret is not None:
            self.keys["HS256"] = [secret.encode()]
        key: PublicKey | None = None
        if settings.public_key is not None:
            key = load_public_key(settings.public_key.encode(), "public_key")
        elif settings.public_key_file is not None:
            path = Path(settings.public_key_file)
            try:
                data = path.read_bytes()
            except OSError as error:
                raise ValueError(
                    f"public_key_file {path} cannot be read: {error.strerror or error}"
                ) from None
            key = load_public_key(data, f"public_key_file {path}")
            served = _algorithm_of(key)
            unserved = [a for a in settings.algorithms if a not in ("HS256", served)]
            if unserved:
                raise ValueError(
                    f"{unserved[0]} is in algorithms but public_key_file {path} is a key for "
                    f"{served}"
                )
        if key is not None:
            self.keys[_algorithm_of(key)] = [key]
        if settings.jwks_url is not None:
            self.jwks = jwks_cache(settings.jwks_url)
            self.jwks.ttl = settings.jwks_cache_seconds
            self.jwks.refetch = settings.jwks_refetch_seconds
            self.jwks.timeout = settings.jwks_timeout

    # -- a request -------------------------------------------------------------------------

    def _token(self, headers: Headers) -> str | None:
        if self.header is not None:
            value = headers.get(self.header)
            if value:
                scheme, _, rest = value.strip().partition(" ")
                if scheme.lower() == "bearer":
                    token = rest.strip()
                    if token:
                        return token
                elif not rest and self.header != "authorization":
                    return scheme  # a header of its own may carry the bare token
        if self.cookie is not None:
            for raw in headers.get_all("cookie"):
                for part in raw.split(";"):
                    name, _, value = part.strip().partition("=")
                    if name == self.cookie:
                        token = value.strip().strip('"')
                        if token:
                            return token
        return None

    def _refuse(self, request: ProxyRequest, detail: str, description: str) -> Answer:
        challenge = f'{self.invalid_prefix}, error_description="{description}"'
        return problem(
            401, detail, request_id=request.request_id, headers=[("www-authenticate", challenge)]
        )

    async def request(self, request: ProxyRequest) -> Answer | None:
        if self.broken is not None:
            # What is wrong (a path, a variable's name) is for the operator: it is logged.
            return problem(
                500,
                "the route's jwt policy cannot verify tokens: its key could not be loaded "
                "(the gateway's log says why)",
                request_id=request.request_id,
            )
        token = self._token(request.headers)
        if token is not None and token in self.verified and self._known(request, token):
            return None
        if token is None:
            where = f"the {self.header} header" if self.header else ""
            if self.cookie is not None:
                where = (
                    f"{where} or the {self.cookie} cookie" if where else f"the {self.cookie} cookie"
                )
            return problem(
                401,
                f"no bearer token in {where}",
                request_id=request.request_id,
                headers=self.missing,
            )
        try:
            head = jwt.get_unverified_header(token)
        except jwt.PyJWTError as error:
            return self._refuse(request, f"the token is malformed: {error}", "malformed token")
        algorithm = head.get("alg")
        if not isinstance(algorithm, str) or algorithm not in self.algorithms:
            if isinstance(algorithm, str) and algorithm.lower() == "none":
                detail = "unsupported algorithm: unsigned tokens (alg none) are never accepted"
            else:
                shown = repr(algorithm)[:40]
                detail = f"unsupported algorithm {shown}: this route accepts {self.accepted}"
            return self._refuse(request, detail, "unsupported algorithm")
        kid = head.get("kid")
        if kid is not None and not isinstance(kid, str):
            return self._refuse(request, "the token's kid is not a string", "malformed token")
        keys = self.keys.get(algorithm)
        if keys is None and self.jwks is not None:
            try:
                keys = await self.jwks.keys_for(algorithm, kid)
            except JwksUnavailable as error:
                return problem(
                    503,
                    f"tokens cannot be verified now: {error}",
                    request_id=request.request_id,
                )
        if not keys:
            detail = (
                f"no {algorithm} key with kid {kid[:80]!r} is trusted here"
                if kid is not None
                else f"no {algorithm} key is trusted here"
            )
            return self._refuse(request, detail, "unknown key")
        claims = None
        for key in keys:
            try:
                claims = self.decoder.decode(
                    token,
                    key,
                    algorithms=[algorithm],
                    options=self.options,
                    audience=self.audience,
                    issuer=self.issuer,
                    leeway=self.leeway,
                )
                break
            except jwt.InvalidSignatureError:
                continue
            except jwt.PyJWTError as error:
                return self._answer_error(request, error)
        if claims is None:
            return self._answer_error(request, jwt.InvalidSignatureError())
        consumer = claims.get(self.consumer_claim)
        if isinstance(consumer, int) and not isinstance(consumer, bool):
            consumer = str(consumer)
        if not isinstance(consumer, str) or not _CONSUMER.fullmatch(consumer):
            return self._refuse(
                request,
                f"the token's {self.consumer_claim!r} claim does not name a consumer (a string "
                "of printable ASCII characters, at most 256)",
                "no consumer",
            )
        self._remember(token, claims, consumer)
        request.claims = claims
        set_identity(request, consumer)
        return None

    def _known(self, request: ProxyRequest, token: str) -> bool:
        """Whether ``token`` was verified before and still holds (then ``request`` has its
        claims and consumer)."""
        good_until, generation, claims, consumer = self.verified[token]
        if time.time() < good_until and generation == self._generation():
            request.claims = claims
            set_identity(request, consumer)
            return True
        del self.verified[token]
        return False

    def _generation(self) -> int:
        return 0 if self.jwks is None else self.jwks.generation

    def _remember(self, token: str, claims: dict[str, Any], consumer: str) -> None:
        """Keep ``token`` as verified until it expires (while the keys stay the same)."""
        expires = claims.get("exp")
        good_until = math.inf if expires is None else int(expires) + self.leeway
        if len(self.verified) >= MAX_VERIFIED:
            del self.verified[next(iter(self.verified))]
        self.verified[token] = (good_until, self._generation(), claims, consumer)

    def _answer_error(self, request: ProxyRequest, error: Exception) -> Answer:
        for kind, detail in _REFUSALS:
            if isinstance(error, kind):
                return self._refuse(request, detail, detail.partition(":")[0])
        if isinstance(error, jwt.MissingRequiredClaimError):
            return self._refuse(request, f"the token has no {error.claim!r} claim", "missing claim")
        return self._refuse(request, f"the token is not valid: {error}", "invalid token")

    async def close(self) -> None:
        if self.jwks is not None:
            await self.jwks.close()


register_policy(PolicyKind("jwt", JwtSettings, ORDER_AUTH, __doc__ or ""))
register_builder("jwt", JwtAuth)
