"""The registry over HTTP: apply (YAML or JSON) with problems at line and field, then the
same JSON as the CLI's ``--json``."""

from __future__ import annotations

import json

import pytest
from tests.cli_in_process import run_cli_parts
from tests.integration.control.conftest import Plane

SERVICES = """\
- name: orders
  architecture: microservice
  version: v1
  base_url: http://orders.internal
  dependencies:
    - service: stock
      type: sync
- name: stock
  architecture: modular-monolith
  version: v2
  base_url: http://stock.internal
  consumers:
    - service: orders
      type: sync
"""


async def apply(
    plane: Plane, body: str, content_type: str = "application/yaml"
) -> tuple[int, object]:
    return await plane.call(
        "POST",
        "/api/v1/registry/apply",
        role="operate",
        data=body.encode(),
        headers={"Content-Type": content_type},
    )


async def test_bad_yaml_is_a_400_problem_naming_line_and_field(plane: Plane) -> None:
    bad = SERVICES.replace("architecture: modular-monolith", "architecture: mainframe").replace(
        "  version: v1\n", ""
    )
    status, problem = await apply(plane, bad)
    assert status == 400
    assert isinstance(problem, dict)
    assert problem["type"] == "urn:hybridmesh:problem:invalid-input"
    errors = {(e["line"], e["field"]) for e in problem["errors"]}
    assert (1, "version") in errors  # the service that lacks it starts on line 1
    assert (8, "architecture") in errors
    assert (await plane.call("GET", "/api/v1/services", role="read")) == (200, [])


async def test_yaml_that_does_not_parse_names_its_line(plane: Plane) -> None:
    status, problem = await apply(plane, "- name: a\n  version: [v1\n")
    assert status == 400
    assert isinstance(problem, dict)
    assert problem["errors"][0]["line"] >= 2


async def test_applied_services_read_back_as_the_cli_shows_them(
    plane: Plane, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    status, applied = await apply(plane, SERVICES)
    assert (status, applied) == (
        200,
        {"loaded": 2, "services": ["orders", "stock"], "warnings": []},
    )

    for path, args in (
        ("/api/v1/services", ("registry", "list", "--json")),
        ("/api/v1/services/orders", ("registry", "show", "orders", "--json")),
        (
            "/api/v1/registry/recommend?source=microservice&target=serverless&use_case=nightly+report",
            (
                "registry",
                "recommend",
                "microservice",
                "serverless",
                "--use-case",
                "nightly report",
                "--json",
            ),
        ),
    ):
        status, answered = await plane.call("GET", path, role="read")
        code, out, _ = await run_cli_parts(capsys, database_url, *args)
        assert (status, code) == (200, 0)
        assert answered == json.loads(out), path

    status, graph = await plane.call("GET", "/api/v1/registry/graph?format=dot", role="read")
    code, out, _ = await run_cli_parts(capsys, database_url, "registry", "graph", "--format", "dot")
    assert (status, code) == (200, 0)
    assert (graph["format"], graph["source"]) == ("dot", out)
    code, out, _ = await run_cli_parts(
        capsys, database_url, "registry", "graph", "--format", "json"
    )
    assert code == 0
    assert {"nodes": graph["nodes"], "edges": graph["edges"]} == json.loads(out)
    assert graph["edges"] == [
        {"source": "orders", "target": "stock", "type": "sync", "patterns": []}
    ]
    assert [n["name"] for n in graph["nodes"]] == ["orders", "stock"]


async def test_json_bodies_apply_too_and_replace_removes_the_rest(plane: Plane) -> None:
    await apply(plane, SERVICES)
    alone = [
        {"name": "billing", "architecture": "serverless", "version": "v1", "base_url": "http://b"}
    ]
    status, applied = await apply(plane, json.dumps(alone), "application/json")
    assert (status, applied) == (200, {"loaded": 1, "services": ["billing"], "warnings": []})
    status, services = await plane.call("GET", "/api/v1/services", role="read")
    assert [s["name"] for s in services] == ["billing", "orders", "stock"]
    status, _ = await plane.call(
        "POST",
        "/api/v1/registry/apply?replace=true",
        role="operate",
        data=json.dumps(alone),
    )
    assert status == 200
    status, services = await plane.call("GET", "/api/v1/services", role="read")
    assert [s["name"] for s in services] == ["billing"]


async def test_unknown_service_and_bad_query_are_404_and_400(plane: Plane) -> None:
    status, problem = await plane.call("GET", "/api/v1/services/nowhere", role="read")
    assert (status, problem["status"]) == (404, 404)
    status, problem = await plane.call(
        "GET", "/api/v1/registry/recommend?source=microservice", role="read"
    )
    assert status == 400
    assert [e["field"] for e in problem["errors"]] == ["target"]
    status, problem = await plane.call(
        "GET", "/api/v1/services?architecure=serverless", role="read"
    )
    assert (status, problem["errors"]) == (
        400,
        [{"field": "architecure", "message": "unknown field"}],
    )
