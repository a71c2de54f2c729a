"""The reference system's providers, started on loopback for verifying the committed
contracts (``scripts/verify-contracts``, ``make contracts`` and the tests).

user-service publishes for real: its outbox relay hands each event to the publisher given
here, which keeps it (as ``hybridmesh events tail --json`` would print it) and passes it on
to the bus that notification-services consumes. :func:`produce_user_events` performs the
documented actions that make user-service publish ``user.registered``, ``user.updated``
and ``user.deactivated``.

:func:`record_reference` is where the committed files come from (``make record-contracts``):
it starts the same services with recording on, plus order-processing running its saga and
analytics-reporting consuming user-service's events, places an order and makes user-service
publish, so every committed interaction is one the reference system really exchanged.
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

from hybridmesh.contracts.pact import MessageInteraction, read_pact
from hybridmesh.contracts.recorder import ContractRecorder, recorder_from_settings
from hybridmesh.events import CloudEvent, EventBus
from hybridmesh.events.backends.memory import MemoryEventBackend

#: The reference system's registry and definitions.
EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "tanqory"
#: The consumer groups of user-service's events whose contracts are committed.
USER_EVENT_CONSUMERS = ("notification-services", "analytics-reporting")
#: Seconds to wait for user-service's outbox relay to publish what the actions announced.
PUBLISH_WAIT = 10.0


@dataclass
class ReferenceProviders:
    urls: dict[str, str]
    #: The bus user-service publishes to, which the consumers of its events consume.
    bus: EventBus
    published: list[dict[str, Any]] = field(default_factory=list)
    #: Set whenever user-service publishes.
    more: asyncio.Event = field(default_factory=asyncio.Event)


@asynccontextmanager
async def reference_providers(
    workdir: Path, *, recorder: ContractRecorder | None = None
) -> AsyncIterator[ReferenceProviders]:
    """The providers of the committed contracts, each with a fresh SQLite file in
    ``workdir``; yields their URLs and the events user-service publishes. ``recorder``
    records the events their consumer groups handle."""
    from tanqory.apps import (
        inventory,
        notification_services,
        payment_service,
        shipping_service,
        user_service,
    )

    bus = EventBus(MemoryEventBackend(), poll_wait=0.05, recorder=recorder)
    providers = ReferenceProviders({}, bus)

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


async def record_reference(folder: Path, rules: Path | None = None) -> int:
    """Record the reference contracts into ``folder`` (its contract files removed first):
    order-processing's saga calls for one order, and the user events that
    notification-services and analytics-reporting consume. ``rules`` is the field rules
    file (``contracts/contracts.yaml``). Returns how many interactions were recorded."""
    from hybridmesh.core.settings import Settings
    from hybridmesh.registry import ServiceRegistry
    from hybridmesh.runtime import Runtime
    from tanqory.apps import analytics_reporting, order_processing

    _emptied(folder)
    with tempfile.TemporaryDirectory(prefix="hybridmesh-record-") as tmp:
        work = Path(tmp)
        settings = Settings(
            database_url=f"sqlite:///{work / 'mesh.db'}",
            contracts_record=str(folder),
            contracts_rules=str(rules) if rules else None,
        )
        recorder = recorder_from_settings(settings)
        assert recorder is not None
        registry = ServiceRegistry.from_path(EXAMPLES / "services")
        # No bus for the engine: the saga's own events are the engine's business, not a
        # contract between reference services.
        runtime = await Runtime.open(settings, events=False, registry=registry)
        # order-processing embeds the engine, so the saga's calls are order-processing's.
        runtime.engine.runner.source = order_processing.NAME
        try:
            async with reference_providers(work, recorder=recorder) as providers:
                for name, url in providers.urls.items():
                    registry.with_base_url(name, url)
                started = [
                    await analytics_reporting.start(
                        work / "analytics-reporting.db", bus=providers.bus
                    ),
                    await order_processing.start(
                        work / "order-processing.db", engine=runtime.engine
                    ),
                ]
                try:
                    await produce_user_events(providers)
                    await place_order(started[1].url, runtime)
                    await _until_recorded(folder, providers.published)
                finally:
                    for svc in reversed(started):
                        await svc.stop()
        finally:
            await runtime.close()
    return recorder.written


def _emptied(folder: Path) -> None:
    """``folder``, made if missing, without its contract files: a recording adds to what
    a file holds, and the committed files must be only what this run exchanged."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.json"):
        old.unlink()


async def place_order(order_processing_url: str, runtime: Any) -> None:
    """Place an order for user U-1 (registered by :func:`produce_user_events`) and wait
    until its saga has ended."""
    order = {
        "order_id": "O-1",
        "customer_id": "U-1",
        "items": [{"sku": "SKU-1", "quantity": 2}],
        "total": 129.5,
        "shipping_address": {
            "street": "1 Analytical Way",
            "city": "London",
            "postal_code": "N1",
            "country": "GB",
        },
    }
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http,
        http.post(order_processing_url + "/orders", json=order) as resp,
    ):
        if resp.status >= 300:
            raise RuntimeError(f"POST /orders: {resp.status} {await resp.text()}")
    await runtime.engine.wait("O-1", timeout=PUBLISH_WAIT * 3)


async def _until_recorded(folder: Path, published: Sequence[dict[str, Any]]) -> None:
    """Wait until both consumer groups of user-service's events have recorded every type
    it published: they handle them on their own time, after the publish returned."""
    types = {str(e["type"]) for e in published}

    def recorded(consumer: str) -> set[str]:
        path = folder / f"{consumer}-user-service.json"
        if not path.exists():
            return set()
        return {
            str(i.metadata.get("type"))
            for i in read_pact(path).interactions
            if isinstance(i, MessageInteraction)
        }

    async with asyncio.timeout(PUBLISH_WAIT):
        # The consumers write the files from their own tasks: there is no event to await.
        while not all(types <= recorded(c) for c in USER_EVENT_CONSUMERS):  # noqa: ASYNC110
            await asyncio.sleep(0.1)


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


def main(argv: Sequence[str]) -> int:
    """``verify CONTRACTS_DIR HYBRIDMESH [options]`` (scripts/verify-contracts) or
    ``record FOLDER [RULES]`` (make record-contracts)."""
    if argv[:1] == ["record"] and len(argv) in (2, 3):
        rules = Path(argv[2]) if len(argv) == 3 else None
        written = asyncio.run(record_reference(Path(argv[1]), rules))
        print(f"recorded {written} interaction(s) in {argv[1]}")
        return 0
    if argv[:1] == ["verify"] and len(argv) >= 3:
        return asyncio.run(verify_reference(Path(argv[1]), argv[2], argv[3:]))
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))


__all__ = [
    "ReferenceProviders",
    "place_order",
    "produce_user_events",
    "record_reference",
    "reference_providers",
    "verify_reference",
]
