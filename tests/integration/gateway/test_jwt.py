"""The ``jwt`` policy through a real gateway: RS256, ES256 and HS256 tokens, each way a
token can be wrong (every one refused before the backend), keys from a JWKS served by a
local server, and claims that sticky splits use."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from tests.integration.gateway.auth_rig import (
    Reply,
    Rig,
    Upstream,
    gateway_rig,
    problem_of,
    route_yaml,
    upstream,
)
from tests.integration.loopback import serve
from tests.waiting import eventually

from hybridmesh.core.errors import ValidationError
from hybridmesh.gateway.config import parse_routes
from hybridmesh.gateway.routing import bucket_of

SECRET = "an HS256 secret of more than thirty-two bytes"
INVALID = 'Bearer realm="hybridmesh", error="invalid_token"'


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def other_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    found = {
        "sub": "alice",
        "iss": "https://idp.test/",
        "aud": "orders",
        "iat": now,
        "exp": now + 300,
        **changes,
    }
    return {k: v for k, v in found.items() if v is not None}


def sign(key: Any, algorithm: str = "RS256", kid: str | None = None, **changes: Any) -> str:
    headers = {"kid": kid} if kid is not None else None
    return jwt.encode(claims(**changes), key, algorithm=algorithm, headers=headers)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header: dict[str, Any], hmac_key: bytes | None) -> str:
    """A token PyJWT would refuse to make: unsigned, or HMAC-signed with ``hmac_key``."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims()).encode())}"
    if hmac_key is None:
        return signing_input + "."
    mac = hmac.new(hmac_key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(mac)}"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_refused(reply: Reply, detail: str) -> None:
    problem = problem_of(reply)
    assert problem["status"] == 401, problem
    assert detail in problem["detail"], problem
    assert reply.headers["www-authenticate"].startswith(INVALID), reply.headers


@pytest.fixture
async def app() -> AsyncIterator[Upstream]:
    async with upstream() as target:
        yield target


@pytest.fixture
async def rs256(tmp_path: Path, app: Upstream, rsa_key: rsa.RSAPrivateKey) -> AsyncIterator[Rig]:
    key_file = tmp_path / "idp.pem"
    key_file.write_bytes(pem(rsa_key))
    settings = f"""      jwt:
        algorithms: [RS256]
        public_key_file: "{key_file}"
        issuer: https://idp.test/
        audience: [orders, everything]
"""
    lenient = settings + "        leeway: 600\n"
    async with gateway_rig(tmp_path) as rig:
        await rig.apply(
            "routes:"
            + route_yaml("orders", "/orders", app.url, settings)
            + route_yaml("lenient", "/lenient", app.url, lenient)
        )
        yield rig


async def test_a_valid_token_passes_with_its_consumer(
    rs256: Rig, app: Upstream, rsa_key: rsa.RSAPrivateKey
) -> None:
    token = sign(rsa_key)
    reply = await rs256.get("/orders", [*bearer(token).items(), ("X-Consumer-Username", "root")])

    assert reply.status == 200, reply.body
    seen = reply.upstream_headers
    assert seen["x-consumer-username"] == ["alice"]
    assert seen["authorization"] == [f"Bearer {token}"]
    # Any of the audiences will do, and a list of them in the token too.
    assert (await rs256.get("/orders", bearer(sign(rsa_key, aud="everything")))).status == 200
    assert (await rs256.get("/orders", bearer(sign(rsa_key, aud=["x", "orders"])))).status == 200
    assert len(app.hits) == 3


