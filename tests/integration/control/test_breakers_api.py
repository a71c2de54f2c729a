"""The serving process's circuit breakers over HTTP: a breaker opened by failing calls of
the runtime's client is listed open, with its window's counts and since when; a breaker
forced open refuses the client's calls until its duration ends or it is reset."""

from __future__ import annotations

import itertools
from datetime import datetime

import pytest
from aiohttp import web
from tests.integration.client.helpers import Scripted, registry_for
from tests.integration.control.conftest import OpenPlane
from tests.integration.loopback import serve
from tests.waiting import eventually

from hybridmesh.client import CommunicationRequest
from hybridmesh.control.routes.breakers import BreakerList, BreakerOut
from hybridmesh.core.clock import FakeClock
from hybridmesh.core.errors import CircuitOpenError, TransportError

QUERY = CommunicationRequest(type="query", endpoint="/users/1")
_queries = itertools.count(2)


def fresh() -> CommunicationRequest:
    """A query not answered before, so the client's cache cannot answer it."""
    return CommunicationRequest(type="query", endpoint=f"/users/{next(_queries)}")


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


async def test_a_breaker_forced_open_refuses_calls_and_recovers_by_itself(
    open_plane: OpenPlane,
) -> None:
    scripted = Scripted()
    upstream = web.Application()
    upstream.router.add_route("*", "/{tail:.*}", scripted.handle)
    async with serve(upstream) as url:
        registry = registry_for(url, retries=0, wait_in_open=60, permitted_calls_in_half_open=1)
        async with open_plane(registry=registry) as plane:
            client = plane.runtime.client
            await client.communicate("orders", "users", fresh())
            assert scripted.hits == 1

            status, breaker = await plane.call(
                "POST", "/api/v1/breakers/users/open", role="operate", json={"duration": 0.3}
            )
            assert status == 200
            BreakerOut.model_validate(breaker)
            assert breaker["state"] == "open" and breaker["forced_until"] is not None
            with pytest.raises(CircuitOpenError):
                await client.communicate("orders", "users", fresh())
            assert scripted.hits == 1  # refused by the breaker, never sent

            # Nobody closes it: at the end of the duration (not the 60 s wait_in_open) the
            # next call is a trial that reaches the service, and its success closes it.
            async def answered() -> bool:
                try:
                    await client.communicate("orders", "users", fresh())
                except CircuitOpenError:
                    return False
                return True

            await eventually(answered, what="the forced open period's end")
            assert scripted.hits == 2
            _, breakers = await plane.call("GET", "/api/v1/breakers", role="read")
            [users] = breakers
            assert (users["state"], users["forced_until"]) == ("closed", None)


async def test_reset_ends_a_forced_open_early(open_plane: OpenPlane) -> None:
    scripted = Scripted()
    upstream = web.Application()
    upstream.router.add_route("*", "/{tail:.*}", scripted.handle)
    async with serve(upstream) as url, open_plane(registry=registry_for(url, retries=0)) as plane:
        client = plane.runtime.client
        await client.communicate("orders", "users", fresh())
        status, _ = await plane.call(
            "POST", "/api/v1/breakers/users/open", role="operate", json={"duration": 3600}
        )
        assert status == 200
        with pytest.raises(CircuitOpenError):
            await client.communicate("orders", "users", fresh())

        status, breaker = await plane.call("POST", "/api/v1/breakers/users/reset", role="operate")
        assert status == 200
        assert (breaker["state"], breaker["forced_until"]) == ("closed", None)
        await client.communicate("orders", "users", fresh())
        assert scripted.hits == 2

        status, entries = await plane.call("GET", "/api/v1/audit", role="admin")
        assert status == 200
        ops = [(e["operation"], e["target"], e["status"]) for e in entries]
        assert ("open_breaker", "users", 200) in ops and ("reset_breaker", "users", 200) in ops


async def test_forcing_a_breaker_refuses_bad_input_unknown_names_and_low_roles(
    open_plane: OpenPlane,
) -> None:
    scripted = Scripted()
    upstream = web.Application()
    upstream.router.add_route("*", "/{tail:.*}", scripted.handle)
    async with serve(upstream) as url, open_plane(registry=registry_for(url, retries=0)) as plane:
        path = "/api/v1/breakers/users/open"
        # No call made through it yet: the breaker does not exist.
        status, problem = await plane.call("POST", path, role="operate", json={"duration": 1})
        assert status == 404 and "users" in problem["detail"]
        status, _ = await plane.call("POST", "/api/v1/breakers/users/reset", role="operate")
        assert status == 404

        await plane.runtime.client.communicate("orders", "users", fresh())
        for body in (
            {},
            {"duration": 0},
            {"duration": -1},
            {"duration": 3601},
            {"duration": "x"},
        ):
            status, problem = await plane.call("POST", path, role="operate", json=body)
            assert status == 400, body
            assert [e["field"] for e in problem["errors"]] == ["duration"], body
        status, _ = await plane.call("POST", path, role="read", json={"duration": 1})
        assert status == 403
        status, _ = await plane.call("POST", path, role=None, json={"duration": 1})
        assert status == 401
        _, breakers = await plane.call("GET", "/api/v1/breakers", role="read")
        assert [b["state"] for b in breakers] == ["closed"]
