"""The demo: the Tanqory reference system, started on local ports, called through the client.

It starts real services (user-service, inventory-management, legacy-erp,
notification-services, analytics-reporting), each with its own SQLite database, loads the
reference registry into the store, and makes real cross-architecture calls. Then it injects a
fault into legacy-erp so the client's retries, circuit breaker and cached-answer fallback
show, clears the fault, and watches the breaker close again. Then come the events part
(:mod:`hybridmesh.demo.events_walkthrough`), the sagas and workflows part
(:mod:`hybridmesh.demo.orchestration_walkthrough`) and the gateway part
(:mod:`hybridmesh.demo.gateway_walkthrough`).
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from rich.console import Console

from hybridmesh.client import CommunicationRequest, CommunicationResponse, HybridClient
from hybridmesh.core.errors import HybridMeshError
from hybridmesh.core.settings import Settings
from hybridmesh.demo.data_walkthrough import DataReport, show_data
from hybridmesh.demo.events_walkthrough import EventsReport, show_events
from hybridmesh.demo.gateway_walkthrough import GatewayReport, show_gateway
from hybridmesh.demo.migration_walkthrough import MigrationReport, show_migration
from hybridmesh.demo.orchestration_walkthrough import OrchestrationReport, show_orchestration
from hybridmesh.events import EventBus, EventTransport, open_backend
from hybridmesh.observability import MeshMetrics, configure_logging, configure_tracing
from hybridmesh.registry import RegistryCatalog, ServiceRegistry, load_definitions, recommend
from hybridmesh.resilience import ResilienceOverrides
from hybridmesh.runtime import Runtime
from hybridmesh.store import open_store

#: Where the demo writes the library's log lines.
DEFAULT_LOG_PATH = Path(".hybridmesh") / "demo.log"

#: How legacy-erp's breaker behaves in the demo: small windows and a short wait, so the
#: whole open -> half-open -> closed cycle fits in a few seconds.
DEMO_LEGACY_RESILIENCE = {
    "window_size": 6,
    "minimum_calls": 4,
    "failure_rate_threshold": 0.5,
    "wait_in_open": 1.5,
    "permitted_calls_in_half_open": 2,
    "retries": 1,
    "backoff_initial": 0.05,
    "timeout": 5.0,
}


@dataclass
class CallRecord:
    """One call of the demo and how it went."""

    step: str
    source: str
    target: str
    outcome: str
    pattern: str = "-"
    strategy: str = "-"
    attempts: int = 0
    millis: float = 0.0
    note: str = ""


@dataclass
class DemoReport:
    """What the demo did, for the summary and for tests."""

    calls: list[CallRecord] = field(default_factory=list)
    transitions: list[tuple[str, str, str]] = field(default_factory=list)
    headers_seen: dict[str, str] = field(default_factory=dict)
    services: int = 0
    events: EventsReport = field(default_factory=EventsReport)
    orchestration: OrchestrationReport = field(default_factory=OrchestrationReport)
    gateway: GatewayReport = field(default_factory=GatewayReport)
    migration: MigrationReport = field(default_factory=MigrationReport)
    data: DataReport = field(default_factory=DataReport)
    ok: bool = True


def reference_services_path() -> Path:
    """The folder of the reference system's service definitions."""
    import tanqory

    return Path(tanqory.__file__).resolve().parent / "services"


@asynccontextmanager
async def reference_system(workdir: Path, bus: EventBus) -> AsyncIterator[dict[str, str]]:
    """Start the reference services on free local ports; yield name -> base URL.

    user-service publishes its events on ``bus`` through its outbox; notification-services
    and analytics-reporting consume them. notification-services gives up on an event after
    three attempts, so the demo's poison event reaches the dead letters quickly.
    """
    from tanqory.apps import (
        analytics_reporting,
        content,
        inventory,
        legacy_erp,
        notification_services,
        payment_service,
        shipping_service,
        user_service,
    )
    from tanqory.apps._consumer import ConsumerSettings

    patient = ConsumerSettings(max_deliveries=3, backoff_initial=0.1, backoff_max=0.5)
    started = {
        "user-service": await user_service.start(
            workdir / "user-service.db", publish=bus.publish_many
        ),
        "inventory-management": await inventory.start(workdir / "inventory.db"),
        "legacy-erp": await legacy_erp.start(workdir / "legacy-erp.db"),
        "notification-services": await notification_services.start(
            workdir / "notification-services.db", bus=bus, consumer=patient
        ),
        "analytics-reporting": await analytics_reporting.start(
            workdir / "analytics-reporting.db", bus=bus
        ),
        "payment-service": await payment_service.start(workdir / "payment-service.db"),
        "shipping-service": await shipping_service.start(workdir / "shipping-service.db"),
        **{name: await start(workdir / f"{name}.db") for name, start in content.STARTERS.items()},
    }
    try:
        yield {name: svc.url for name, svc in started.items()}
    finally:
        for svc in reversed(started.values()):
            await svc.stop()


