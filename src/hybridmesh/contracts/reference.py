"""The reference system's providers, started on loopback for verifying the committed
contracts (``scripts/verify-contracts``, ``make contracts`` and the tests).

user-service publishes for real: its outbox relay hands each event to the publisher given
here, which keeps it (as ``hybridmesh events tail --json`` would print it) and passes it on
to the bus that notification-services consumes. :func:`produce_user_events` performs the
documented actions that make user-service publish ``user.registered``, ``user.updated``
and ``user.deactivated``.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from hybridmesh.events import CloudEvent, EventBus
from hybridmesh.events.backends.memory import MemoryEventBackend

#: Seconds to wait for user-service's outbox relay to publish what the actions announced.
PUBLISH_WAIT = 10.0


@dataclass
class ReferenceProviders:
    urls: dict[str, str]
    published: list[dict[str, Any]] = field(default_factory=list)
    #: Set whenever user-service publishes.
    more: asyncio.Event = field(default_factory=asyncio.Event)


@asynccontextmanager
async def reference_providers(workdir: Path) -> AsyncIterator[ReferenceProviders]:
    """The providers of the committed contracts, each with a fresh SQLite file in
    ``workdir``; yields their URLs and the events user-service publishes."""
    from tanqory.apps import (
        inventory,
        notification_services,
        payment_service,
        shipping_service,
        user_service,
    )

    bus = EventBus(MemoryEventBackend(), poll_wait=0.05)
    providers = ReferenceProviders({})

    async def publish(events: Sequence[CloudEvent]) -> object:
        providers.published.extend(e.to_dict() for e in events)
        providers.more.set()
        return await bus.publish_many(events)

    started = [
        await user_service.start(workdir / "user-service.db", publish=publish),
        await inventory.start(workdir / "inventory.db"),
        await payment_service.start(workdir / "payment-service.db"),
        await shipping_service.start(workdir / "shipping-service.db"),
        await notification_services.start(workdir / "notification-services.db", bus=bus),
    ]
    try:
        providers.urls.update({svc.name: svc.url for svc in started})
        yield providers
    finally:
        for svc in reversed(started):
            await svc.stop()
        await bus.close()


async def produce_user_events(providers: ReferenceProviders) -> None:
    """Register two users, rename the second and delete it; wait until user-service has
    published the four events these announce."""
    users = providers.urls["user-service"]
    before = len(providers.published)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        for method, path, body in (
            ("POST", "/users", {"email": "ada@example.com", "name": "Ada Lovelace"}),
            ("POST", "/users", {"email": "grace@example.com", "name": "Grace Hopper"}),
            ("PATCH", "/users/U-2", {"name": "Grace Brewster Hopper"}),
            ("DELETE", "/users/U-2", None),
        ):
            async with http.request(method, users + path, json=body) as resp:
                if resp.status >= 300:
                    raise RuntimeError(f"{method} {path}: {resp.status} {await resp.text()}")
    async with asyncio.timeout(PUBLISH_WAIT):
        while len(providers.published) < before + 4:
            providers.more.clear()
            await providers.more.wait()


async def verify_reference(contracts_dir: Path, hybridmesh: str, extra: Sequence[str]) -> int:
    """Start the providers, make user-service publish, run ``hybridmesh contracts verify``
    against them (with ``extra`` options) and return its exit code."""
    from hybridmesh.core.serialization import dumps

    with tempfile.TemporaryDirectory(prefix="hybridmesh-contracts-") as tmp:
        work = Path(tmp)
        async with reference_providers(work) as providers:
            await produce_user_events(providers)
            events = work / "published.jsonl"
            events.write_text("".join(dumps(e) + "\n" for e in providers.published))
            args = ["contracts", "verify", "--dir", str(contracts_dir), "--events", str(events)]
            for name, url in providers.urls.items():
                args += ["--base-url", f"{name}={url}"]
            verifier = await asyncio.create_subprocess_exec(hybridmesh, *args, *extra)
            return await verifier.wait()


if __name__ == "__main__":  # scripts/verify-contracts CONTRACTS_DIR HYBRIDMESH [options]
    sys.exit(asyncio.run(verify_reference(Path(sys.argv[1]), sys.argv[2], sys.argv[3:])))


__all__ = ["ReferenceProviders", "produce_user_events", "reference_providers", "verify_reference"]
