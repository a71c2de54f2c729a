"""The serving process's circuit breakers over HTTP: a breaker opened by failing calls of
the runtime's client is listed open, with its window's counts and since when."""

from __future__ import annotations

from datetime import datetime

import pytest
from aiohttp import web
from tests.integration.client.helpers import Scripted, registry_for
from tests.integration.control.conftest import OpenPlane
from tests.integration.loopback import serve

from hybridmesh.client import CommunicationRequest
from hybridmesh.control.routes.breakers import BreakerList
from hybridmesh.core.clock import FakeClock
from hybridmesh.core.errors import TransportError

QUERY = CommunicationRequest(type="query", endpoint="/users/1")


async def test_breakers_of_the_serving_client_with_state_since_and_counts(
    open_plane: OpenPlane,
) -> None:
    scripted = Scripted()
    upstream = web.Application()
    upstream.router.add_route("*", "/{tail:.*}", scripted.handle)
    clock = FakeClock()
    async with serve(upstream) as url:
        registry = registry_for(url, retries=0, minimum_calls=2, window_size=2, wait_in_open=60)
        async with open_plane(registry=registry, clock=clock) as plane:
            status, breakers = await plane.call("GET", "/api/v1/breakers", role="read")
            assert (status, breakers) == (200, [])  # no call made, no breaker yet

            client = plane.runtime.client
            await client.communicate("orders", "inventory", QUERY)
            scripted.fail(2, 503)
            for _ in range(2):
                with pytest.raises(TransportError):
                    await client.communicate("orders", "users", QUERY)
            clock.advance(15)

            status, breakers = await plane.call("GET", "/api/v1/breakers", role="read")
            assert status == 200
            BreakerList.model_validate(breakers)
            by_name = {b["name"]: b for b in breakers}
            assert sorted(by_name) == ["inventory", "users"]
            users = by_name["users"]
            assert (users["state"], users["calls"], users["failed"]) == ("open", 2, 2)
            assert users["failure_rate"] == 1.0 and users["retry_after"] == 45.0
            [(opened_at, _, _, _)] = client.breaker_transitions
            assert datetime.fromisoformat(users["since"]) == opened_at
            inventory = by_name["inventory"]
            assert (inventory["state"], inventory["calls"], inventory["failed"]) == ("closed", 1, 0)

            status, _ = await plane.call("GET", "/api/v1/breakers", role=None)
            assert status == 401
            status, problem = await plane.call("GET", "/api/v1/breakers?name=users", role="read")
            assert status == 400 and [e["field"] for e in problem["errors"]] == ["name"]