async def run_demo(
    settings: Settings | None = None,
    console: Console | None = None,
    *,
    log_path: Path = DEFAULT_LOG_PATH,
    then: Callable[[], Awaitable[None]] | None = None,
) -> DemoReport:
    """Run the whole demo, print it, and return its report.

    The library's logs (JSON unless settings say text) go to ``log_path``, so they do not
    interleave with the walkthrough; the summary shows one of them. When every part behaved,
    ``then`` (the dashboard's server, say) runs after the summary, while the reference
    services still answer; the demo ends when it returns.
    """
    settings = settings or Settings()
    console = console or Console()
    configure_tracing(settings)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    report = DemoReport()
    with (
        log_path.open("w", encoding="utf-8") as log_file,
        tempfile.TemporaryDirectory(prefix="hybridmesh-demo-") as tmp,
    ):
        configure_logging(settings.model_copy(update={"log_level": "WARNING"}), stream=log_file)
        bus = EventBus(await open_backend(settings), consumer="demo")
        async with reference_system(Path(tmp), bus) as urls:
            registry = await _load_registry(settings, urls, console, report)
            metrics = MeshMetrics()
            async with HybridClient(registry, metrics=metrics) as client:
                client.add_transport(EventTransport(bus))
                await _happy_paths(client, console, report)
                await _show_headers(urls["user-service"], console, report)
                await _legacy_outage(client, urls["legacy-erp"], console, report)
                report.transitions = [(g, a, b) for _, g, a, b in client.breaker_transitions]
                _show_telemetry(metrics, log_path, console)
                report.events = await show_events(client, bus, urls, console)
            report.orchestration = await _sagas_and_workflows(
                settings, registry, urls, Path(tmp), console
            )
            async with await open_store(settings.database_url) as store:
                report.gateway = await show_gateway(store, console)
                report.migration = await show_migration(store, console)
                report.data = await show_data(store, bus, Path(tmp), urls, console)
            report.ok = _verdict(report)
            _summary(report, console)
            if then is not None and report.ok:
                await then()
        await bus.close()
        configure_logging(settings)
    return report


async def _sagas_and_workflows(
    settings: Settings,
    registry: ServiceRegistry,
    urls: dict[str, str],
    workdir: Path,
    console: Console,
) -> OrchestrationReport:
    """Start order-processing on an engine over the demo's store, and run part 6."""
    from tanqory.apps import order_processing

    async with await Runtime.open(settings, registry=registry) as runtime:
        await runtime.load_definitions(reference_services_path().parent / "definitions")
        service = await order_processing.start(
            workdir / "order-processing.db", engine=runtime.engine
        )
        try:
            registry.with_base_url(service.name, service.url)
            return await show_orchestration(runtime, {**urls, service.name: service.url}, console)
        finally:
            await service.stop()


def _show_telemetry(metrics: MeshMetrics, log_path: Path, console: Console) -> None:
    console.rule("[bold]4. Telemetry")
    console.print("Prometheus metrics for legacy-erp (MeshMetrics.render()):")
    for line in metrics.render().decode().splitlines():
        about_legacy = 'target="legacy-erp"' in line or 'name="legacy-erp"' in line
        if about_legacy and line.startswith(
            (
                "hybridmesh_calls_total",
                "hybridmesh_circuit_breaker_state",
                "hybridmesh_circuit_breaker_transitions_total",
            )
        ):
            console.print(f"  {line}", highlight=False, markup=False, soft_wrap=True)
    lines = log_path.read_text(encoding="utf-8").splitlines()
    retry = next((line for line in lines if "retrying" in line), lines[0] if lines else "")
    console.print(f"{len(lines)} log lines in {log_path}; the first retry:")
    console.print(f"  {retry}", highlight=False, markup=False, soft_wrap=True)


