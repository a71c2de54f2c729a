"""The official CloudEvents SDK, as the interop tests use it, whichever version is installed.

cloudevents 2.x keeps the 1.x API under ``cloudevents.v1`` and adds the ``core`` API;
cloudevents 1.x has the 1.x API at the top and no ``core``. Tests of the ``core`` API carry
:data:`needs_core`.
"""

from __future__ import annotations

import pytest

try:  # cloudevents 2.x
    from cloudevents.v1 import conversion as sdk_conversion
    from cloudevents.v1 import http as sdk_http
    from cloudevents.v1 import kafka as sdk_kafka
except ImportError:  # cloudevents 1.x
    from cloudevents import conversion as sdk_conversion  # type: ignore[no-redef]
    from cloudevents import http as sdk_http  # type: ignore[no-redef]
    from cloudevents import kafka as sdk_kafka  # type: ignore[no-redef]

try:
    from cloudevents.core.bindings import http as core_http
    from cloudevents.core.bindings import kafka as core_kafka
    from cloudevents.core.formats.json import JSONFormat
    from cloudevents.core.v1.event import CloudEvent as CoreCloudEvent

    HAVE_CORE = True
except ImportError:  # cloudevents 1.x has no core API
    HAVE_CORE = False

needs_core = pytest.mark.skipif(not HAVE_CORE, reason="cloudevents 2.x core API not installed")

__all__ = [
    "HAVE_CORE",
    "CoreCloudEvent",
    "JSONFormat",
    "core_http",
    "core_kafka",
    "needs_core",
    "sdk_conversion",
    "sdk_http",
    "sdk_kafka",
]
