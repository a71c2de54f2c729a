"""The conformance suite on the NATS JetStream backend."""

from __future__ import annotations

import pytest
from tests.conformance.event_backend import EventBackendConformance

pytestmark = pytest.mark.nats


class TestNatsBackend(EventBackendConformance):
    pass
