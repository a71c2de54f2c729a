"""Fixtures for observability tests: a span exporter, and clean tracing and logging state."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from hybridmesh.core.settings import Settings
from hybridmesh.observability import configure_tracing, shutdown_tracing


@pytest.fixture(autouse=True)
def _no_tracing() -> Iterator[None]:
    """Every test starts and ends with tracing unconfigured."""
    shutdown_tracing()
    yield
    shutdown_tracing()


@pytest.fixture
def spans() -> InMemorySpanExporter:
    """An exporter that keeps finished spans, with tracing configured to use it."""
    exporter = InMemorySpanExporter()
    configure_tracing(Settings(service_name="test-service"), exporter=exporter)
    return exporter


@pytest.fixture
def root_logger() -> Iterator[logging.Logger]:
    """The root logger, with its handlers and level restored after the test."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield root
    for handler in root.handlers:
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)