def _verdict(report: DemoReport) -> bool:
    """The demo worked: the happy calls succeeded, the outage was answered from the cache,
    the breaker opened and closed again, and the events part went end to end."""
    happy = [c for c in report.calls if not c.step.startswith("read during outage")]
    return (
        report.events.ok
        and report.orchestration.ok
        and report.gateway.ok
        and report.migration.ok
        and report.data.ok
        and all(c.outcome.startswith("ok") for c in happy)
        and any(c.outcome == "cached answer" for c in report.calls)
        and any(b == "open" for _, _, b in report.transitions)
        and bool(report.transitions)
        and report.transitions[-1][2] == "closed"
    )


async def _load_registry(
    settings: Settings, urls: dict[str, str], console: Console, report: DemoReport
) -> ServiceRegistry:
    console.rule("[bold]1. Registry")
    loaded = load_definitions(reference_services_path())
    registry = ServiceRegistry(item.definition for item in loaded.services)
    for name, url in urls.items():
        registry.with_base_url(name, url)
    legacy = registry.get("legacy-erp")
    overrides = legacy.resilience.model_dump(exclude_none=True) if legacy.resilience else {}
    demo_resilience = ResilienceOverrides.model_validate({**overrides, **DEMO_LEGACY_RESILIENCE})
    registry.register(legacy.model_copy(update={"resilience": demo_resilience}))
    store = await open_store(settings.database_url)
    try:
        await store.upgrade()
        saved = await RegistryCatalog(store).save(list(registry))
    finally:
        await store.close()
    report.services = saved
    console.print(
        f"Loaded [bold]{saved}[/bold] service definitions from the reference system into "
        f"{settings.database_url}; {len(loaded.warnings)} consistency warning(s)."
    )
    console.print("Recommended patterns (hybridmesh registry recommend SOURCE TARGET):")
    for src, tgt in (
        ("microservice", "microservice"),
        ("microservice", "modular-monolith"),
        ("microservice", "traditional-monolith"),
        ("serverless", "microservice"),
    ):
        rec = recommend(src, tgt)
        preferred = ", ".join(p.value for p in rec.preferred)
        console.print(
            f"  {src} -> {tgt}: [bold]{preferred}[/bold] [dim]({rec.rationale})[/dim]",
            highlight=False,
        )
    return registry


async def _call(
    client: HybridClient,
    report: DemoReport,
    step: str,
    source: str,
    target: str,
    request: CommunicationRequest,
) -> CommunicationResponse | None:
    try:
        response = await client.communicate(source, target, request)
    except HybridMeshError as error:
        report.calls.append(
            CallRecord(
                step, source, target, f"error: {type(error).__name__}", note=str(error)[:160]
            )
        )
        return None
    outcome = (
        "cached answer"
        if response.from_cache
        else ("ok via fallback" if response.fallback_used else "ok")
    )
    note = response.failures[0][:160] if response.failures else ""
    report.calls.append(
        CallRecord(
            step,
            source,
            target,
            outcome,
            response.pattern,
            response.strategy,
            response.attempts,
            response.duration * 1000,
            note,
        )
    )
    return response


