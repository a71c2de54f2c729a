"""A bulk endpoint whose answers each test scripts, and the start of the tests' clock."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from hybridmesh.batch import BatchIntegration

OpenBatch = Callable[..., Awaitable[BatchIntegration]]

START = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass
class BulkEndpoint:
    """Answers each POST with every record ok, except those in ``fail`` (failed, with the
    error) and ``skip`` (left out); or with ``status`` when it is not 200. Records what it
    was sent."""

    url: str = ""
    bodies: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    status: int = 200
    fail: dict[str, str] = field(default_factory=dict)
    skip: set[str] = field(default_factory=set)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.bodies.append(body)
        self.headers.append(dict(request.headers))
        if self.status != 200:
            return web.json_response({"title": "unavailable"}, status=self.status)
        results = [
            {"record_id": r["record_id"], "status": "failed", "error": self.fail[r["record_id"]]}
            if r["record_id"] in self.fail
            else {"record_id": r["record_id"], "status": "ok"}
            for r in body["records"]
            if r["record_id"] not in self.skip
        ]
        return web.json_response({"results": results})
