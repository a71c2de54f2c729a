"""The keep-alive HTTP/1.1 pool of REST calls, held to the HTTP client conformance suite."""

from __future__ import annotations

import pytest
from tests.conformance.http_client import HttpClientConformance, Send

from hybridmesh.transports.http1 import Http1Error, Http1Pool


class TestHttp1Pool(HttpClientConformance):
    connection_errors = (Http1Error,)
    resends_after_stale_reuse = staticmethod(Http1Pool.resends_after_stale_reuse)

    @pytest.fixture
    def send(self, pool: Http1Pool) -> Send:
        return pool.request
