"""Where the Kafka backend keeps things, and how ``kafka://`` URLs configure it.

Topics, for the prefix ``hybridmesh``:

- ``hybridmesh.events`` holds every event whose type no route claims;
- a route ``order=orders`` sends the types under ``order.`` to ``hybridmesh.orders``
  (the longest matching type prefix wins, so ``order.payment=payments`` can split it further);
- ``hybridmesh.dead-letters`` holds the dead letters: one partition, compacted, keyed by the
  letter's id (see :mod:`._kafka_dlq`).

Event topics have ``partitions`` partitions each. A consumer group ``billing`` is the Kafka
consumer group ``hybridmesh.billing`` and subscribes to the topics its pattern can match.

:attr:`~hybridmesh.events.backend.Delivery.position` packs the topic, the partition and the
offset into one integer (:func:`position`). Kafka orders events within a partition only, so
positions grow within a partition, not across the log.

The URL: ``kafka://host:9092[,host2:9092][?option=value&...]`` with the options

=====================  =====================================================================
``prefix``             topic and group name prefix (default ``hybridmesh``)
``partitions``         partitions of each event topic (default 8)
``replication``        replication factor of created topics (default 1)
``route``              ``typeprefix=topic``, repeatable or comma-separated
``mode``               ``binary`` (default) or ``structured`` CloudEvents on the wire
``session_timeout``    consumer group session timeout, seconds (default 10)
``connect_timeout``    how long start-up waits for the brokers, seconds (default 10)
``security_protocol``  ``PLAINTEXT`` (default) or ``SSL``; ``kafkas://`` means ``SSL``
=====================  =====================================================================
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import parse_qs, urlsplit

from hybridmesh.core.errors import InvalidSettingError

DEFAULT_TOPIC = "events"
DEAD_LETTER_TOPIC = "dead-letters"
#: Partitions of one topic a position can name; far above what any topic here uses.
_PARTITION_SLOTS = 1 << 14
_OFFSET_BITS = 40

Mode = Literal["binary", "structured"]


def _valid_topic_part(text: str, what: str) -> str:
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
    if not text or len(text) > 200 or not set(text) <= allowed:
        raise InvalidSettingError(
            f"Kafka {what} {text!r}: use 1 to 200 characters of letters, digits, '.', '_', '-'"
        )
    return text


@dataclass(frozen=True)
class KafkaLayout:
    """Topic and group names, and which topic an event type goes to."""

    prefix: str = "hybridmesh"
    partitions: int = 8
    routes: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _valid_topic_part(self.prefix, "prefix")
        if not 1 <= self.partitions < _PARTITION_SLOTS:
            raise InvalidSettingError(f"Kafka partitions must be 1 to {_PARTITION_SLOTS - 1}")
        for type_prefix, topic in self.routes.items():
            _valid_topic_part(topic, f"route topic for {type_prefix!r}")
            if topic in (DEFAULT_TOPIC, DEAD_LETTER_TOPIC):
                raise InvalidSettingError(
                    f"Kafka route {type_prefix}={topic}: {topic!r} is reserved"
                )
            if not type_prefix or "*" in type_prefix or ">" in type_prefix:
                raise InvalidSettingError(
                    f"Kafka route {type_prefix!r}={topic}: the type prefix is dot-separated "
                    "words without wildcards, such as 'order' or 'order.payment'"
                )

    @property
    def default_topic(self) -> str:
        return f"{self.prefix}.{DEFAULT_TOPIC}"

    @property
    def dead_letter_topic(self) -> str:
        return f"{self.prefix}.{DEAD_LETTER_TOPIC}"

    @property
    def event_topics(self) -> list[str]:
        """Every event topic, the default first; their order fixes :func:`position`."""
        routed = sorted({f"{self.prefix}.{topic}" for topic in self.routes.values()})
        return [self.default_topic, *routed]

    def topic_for(self, event_type: str) -> str:
        """The topic of events of ``event_type``: the longest route prefix that is a whole
        number of the type's words, else the default topic."""
        best, best_words = self.default_topic, 0
        for type_prefix, topic in self.routes.items():
            if event_type == type_prefix or event_type.startswith(type_prefix + "."):
                words = type_prefix.count(".") + 1
                if words > best_words:
                    best, best_words = f"{self.prefix}.{topic}", words
        return best

    def topics_for(self, pattern: str) -> list[str]:
        """The topics a group with ``pattern`` must read: the default topic (any type may
        land there) and every routed topic whose types the pattern can match."""
        wanted = {self.default_topic}
        for type_prefix, topic in self.routes.items():
            if _may_match_under(pattern.split("."), type_prefix.split(".")):
                wanted.add(f"{self.prefix}.{topic}")
        return [t for t in self.event_topics if t in wanted]

    def group_id(self, group: str) -> str:
        """The Kafka consumer group id of a bus group."""
        return f"{self.prefix}.{group}"

    def topic_index(self, topic: str) -> int:
        return self.event_topics.index(topic)


