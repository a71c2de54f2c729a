"""A scripted HTTP service and registries for the client tests."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from hybridmesh.registry import ServiceDefinition, ServiceRegistry


@dataclass
class Scripted:
    """Answers in order from ``script`` (status, body, headers, delay); then 200 forever."""

    script: list[tuple[int, Any, dict[str, str], float]] = field(default_factory=list)
    seen: list[dict[str, str]] = field(default_factory=list)
    bodies: list[Any] = field(default_factory=list)
    delay: float = 0.0

    def fail(self, times: int, status: int = 503, headers: dict[str, str] | None = None) -> None:
        for _ in range(times):
            self.script.append((status, {"title": "scripted failure"}, headers or {}, 0.0))

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.seen.append(dict(request.headers))
        self.bodies.append(await request.json() if request.can_read_body else None)
        status, body, headers, delay = (
            self.script.pop(0) if self.script else (200, None, {}, self.delay)
        )
        if delay:
            await asyncio.sleep(delay)
        if status >= 400:
            return web.json_response(
                body, status=status, headers=headers, content_type="application/problem+json"
            )
        if request.path == "/graphql":
            document = self.bodies[-1] or {}
            return web.json_response(
                {
                    "data": {
                        "user": {"id": (document.get("variables") or {}).get("id"), "name": "Ada"}
                    }
                }
            )
        return web.json_response(
            {"path": request.path, "method": request.method, "n": len(self.seen)}
        )

    @property
    def hits(self) -> int:
        return len(self.seen)


def service(name: str, architecture: str, base_url: str, **extra: Any) -> ServiceDefinition:
    return ServiceDefinition.model_validate(
        {
            "name": name,
            "architecture": architecture,
            "base_url": base_url,
            "version": "v1",
            "capabilities": {
                "synchronous": True,
                "asynchronous": True,
                "graphql": True,
                "bulk_operations": True,
            },
            **extra,
        }
    )


def registry_for(base_url: str, **resilience: Any) -> ServiceRegistry:
    """Callers and targets of every architecture, all pointing at ``base_url``."""
    extra = {"resilience": resilience} if resilience else {}
    return ServiceRegistry(
        [
            service("orders", "microservice", base_url),
            service("users", "microservice", base_url, **extra),
            service("inventory", "modular-monolith", base_url, **extra),
            service("erp", "traditional-monolith", base_url, **extra),
            service("transform", "serverless", base_url, **extra),
        ]
    )
