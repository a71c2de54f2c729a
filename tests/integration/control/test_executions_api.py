"""Executions over HTTP: start, page through with filters, show with history, cancel."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from tests.integration.control.conftest import OpenPlane, Plane
from tests.integration.loopback import serve
from tests.waiting import eventually

from hybridmesh.control.routes.executions import ExecutionDetail, ExecutionPage
from hybridmesh.core.clock import FakeClock
from hybridmesh.orchestration.admin import ExecutionPosition, page_query
from hybridmesh.registry import ServiceDefinition, ServiceRegistry

SAGAS = """\
saga_type: {name}
steps:
  - step_id: call
    service_name: held
    operation: hold
"""


def registry(base_url: str = "http://127.0.0.1:9") -> ServiceRegistry:
    return ServiceRegistry(
        [
            ServiceDefinition.model_validate(
                {
                    "name": "held",
                    "architecture": "microservice",
                    "version": "v1",
                    "base_url": base_url,
                }
            )
        ]
    )


async def load_sagas(plane: Plane, tmp_path: Path, *names: str) -> None:
    for name in names:
        path = tmp_path / f"{name}.yaml"
        path.write_text(SAGAS.format(name=name))
        await plane.runtime.load_definitions(path)


async def walk(plane: Plane, query: str) -> list[str]:
    """Every id the listing gives for ``query``, page by page."""
    seen: list[str] = []
    cursor: str | None = None
    while True:
        path = f"/api/v1/executions?{query}" + (f"&cursor={cursor}" if cursor else "")
        status, page = await plane.call("GET", path, role="read")
        assert status == 200, page
        ExecutionPage.model_validate(page)  # the answer is what the document says
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            return seen


async def test_pages_walk_a_filtered_listing_once_each_newest_first(
    open_plane: OpenPlane, tmp_path: Path
) -> None:
    clock = FakeClock()
    async with open_plane(registry=registry(), clock=clock) as plane:
        await load_sagas(plane, tmp_path, "alpha", "beta")
        engine = plane.runtime.engine
        started: dict[str, list[str]] = {"alpha": [], "beta": []}
        for n in range(40):
            name = "alpha" if n % 3 else "beta"
            started[name].append(await engine.start("saga", name, {"n": n}))
            if n % 4 == 0:  # the others start at the same time: the id breaks the tie
                clock.advance(1.5)
        expected = [
            e.id for e in await engine.executions(name="alpha", limit=1_000)
        ]  # newest first, as the CLI lists them
        assert sorted(expected) == sorted(started["alpha"])

        seen: list[str] = []
        cursor: str | None = None
        while True:
            query = "name=alpha&status=running&limit=4" + (f"&cursor={cursor}" if cursor else "")
            status, page = await plane.call("GET", f"/api/v1/executions?{query}", role="read")
            assert status == 200
            seen += [item["id"] for item in page["items"]]
            if len(seen) == 8:  # newer ones started mid-walk are not in it
                clock.advance(10)
                await engine.start("saga", "alpha", {})
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == expected
        assert await walk(plane, "kind=saga&limit=7") == [
            e.id for e in await engine.executions(limit=1_000)
        ]
        assert sorted(await walk(plane, "name=beta&limit=1000")) == sorted(started["beta"])


async def test_the_listing_answers_as_the_cli_lists(
    open_plane: OpenPlane, tmp_path: Path, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from tests.cli_in_process import run_cli_parts

    async with open_plane(registry=registry()) as plane:
        await load_sagas(plane, tmp_path, "alpha")
        for _ in range(3):
            await plane.runtime.engine.start("saga", "alpha", {"x": 1})
        status, page = await plane.call("GET", "/api/v1/executions?limit=10", role="read")
        code, out, _ = await run_cli_parts(capsys, database_url, "executions", "list", "--json")
        assert (status, code) == (200, 0)
        assert page["items"] == json.loads(out)
        one = page["items"][0]["id"]
        status, shown = await plane.call("GET", f"/api/v1/executions/{one}", role="read")
        code, out, _ = await run_cli_parts(
            capsys, database_url, "executions", "show", one, "--json"
        )
        assert shown == json.loads(out)
        ExecutionDetail.model_validate(shown)
        assert shown["history"][0]["type"] == "execution.started"


@pytest.mark.parametrize(
    "filters",
    [
        {},
        {"name": "alpha"},
        {"status": "running"},
        {"kind": "saga"},
        {"name": "a", "status": "failed"},
    ],
)
async def test_every_page_of_the_listing_reads_an_index_in_its_order(
    plane: Plane, filters: dict[str, str]
) -> None:
    store = plane.runtime.store
    for after in (None, ExecutionPosition(1e9, "x")):
        sql, args = page_query(**filters, limit=51, after=after)
        if store.dialect == "sqlite":
            plan = " ".join(
                str(r["detail"]) for r in await store.fetch_all(f"EXPLAIN QUERY PLAN {sql}", *args)
            )
            assert "USING INDEX orch_executions_" in plan or "USING COVERING INDEX" in plan, plan
            assert "TEMP B-TREE" not in plan, plan
        else:
            async with store.transaction() as tx:
                for setting in ("enable_seqscan", "enable_bitmapscan", "enable_sort"):
                    await tx.execute(f"SET LOCAL {setting} = off")
                rows = await tx.fetch_all(f"EXPLAIN {sql}", *args)
            plan = " ".join(str(next(iter(r.values()))) for r in rows)
            assert "Index Scan" in plan and "Sort" not in plan, plan


@pytest.fixture
async def held_service() -> AsyncIterator[tuple[str, list[str]]]:
    """A service whose every call waits until the test ends; the paths it was called on."""
    calls: list[str] = []
    release = asyncio.Event()

    async def hold(request: web.Request) -> web.Response:
        calls.append(request.path)
        await release.wait()
        return web.json_response({})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", hold)
    async with serve(app) as url:
        try:
            yield url, calls
        finally:
            release.set()


async def test_start_then_cancel_end_to_end(
    open_plane: OpenPlane, tmp_path: Path, held_service: tuple[str, list[str]]
) -> None:
    url, calls = held_service
    async with open_plane(registry=registry(url)) as plane:
        await load_sagas(plane, tmp_path, "slow")
        await plane.runtime.engine.start_worker()

        status, started = await plane.call(
            "POST",
            "/api/v1/executions",
            role="operate",
            json={"kind": "saga", "name": "slow", "input": {"order": 7}},
        )
        assert status == 202
        assert started["status"] == "running"
        execution_id = started["id"]
        await eventually(lambda: bool(calls), what="the step's call")

        status, cancelled = await plane.call(
            "POST",
            f"/api/v1/executions/{execution_id}/cancel",
            role="operate",
            json={"reason": "no longer needed"},
        )
        assert (status, cancelled) == (
            202,
            {"id": execution_id, "status": "running", "cancel_requested": True},
        )

        async def ended() -> bool:
            _, shown = await plane.call("GET", f"/api/v1/executions/{execution_id}", role="read")
            return bool(shown["status"] == "cancelled")

        await eventually(ended, what="the saga ending cancelled")
        _, shown = await plane.call("GET", f"/api/v1/executions/{execution_id}", role="read")
        assert shown["input"] == {"order": 7}

        status, problem = await plane.call(
            "POST", f"/api/v1/executions/{execution_id}/cancel", role="operate", json={}
        )
        assert status == 409
        assert problem["detail"] == f"execution {execution_id!r} has already ended (cancelled)"


async def test_bad_starts_and_unknown_ids(open_plane: OpenPlane, tmp_path: Path) -> None:
    async with open_plane(registry=registry()) as plane:
        await load_sagas(plane, tmp_path, "alpha")
        cases: list[tuple[str, str, Any, int]] = [
            ("POST", "/api/v1/executions", {"kind": "saga", "name": "nope"}, 404),
            ("POST", "/api/v1/executions", {"kind": "saga", "name": "alpha", "version": 9}, 404),
            ("POST", "/api/v1/executions", {"kind": "job", "name": "alpha"}, 400),
            ("POST", "/api/v1/executions", {"kind": "saga", "name": "alpha", "input": [1]}, 400),
            ("POST", "/api/v1/executions/nope/cancel", {}, 404),
            ("GET", "/api/v1/executions/nope", None, 404),
        ]
        for method, path, body, expected in cases:
            status, problem = await plane.call(method, path, role="operate", json=body)
            assert (status, problem["status"]) == (expected, expected), (path, body, problem)
        status, problem = await plane.call(
            "POST",
            "/api/v1/executions",
            role="operate",
            json={"kind": "saga", "name": "alpha", "input": [1]},
        )
        assert problem["errors"] == [
            {"field": "input", "message": "Input should be a valid dictionary"}
        ]
        status, problem = await plane.call(
            "POST",
            "/api/v1/executions",
            role="operate",
            data=b'{"kind": "saga",',
            headers={"Content-Type": "application/json"},
        )
        assert (status, problem["type"]) == (400, "urn:hybridmesh:problem:malformed-body")
        status, problem = await plane.call(
            "GET", "/api/v1/executions?limit=5000&status=late", role="read"
        )
        assert status == 400
        assert sorted(e["field"] for e in problem["errors"]) == ["limit", "status"]