async def _happy_paths(client: HybridClient, console: Console, report: DemoReport) -> None:
    console.rule("[bold]2. Cross-architecture calls")
    created = await _call(
        client,
        report,
        "register a user",
        "order-processing",
        "user-service",
        # REST is asked for by name: the caller needs the new user's id in the answer, which
        # an event (the default for commands between microservices) does not give.
        CommunicationRequest(
            type="command",
            method="POST",
            endpoint="/users",
            payload={"email": "ada@example.com", "name": "Ada Lovelace"},
            pattern="rest",
        ),
    )
    user_id = str(created.data["id"]) if created and isinstance(created.data, dict) else "1"
    await _call(
        client,
        report,
        "process a payment (command)",
        "order-processing",
        "payment-service",
        CommunicationRequest(
            type="command",
            event_type="payment.process",
            payload={"order_id": "O-1001", "amount": 59.98, "user_id": user_id},
        ),
    )
    await _call(
        client,
        report,
        "fetch the user (REST)",
        "order-processing",
        "user-service",
        CommunicationRequest(type="query", endpoint=f"/users/{user_id}"),
    )
    await _call(
        client,
        report,
        "fetch the user (GraphQL)",
        "content-management",
        "user-service",
        CommunicationRequest(
            type="query",
            query="query($id: ID!) { user(id: $id) { id name email } }",
            variables={"id": user_id},
            pattern="graphql",
        ),
    )
    await _call(
        client,
        report,
        "check stock",
        "order-processing",
        "inventory-management",
        CommunicationRequest(
            type="query",
            method="POST",
            endpoint="/inventory/check",
            payload={"items": [{"sku": "SKU-1", "quantity": 2}]},
        ),
    )
    await _call(
        client,
        report,
        "create an ERP customer",
        "order-processing",
        "legacy-erp",
        CommunicationRequest(
            type="command",
            method="POST",
            endpoint="/erp/customers",
            payload={"name": "Ada Lovelace", "email": "ada@example.com"},
        ),
    )
    await _call(
        client,
        report,
        "read an ERP customer",
        "order-processing",
        "legacy-erp",
        CommunicationRequest(type="query", endpoint="/erp/customers/C-1"),
    )
    _print_calls(console, report.calls)


async def _show_headers(user_service_url: str, console: Console, report: DemoReport) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{user_service_url}/_admin/requests") as resp,
    ):
        seen = await resp.json()
    entries = seen.get("requests", seen) if isinstance(seen, dict) else seen
    last = next(
        (e for e in reversed(entries) if e.get("headers", e).get("Idempotency-Key")),
        entries[-1] if entries else {},
    )
    headers = last.get("headers", last)
    report.headers_seen = {
        k: str(headers.get(k, ""))
        for k in ("X-Request-ID", "X-Source-Service", "traceparent", "Idempotency-Key")
    }
    console.print("user-service received, on the command above:")
    for key, value in report.headers_seen.items():
        console.print(f"  {key}: [cyan]{value}[/cyan]")


async def _legacy_outage(
    client: HybridClient, legacy_url: str, console: Console, report: DemoReport
) -> None:
    console.rule("[bold]3. legacy-erp fails: retries, breaker, fallback")
    first = len(report.calls)
    async with aiohttp.ClientSession() as session:
        await session.post(f"{legacy_url}/_admin/faults", json={"mode": "error", "status": 503})
        console.print("Injected a fault: legacy-erp answers 503 to everything.")
        query = CommunicationRequest(type="query", endpoint="/erp/customers/C-1")
        for i in range(5):
            await _call(
                client,
                report,
                f"read during outage #{i + 1}",
                "order-processing",
                "legacy-erp",
                query,
            )
        await session.post(f"{legacy_url}/_admin/faults", json={"mode": "off"})
        console.print("Cleared the fault; waiting for the breaker's open period to pass.")
        await asyncio.sleep(DEMO_LEGACY_RESILIENCE["wait_in_open"] + 0.2)
        for i in range(3):
            await _call(
                client,
                report,
                f"read after recovery #{i + 1}",
                "order-processing",
                "legacy-erp",
                query,
            )
    _print_calls(console, report.calls[first:])
    for _, guard, old, new in client.breaker_transitions:
        console.print(f"  circuit [bold]{guard}[/bold]: {old} -> {new}")


def _print_calls(console: Console, calls: list[CallRecord]) -> None:
    for c in calls:
        colour = (
            "green"
            if c.outcome == "ok"
            else ("yellow" if c.outcome.startswith(("ok", "cached")) else "red")
        )
        tries = f"{c.attempts} attempt{'s' if c.attempts != 1 else ''}"
        console.print(
            f"[{colour}]{c.outcome:>15}[/{colour}]  [bold]{c.step}[/bold]: "
            f"{c.source} -> {c.target} via {c.pattern} ({tries}, {c.millis:.1f} ms)",
            highlight=False,
        )
        if c.note:
            console.print(f"{'':>17}[dim]first: {c.note}[/dim]", highlight=False)