async def test_each_bad_token_is_refused_saying_why(
    rs256: Rig,
    app: Upstream,
    rsa_key: rsa.RSAPrivateKey,
    other_rsa_key: rsa.RSAPrivateKey,
    ec_key: ec.EllipticCurvePrivateKey,
) -> None:
    now = int(time.time())
    cases = [
        (sign(rsa_key, exp=now - 120), "the token has expired"),
        (sign(rsa_key, nbf=now + 600), "not valid yet"),
        (sign(rsa_key, aud="billing"), "wrong audience"),
        (sign(rsa_key, aud=None), "no 'aud' claim"),
        (sign(rsa_key, iss="https://evil.test/"), "wrong issuer"),
        (sign(rsa_key, iss=None), "no 'iss' claim"),
        (sign(rsa_key, exp=None), "no 'exp' claim"),
        (sign(other_rsa_key), "bad signature"),
        (sign(SECRET, "HS256"), "unsupported algorithm 'HS256': this route accepts RS256"),
        (sign(ec_key, "ES256"), "unsupported algorithm 'ES256'"),
        (forge({"alg": "none", "typ": "JWT"}, None), "alg none"),
        (forge({"alg": "None"}, None), "alg none"),
        # Algorithm confusion: HS256 "signed" with the RSA public key as the secret.
        (forge({"alg": "HS256", "typ": "JWT"}, pem(rsa_key)), "unsupported algorithm 'HS256'"),
        (forge({"typ": "JWT"}, None), "unsupported algorithm None"),
        ("not.a.token", "malformed"),
        (sign(rsa_key)[:-6], "bad signature"),
        # A consumer name that would break the backend's request head.
        (sign(rsa_key, sub="alice\r\nx-admin: yes"), "does not name a consumer"),
    ]
    for token, detail in cases:
        assert_refused(await rs256.get("/orders", bearer(token)), detail)
    assert not app.hits


async def test_a_missing_token_is_challenged_without_an_error(rs256: Rig, app: Upstream) -> None:
    for headers in ({}, {"Authorization": "Basic YWxpY2U6cHc="}, {"Authorization": "Bearer "}):
        reply = await rs256.get("/orders", headers)
        assert problem_of(reply)["detail"] == "no bearer token in the authorization header"
        assert reply.headers["www-authenticate"] == 'Bearer realm="hybridmesh"'
    assert not app.hits


async def test_leeway_allows_that_much_clock_skew(
    rs256: Rig, app: Upstream, rsa_key: rsa.RSAPrivateKey
) -> None:
    now = int(time.time())
    assert (await rs256.get("/lenient", bearer(sign(rsa_key, exp=now - 120)))).status == 200
    assert (await rs256.get("/lenient", bearer(sign(rsa_key, nbf=now + 120)))).status == 200
    assert_refused(await rs256.get("/lenient", bearer(sign(rsa_key, exp=now - 900))), "expired")
    assert len(app.hits) == 2


async def test_a_token_that_passed_is_refused_once_it_expires(
    rs256: Rig, app: Upstream, rsa_key: rsa.RSAPrivateKey
) -> None:
    token = sign(rsa_key, exp=int(time.time()) + 1)
    assert (await rs256.get("/orders", bearer(token))).status == 200

    async def refused() -> bool:
        reply = await rs256.get("/orders", bearer(token))
        if reply.status == 200:
            return False
        assert_refused(reply, "the token has expired")
        return True

    await eventually(refused, what="the token refused once expired")