def _may_match_under(pattern: list[str], prefix: list[str]) -> bool:
    """Whether a NATS-style ``pattern`` can match a type that begins with ``prefix`` words
    (and may go on)."""
    for i, word in enumerate(prefix):
        if i >= len(pattern):
            return False  # the pattern ends where the prefix goes on
        if pattern[i] == ">":
            return True
        if pattern[i] not in ("*", word):
            return False
    return True


def position(topic_index: int, partition: int, offset: int) -> int:
    """One integer for (topic, partition, offset): grows with the offset within a partition."""
    return ((topic_index * _PARTITION_SLOTS + partition) << _OFFSET_BITS) | offset


@dataclass(frozen=True)
class KafkaOptions:
    """What a ``kafka://`` URL says (see the module docstring)."""

    bootstrap: list[str]
    layout: KafkaLayout
    replication: int = 1
    mode: Mode = "binary"
    session_timeout: float = 10.0
    connect_timeout: float = 10.0
    security_protocol: str = "PLAINTEXT"

    @classmethod
    def from_url(cls, url: str) -> KafkaOptions:
        parts = urlsplit(url)
        if parts.scheme not in ("kafka", "kafkas"):
            raise InvalidSettingError(f"{url!r} is not a kafka:// URL")
        hosts = [h.strip() for h in parts.netloc.split(",") if h.strip()]
        if not hosts:
            raise InvalidSettingError(f"{url!r}: name at least one broker, as kafka://host:9092")
        for host in hosts:
            name, _, port = host.rpartition(":")
            if not name or not port.isdigit():
                raise InvalidSettingError(f"{url!r}: broker {host!r} is not host:port")
        query = parse_qs(parts.query, keep_blank_values=True)
        known = {
            "prefix",
            "partitions",
            "replication",
            "route",
            "mode",
            "session_timeout",
            "connect_timeout",
            "security_protocol",
        }
        unknown = sorted(set(query) - known)
        if unknown:
            raise InvalidSettingError(
                f"{url!r}: unknown option(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(known))}"
            )

        def one(name: str, default: str) -> str:
            values = query.get(name)
            return values[-1] if values else default

        def number(name: str, default: str, kind: type[int] | type[float]) -> float:
            text = one(name, default)
            try:
                value = kind(text)
            except ValueError:
                raise InvalidSettingError(f"{url!r}: {name}={text!r} is not a number") from None
            if value <= 0:
                raise InvalidSettingError(f"{url!r}: {name} must be positive")
            return value

        routes: dict[str, str] = {}
        for entry in query.get("route", []):
            for item in filter(None, (i.strip() for i in entry.split(","))):
                type_prefix, sep, topic = item.partition("=")
                if not sep:
                    raise InvalidSettingError(
                        f"{url!r}: route {item!r} is not typeprefix=topic (as order=orders)"
                    )
                routes[type_prefix.strip()] = topic.strip()
        mode = one("mode", "binary")
        if mode not in ("binary", "structured"):
            raise InvalidSettingError(f"{url!r}: mode is binary or structured, not {mode!r}")
        security = one("security_protocol", "SSL" if parts.scheme == "kafkas" else "PLAINTEXT")
        return cls(
            bootstrap=hosts,
            layout=KafkaLayout(
                prefix=one("prefix", "hybridmesh"),
                partitions=int(number("partitions", "8", int)),
                routes=routes,
            ),
            replication=int(number("replication", "1", int)),
            mode=mode,  # type: ignore[arg-type]
            session_timeout=number("session_timeout", "10", float),
            connect_timeout=number("connect_timeout", "10", float),
            security_protocol=security,
        )


__all__ = [
    "DEAD_LETTER_TOPIC",
    "DEFAULT_TOPIC",
    "KafkaLayout",
    "KafkaOptions",
    "Mode",
    "position",
]
