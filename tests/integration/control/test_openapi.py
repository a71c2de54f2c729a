"""The OpenAPI document is valid OpenAPI 3.1, says what the routes are, and is served with
its reference page to anyone."""

from __future__ import annotations

import re
from importlib import resources

from openapi_spec_validator import validate
from tests.integration.control.conftest import Plane

from hybridmesh.control import openapi


async def test_the_served_document_is_valid_openapi_3_1(plane: Plane) -> None:
    async with plane.http.get(plane.url + "/openapi.json") as response:  # no token
        assert response.status == 200
        document = await response.json()
    assert document["openapi"] == "3.1.0"
    validate(document)
    assert document == openapi()


async def test_every_control_route_is_in_the_document_and_every_operation_is_routed(
    plane: Plane,
) -> None:
    routed = {
        (route.method, route.resource.canonical)
        for route in plane.app.router.routes()
        if route.resource is not None
        and route.method != "HEAD"
        and (
            route.resource.canonical.startswith("/api/")
            or route.resource.canonical == "/openapi.json"
        )
    }
    documented = {
        (method.upper(), path) for path, item in openapi()["paths"].items() for method in item
    }
    assert routed == documented
    assert ("GET", "/api/v1/executions/{id}") in documented
    operation_ids = [
        op["operationId"] for item in openapi()["paths"].values() for op in item.values()
    ]
    assert len(operation_ids) == len(set(operation_ids))


async def test_each_documented_path_answers_on_the_running_app(plane: Plane) -> None:
    for path, item in openapi()["paths"].items():
        concrete = re.sub(r"{\w+}", "x", path)
        for method in item:
            async with plane.http.request(method.upper(), plane.url + concrete) as response:
                # Anything but "nothing is served here" or "not that method": 401 without a
                # token, 200 for the open ones.
                assert response.status not in (404, 405), (method, path, response.status)


async def test_every_operation_that_needs_a_role_documents_401_403_and_bearer() -> None:
    for item in openapi()["paths"].values():
        for op in item.values():
            if "x-required-role" in op:
                assert {"401", "403"} <= set(op["responses"]), op["operationId"]
                assert op["security"] == [{"bearer": []}]
            else:
                assert op["security"] == []
            if op.get("parameters") or op.get("requestBody"):
                assert "400" in op["responses"], op["operationId"]


async def test_the_reference_page_is_served_and_reads_the_document(plane: Plane) -> None:
    async with plane.http.get(plane.url + "/api/docs") as response:
        assert response.status == 200
        assert response.content_type == "text/html"
        page = await response.text()
    assert 'fetch("/openapi.json")' in page
    assert "<script src" not in page and "http://" not in page and "https://" not in page
    shipped = resources.files("hybridmesh.control").joinpath("static/docs.html").read_text()
    assert page == shipped
