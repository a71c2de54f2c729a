"""The conformance suite on the Kafka backend, against a real Kafka-protocol broker."""

from __future__ import annotations

import pytest
from tests.conformance.event_backend import EventBackendConformance

pytestmark = pytest.mark.kafka


class TestKafkaBackend(EventBackendConformance):
    #: Kafka orders each partition, not the whole log.
    ordered_log = False
