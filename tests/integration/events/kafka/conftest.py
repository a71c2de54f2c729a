"""Fixtures for the Kafka backend tests.

They run against ``HYBRIDMESH_TEST_KAFKA_URL`` (``kafka://host:9092``) when it is set: that
is how a team runs this suite against its own Kafka. Otherwise the session starts a local
Tansu broker (a Kafka-protocol broker from the dev dependencies) on a free port and stops it
at the end. Each test gets its own topic prefix, so its topics and groups are its own.

When no broker can be had the tests skip, unless ``HYBRIDMESH_REQUIRE_SERVICES=1`` is set
(as CI does), in which case they fail.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest

from hybridmesh.events.backends.kafka import KafkaEventBackend
from hybridmesh.events.local_kafka import LocalKafka

KAFKA_URL = os.environ.get("HYBRIDMESH_TEST_KAFKA_URL")
REQUIRE_SERVICES = os.environ.get("HYBRIDMESH_REQUIRE_SERVICES", "") not in ("", "0", "false")
#: Tansu answers a member joining a group after half the session timeout; a short one keeps
#: the many groups these tests make quick.
SESSION_TIMEOUT = os.environ.get("HYBRIDMESH_TEST_KAFKA_SESSION_TIMEOUT", "2")

pytestmark = pytest.mark.kafka


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """``host:port[,host:port]`` of a Kafka-protocol broker (or the tests skip / fail)."""
    if KAFKA_URL:
        yield KAFKA_URL.split("://", 1)[1].split("?", 1)[0]
        return
    try:
        broker = LocalKafka().start()
    except Exception as error:
        message = f"no Kafka-protocol broker could be started: {error}"
        if REQUIRE_SERVICES:
            pytest.fail(f"{message} (HYBRIDMESH_REQUIRE_SERVICES is set)", pytrace=False)
        pytest.skip(message)
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


@pytest.fixture
def kafka_prefix() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


def kafka_url(bootstrap: str, prefix: str, **options: str) -> str:
    query = "&".join(
        f"{k}={v}"
        for k, v in {"prefix": prefix, "session_timeout": SESSION_TIMEOUT, **options}.items()
    )
    return f"kafka://{bootstrap}?{query}"


MakeKafka = Callable[..., Awaitable[KafkaEventBackend]]


@pytest.fixture
async def make_kafka(kafka_bootstrap: str, kafka_prefix: str) -> AsyncIterator[MakeKafka]:
    """Start another backend on the test's topics, as another process would; all are
    closed after the test."""
    opened: list[KafkaEventBackend] = []

    async def make(**options: str) -> KafkaEventBackend:
        backend = KafkaEventBackend(kafka_url(kafka_bootstrap, kafka_prefix, **options))
        await backend.start()
        opened.append(backend)
        return backend

    yield make
    for backend in opened:
        await backend.close()


@pytest.fixture
async def backend(make_kafka: MakeKafka) -> KafkaEventBackend:
    return await make_kafka()


@pytest.fixture
def make_backend(make_kafka: MakeKafka) -> Callable[[], Awaitable[KafkaEventBackend]]:
    """The conformance suite's factory: another started backend on the same topics."""

    async def make() -> KafkaEventBackend:
        return await make_kafka()

    return make