def _summary(report: DemoReport, console: Console) -> None:
    console.rule("[bold]Summary")
    ok = sum(1 for c in report.calls if c.outcome.startswith("ok"))
    cached = sum(1 for c in report.calls if c.outcome == "cached answer")
    failed = sum(1 for c in report.calls if c.outcome.startswith("error"))
    console.print(
        f"{len(report.calls)} calls: {ok} answered by a service, {cached} from the cache "
        f"while legacy-erp was down, {failed} failed. Breaker transitions: "
        + (", ".join(f"{a}->{b}" for _, a, b in report.transitions) or "none")
    )
    ev = report.events
    console.print(
        f"Events: user.registered pushed live over WebSocket "
        f"({'yes' if ev.pushed_live else 'no'}), counted by analytics "
        f"({ev.registered_counted}); poison event dead-lettered after "
        f"{ev.dead_letter_attempts} attempts and replayed "
        f"({'ok' if ev.replayed_ok else 'failed'})."
    )
    for note in ev.notes:
        console.print(f"[red]{note}[/red]")
    orch = report.orchestration
    console.print(
        f"Sagas: order {orch.completed_order or '-'} completed; order "
        f"{orch.compensated_order or '-'} compensated after its payment was declined (stock "
        f"{'released' if orch.stock_restored else 'NOT released'}); onboarding workflow "
        f"{orch.onboarding or '-'}; legacy-erp batch exported to "
        f"{orch.batch_file if orch.batch_file else '-'}.",
        highlight=False,
    )
    console.print(
        "Order events: the customer was notified of "
        f"{', '.join(sorted(orch.customer_told)) or 'none'}.",
        highlight=False,
    )
    for note in orch.notes:
        console.print(f"[red]{note}[/red]")
    gw = report.gateway
    console.print(
        f"Gateway: refused without a key ({gw.no_key}), from a disallowed address "
        f"({gw.wrong_address}), over the limit ({gw.over_limit}, Retry-After "
        f"{gw.retry_after}); JSON to XML and back for legacy-erp "
        f"({'ok' if gw.transformed else 'failed'}); sticky split {gw.split}; "
        f"{len(gw.mismatch)} mirror mismatch(es) recorded; content delivery moved to "
        f"{gw.shifted_to or '-'} live.",
        highlight=False,
    )
    mig = report.migration
    console.print(
        f"Migration: carve-workflow {mig.workflow_status} (route backends "
        f"{mig.workflow_backends}); carve-creation {mig.creation_status}, content-creation back "
        f"at {mig.creation_weight} % {mig.rollback_seconds} s after the fault; "
        f"{mig.requests} requests, {mig.injected_failures} failed by the injected fault, "
        f"{mig.other_failures} otherwise; summary-v2 {mig.summary_status} "
        f"({mig.summary_calls}); the preview experiment {mig.experiment_verdict}.",
        highlight=False,
    )
    data = report.data
    console.print(
        f"Data: {data.backfilled} customers backfilled while legacy-erp took writes; "
        f"{data.changes_captured} changes captured, lag at most {data.max_lag_changes} "
        f"changes; {sum(data.found.values())} of {sum(data.drift.values())} injected "
        f"differences found, {data.repaired} repaired, {data.remaining} left; plan "
        f"customers-to-user-service {data.plan_status or '-'} with {data.conflicts} "
        f"conflict(s) filed for review; {data.events_bridged} ERP events bridged.",
        highlight=False,
    )
    console.print(
        "Next: `hybridmesh registry list`, `hybridmesh dlq list`, `hybridmesh events tail '>'`, "
        "`hybridmesh executions list`, `hybridmesh batch runs`, `hybridmesh routes list`, "
        "`hybridmesh routes mismatches content-delivery`, `hybridmesh migrate list`, "
        "`hybridmesh migrate audit carve-creation`, `hybridmesh replicate list`, "
        "`hybridmesh reconcile history erp-customers`, `hybridmesh projections list`."
    )