async def test_hs256_and_rs256_keys_never_stand_in_for_each_other(
    tmp_path: Path, app: Upstream, rsa_key: rsa.RSAPrivateKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORDERS_JWT_SECRET", SECRET)
    public = pem(rsa_key).decode().replace("\n", "\n          ")
    settings = f"""      jwt:
        algorithms: [HS256, RS256]
        secret_env: ORDERS_JWT_SECRET
        required_claims: []
        public_key: |
          {public}
"""
    async with gateway_rig(tmp_path) as rig:
        await rig.apply("routes:" + route_yaml("orders", "/orders", app.url, settings))
        by_secret = await rig.get("/orders", bearer(sign(SECRET, "HS256", exp=None)))
        by_rsa = await rig.get("/orders", bearer(sign(rsa_key)))
        confused = await rig.get("/orders", bearer(forge({"alg": "HS256"}, pem(rsa_key))))
        wrong_secret = await rig.get("/orders", bearer(sign(SECRET + "!", "HS256")))

    assert [by_secret.status, by_rsa.status] == [200, 200]
    assert_refused(confused, "bad signature")
    assert_refused(wrong_secret, "bad signature")
    assert len(app.hits) == 2


async def test_es256_from_a_cookie_or_a_header_of_its_own(
    tmp_path: Path, app: Upstream, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    public = pem(ec_key).decode().replace("\n", "\n          ")
    settings = f"""      jwt:
        algorithms: [ES256]
        header: x-token
        cookie: session
        consumer_claim: email
        public_key: |
          {public}
"""
    token = sign(ec_key, "ES256", email="alice@example.com")
    async with gateway_rig(tmp_path) as rig:
        await rig.apply("routes:" + route_yaml("orders", "/orders", app.url, settings))
        by_cookie = await rig.get("/orders", {"Cookie": f"theme=dark; session={token}"})
        by_header = await rig.get("/orders", {"X-Token": token})
        by_bearer = await rig.get("/orders", {"X-Token": f"Bearer {token}"})
        # Authorization is not looked at once another header is named.
        elsewhere = await rig.get("/orders", bearer(token))
        no_claim = await rig.get("/orders", {"X-Token": sign(ec_key, "ES256")})

    for reply in (by_cookie, by_header, by_bearer):
        assert reply.status == 200
        assert reply.upstream_headers["x-consumer-username"] == ["alice@example.com"]
    assert problem_of(elsewhere)["detail"] == (
        "no bearer token in the x-token header or the session cookie"
    )
    assert_refused(no_claim, "the token's 'email' claim does not name a consumer")
    assert len(app.hits) == 3


async def test_a_key_the_replica_cannot_load_refuses_everything(
    tmp_path: Path,
    app: Upstream,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.delenv("MISSING_JWT_SECRET", raising=False)
    monkeypatch.setenv("SHORT_JWT_SECRET", "too short")
    absent = tmp_path / "absent.pem"
    async with gateway_rig(tmp_path) as rig:
        with caplog.at_level(logging.ERROR, logger="hybridmesh.gateway.jwt"):
            await rig.apply(
                "routes:"
                + route_yaml(
                    "orders",
                    "/orders",
                    app.url,
                    "      jwt: {algorithms: [HS256], secret_env: MISSING_JWT_SECRET}",
                )
                + route_yaml(
                    "short",
                    "/short",
                    app.url,
                    "      jwt: {algorithms: [HS256], secret_env: SHORT_JWT_SECRET}",
                )
                + route_yaml(
                    "billing",
                    "/billing",
                    app.url,
                    f'      jwt: {{algorithms: [RS256], public_key_file: "{absent}"}}',
                )
            )
        replies = [
            await rig.get(path, bearer(sign(SECRET, "HS256")))
            for path in ("/orders", "/short", "/billing")
        ]

    for reply in replies:
        problem = problem_of(reply)
        assert problem["status"] == 500
        assert "its key could not be loaded" in problem["detail"]
        assert str(tmp_path) not in problem["detail"]
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "route orders: the jwt policy refuses every request" in logged
    assert "the environment variable MISSING_JWT_SECRET is not set" in logged
    assert "the secret in SHORT_JWT_SECRET is shorter than 32 bytes" in logged
    assert f"public_key_file {absent} cannot be read" in logged
    assert not app.hits


async def test_sticky_splits_by_a_claim_of_the_token(
    tmp_path: Path, rsa_key: rsa.RSAPrivateKey
) -> None:
    key_file = tmp_path / "idp.pem"
    key_file.write_bytes(pem(rsa_key))
    async with upstream("blue") as blue, upstream("green") as green:
        text = f"""
routes:
  - name: shop
    sticky: {{claim: tenant}}
    backends:
      - {{name: blue, url: "{blue.url}", weight: 50}}
      - {{name: green, url: "{green.url}", weight: 50}}
    policies:
      jwt: {{algorithms: [RS256], public_key_file: "{key_file}"}}
"""
        tenants = [f"tenant-{n}" for n in range(20)]
        async with gateway_rig(tmp_path) as rig:
            await rig.apply(text)
            served = [
                (await rig.get("/", bearer(sign(rsa_key, tenant=t)))).body["upstream"]
                for t in tenants
            ]

    assert served == ["blue" if bucket_of("shop", t) < 5000 else "green" for t in tenants]
    assert {"blue", "green"} <= set(served)


# -- JWKS ----------------------------------------------------------------------------------


class Idp:
    """An identity provider's JWKS endpoint that counts its fetches."""

    def __init__(self) -> None:
        self.keys: list[dict[str, Any]] = []
        self.status = 200
        self.fetches = 0

    def publish(self, kid: str, key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> None:
        if isinstance(key, rsa.RSAPrivateKey):
            jwk = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
        else:
            jwk = ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
        self.keys.append({**jwk, "kid": kid, "use": "sig"})

    async def handle(self, _: web.Request) -> web.Response:
        self.fetches += 1
        if self.status != 200:
            return web.Response(status=self.status)
        return web.json_response({"keys": self.keys})


@pytest.fixture
async def idp() -> AsyncIterator[tuple[Idp, str]]:
    provider = Idp()
    app = web.Application()
    app.router.add_get("/jwks", provider.handle)
    async with serve(app) as url:
        yield provider, url + "/jwks"


def jwks_route(app: Upstream, url: str, extra: str = "") -> str:
    settings = f"""      jwt:
        algorithms: [RS256, ES256]
        jwks_url: "{url}"
{extra}"""
    return "routes:" + route_yaml("orders", "/orders", app.url, settings)


async def test_keys_come_from_the_jwks_and_rotate(
    tmp_path: Path,
    app: Upstream,
    idp: tuple[Idp, str],
    rsa_key: rsa.RSAPrivateKey,
    other_rsa_key: rsa.RSAPrivateKey,
    ec_key: ec.EllipticCurvePrivateKey,
) -> None:
    provider, url = idp
    provider.publish("k1", rsa_key)
    provider.publish("e1", ec_key)
    async with gateway_rig(tmp_path) as rig:
        await rig.apply(jwks_route(app, url, "        jwks_refetch_seconds: 0.001\n"))
        k1_token = sign(rsa_key, kid="k1")
        first = await asyncio.gather(*(rig.get("/orders", bearer(k1_token)) for _ in range(5)))
        assert [r.status for r in first] == [200] * 5
        assert provider.fetches == 1  # one fetch for everyone waiting on it
        assert (await rig.get("/orders", bearer(sign(ec_key, "ES256", kid="e1")))).status == 200
        # A kid used on the wrong kind of key finds no key.
        assert_refused(
            await rig.get("/orders", bearer(sign(ec_key, "ES256", kid="k1"))), "no ES256 key"
        )

        # The provider rotates: k1 goes, k2 comes; an unknown kid fetches the set again.
        provider.keys = []
        provider.publish("k2", other_rsa_key)
        fetches = provider.fetches
        rotated = await rig.get("/orders", bearer(sign(other_rsa_key, kid="k2")))
        assert rotated.status == 200
        assert provider.fetches == fetches + 1
        # The token that passed before is checked again with the new keys, and fails.
        retired = await rig.get("/orders", bearer(k1_token))
        # A kid no key has, nor a key without kid: signed by an untrusted key.
        no_kid = await rig.get("/orders", bearer(sign(rsa_key)))

    assert_refused(retired, "no RS256 key with kid 'k1' is trusted here")
    assert_refused(no_kid, "bad signature")
    assert len(app.hits) == 7


async def test_unknown_kids_fetch_the_jwks_at_most_once_a_period(
    tmp_path: Path,
    app: Upstream,
    idp: tuple[Idp, str],
    rsa_key: rsa.RSAPrivateKey,
    other_rsa_key: rsa.RSAPrivateKey,
) -> None:
    provider, url = idp
    provider.publish("k1", rsa_key)
    async with gateway_rig(tmp_path) as rig:
        await rig.apply(jwks_route(app, url, "        jwks_refetch_seconds: 3600\n"))
        assert (await rig.get("/orders", bearer(sign(rsa_key, kid="k1")))).status == 200
        provider.publish("k2", other_rsa_key)
        for kid in ("k2", "k3", "k4"):
            reply = await rig.get("/orders", bearer(sign(other_rsa_key, kid=kid)))
            assert_refused(reply, f"no RS256 key with kid '{kid}'")

    assert provider.fetches == 1
    assert len(app.hits) == 1


async def test_a_stale_jwks_is_refetched_in_the_background(
    tmp_path: Path, app: Upstream, idp: tuple[Idp, str], rsa_key: rsa.RSAPrivateKey
) -> None:
    provider, url = idp
    provider.publish("k1", rsa_key)
    extra = "        jwks_cache_seconds: 0.001\n        jwks_refetch_seconds: 0.001\n"
    async with gateway_rig(tmp_path) as rig:
        await rig.apply(jwks_route(app, url, extra))
        assert (await rig.get("/orders", bearer(sign(rsa_key, kid="k1")))).status == 200
        provider.status = 503  # the provider is away: the keys in hand still serve

        async def served() -> bool:
            reply = await rig.get("/orders", bearer(sign(rsa_key, kid="k1")))
            assert reply.status == 200
            return provider.fetches >= 3

        await eventually(served, what="the JWKS refetched while the old keys serve")


async def test_without_a_jwks_requests_are_unavailable(
    tmp_path: Path, app: Upstream, idp: tuple[Idp, str], rsa_key: rsa.RSAPrivateKey
) -> None:
    provider, url = idp
    provider.status = 500
    async with gateway_rig(tmp_path) as rig:
        await rig.apply(jwks_route(app, url, "        jwks_refetch_seconds: 3600\n"))
        first = await rig.get("/orders", bearer(sign(rsa_key, kid="k1")))
        again = await rig.get("/orders", bearer(sign(rsa_key, kid="k1")))

    for reply in (first, again):
        problem = problem_of(reply)
        assert problem["status"] == 503
        assert "could not be fetched: answered 500" in problem["detail"]
    assert provider.fetches == 1
    assert not app.hits


# -- settings ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "field", "message"),
    [
        ("{secret_env: S}", "policies.jwt.algorithms", "required field is missing"),
        ("{algorithms: []}", "policies.jwt.algorithms", "name at least one of HS256"),
        ("{algorithms: [HS384], secret_env: S}", "policies.jwt.algorithms", "'HS384' is not"),
        ("{algorithms: [none]}", "policies.jwt.algorithms", "never accepted"),
        ("{algorithms: [HS256]}", "policies.jwt", "HS256 needs exactly one of secret"),
        ("{algorithms: [HS256], secret: short}", "policies.jwt.secret", "shorter than 32"),
        ("{algorithms: [RS256], secret_env: S}", "policies.jwt", "HS256 is not in algorithms"),
        ("{algorithms: [RS256]}", "policies.jwt", "RS256 needs exactly one of public_key"),
        ("{algorithms: [HS256], secret_env: S, jwks_url: 'http://a'}", "policies.jwt", "neither"),
        ("{algorithms: [ES256], public_key: nope}", "policies.jwt.public_key", "not a PEM"),
        ("{algorithms: [RS256], jwks_url: 'ftp://a'}", "policies.jwt.jwks_url", "http"),
        ("{algorithms: [HS256], secret_env: 1A}", "policies.jwt.secret_env", "environment"),
        ("{algorithms: [HS256], secret_env: S, header: null}", "policies.jwt", "a header or"),
        ("{algorithms: [HS256], secret_env: S, leeway: -1}", "policies.jwt.leeway", "negative"),
        ("{algorithms: [HS256], secret_env: S, cookie: 'a b'}", "policies.jwt.cookie", "cookie"),
        ("{algorithms: [HS256], secret_env: S, key: x}", "policies.jwt.key", "unknown field"),
    ],
)
def test_settings_are_checked_when_routes_are_read(settings: str, field: str, message: str) -> None:
    text = "routes:" + route_yaml(
        "orders", "/orders", "http://127.0.0.1:1", f"      jwt: {settings}"
    )
    with pytest.raises(ValidationError) as raised:
        parse_routes(text, "routes.yaml")
    (problem,) = raised.value.problems
    assert (problem.line, problem.field) == (7, field)
    assert message in problem.message


def test_a_public_key_must_fit_the_algorithms(
    rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    for key, algorithms, message in (
        (rsa_key, "[ES256]", "ES256 is in algorithms but public_key is a key for RS256"),
        (ec_key, "[RS256, ES256]", "RS256 is in algorithms but public_key is a key for ES256"),
        (
            rsa.generate_private_key(public_exponent=65537, key_size=1024),
            "[RS256]",
            "RSA key of 1024 bits",
        ),
        (ec.generate_private_key(ec.SECP384R1()), "[ES256]", "ES256 needs P-256"),
    ):
        public = pem(key).decode().replace("\n", "\n          ")
        settings = f"""      jwt:
        algorithms: {algorithms}
        public_key: |
          {public}
"""
        text = "routes:" + route_yaml("orders", "/orders", "http://127.0.0.1:1", settings)
        with pytest.raises(ValidationError) as raised:
            parse_routes(text, "routes.yaml")
        assert message in raised.value.problems[0].message
