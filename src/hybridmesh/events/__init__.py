"""Events: CloudEvents on one bus, at least once, with dead letters, an outbox and
idempotent consumers, on the SQL log (SQLite or PostgreSQL), NATS JetStream or Kafka.

:func:`open_bus` builds the bus the settings ask for: ``HYBRIDMESH_EVENTS_URL`` unset means
the SQL log in the state store (``HYBRIDMESH_DATABASE_URL``); ``nats://host:port`` means
JetStream; ``kafka://host:9092[,host:9092][?options]`` means Kafka.
"""

from __future__ import annotations

from hybridmesh.contracts.recorder import recorder_from_settings
from hybridmesh.core.errors import ConfigurationError
from hybridmesh.core.settings import Settings
from hybridmesh.events.backend import (
    DeadLetter,
    Delivery,
    EventBackend,
    GroupSpec,
    PartitionBatch,
    Settlement,
)
from hybridmesh.events.bus import ACK, Ack, Drop, EventBus, Handler, HandlerResult, Retry
from hybridmesh.events.envelope import (
    BATCH_CONTENT_TYPE,
    STRUCTURED_CONTENT_TYPE,
    CloudEvent,
    EventFormatError,
    from_batch,
    from_http,
    to_batch,
)
from hybridmesh.events.idempotency import IdempotentConsumer
from hybridmesh.events.outbox import Outbox, OutboxRelay
from hybridmesh.events.subjects import matches, validate_pattern, validate_subject
from hybridmesh.events.transport import EventTransport
from hybridmesh.store import Store


async def open_backend(
    settings: Settings | None = None, *, store: Store | None = None
) -> EventBackend:
    """The backend the settings name, started. ``store`` is the state store already open on
    ``settings.database_url``: the SQL log kept in that database uses it rather than a
    connection of its own, so the log's and the state's writes share one writer (and can
    share a transaction)."""
    settings = settings or Settings()
    url = settings.events_url
    backend: EventBackend
    if url is None or url.startswith(("sqlite:", "postgres")):
        from hybridmesh.events.backends.sql import SqlEventBackend

        if store is not None and (url is None or url == settings.database_url):
            backend = SqlEventBackend(store)
        else:
            backend = await SqlEventBackend.open(url or settings.database_url)
    elif url.startswith(("nats://", "tls://")):
        from hybridmesh.events.backends.nats import NatsEventBackend

        backend = NatsEventBackend(url)
    elif url.startswith(("kafka://", "kafkas://")):
        from hybridmesh.events.backends.kafka import KafkaEventBackend

        backend = KafkaEventBackend(url)
    else:
        raise ConfigurationError(
            f"HYBRIDMESH_EVENTS_URL {url!r}: use nats://host:port, kafka://host:9092, or leave "
            "it unset for the SQL log in the state store"
        )
    await backend.start()
    return backend


async def open_bus(
    settings: Settings | None = None, *, consumer: str | None = None, store: Store | None = None
) -> EventBus:
    """An :class:`EventBus` on the backend the settings name (not yet consuming); ``store``
    as for :func:`open_backend`."""
    settings = settings or Settings()
    return EventBus(
        await open_backend(settings, store=store),
        consumer=consumer,
        recorder=recorder_from_settings(settings),
    )


__all__ = [
    "ACK",
    "BATCH_CONTENT_TYPE",
    "STRUCTURED_CONTENT_TYPE",
    "Ack",
    "CloudEvent",
    "DeadLetter",
    "Delivery",
    "Drop",
    "EventBackend",
    "EventBus",
    "EventFormatError",
    "EventTransport",
    "GroupSpec",
    "Handler",
    "HandlerResult",
    "IdempotentConsumer",
    "Outbox",
    "OutboxRelay",
    "PartitionBatch",
    "Retry",
    "Settlement",
    "from_batch",
    "from_http",
    "matches",
    "open_backend",
    "open_bus",
    "to_batch",
    "validate_pattern",
    "validate_subject",
]
