"""``hybridmesh demo``: run the reference system end to end."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from hybridmesh.cli._common import console, get_ctx, run
from hybridmesh.core.errors import HybridMeshError

if TYPE_CHECKING:
    from hybridmesh.core.settings import Settings
    from hybridmesh.demo import DemoReport


@click.command()
@click.option(
    "--events",
    type=click.Choice(["settings", "kafka"]),
    default="settings",
    show_default=True,
    help="Where the bus runs: as the settings say (HYBRIDMESH_EVENTS_URL, else the SQL log), "
    "or on a Kafka-protocol broker the demo starts on this machine for the run (Tansu, from "
    "the dev dependencies). With your own Kafka, set HYBRIDMESH_EVENTS_URL=kafka://host:9092.",
)
@click.option(
    "--exit",
    "exit_after",
    is_flag=True,
    help="End after the walkthrough instead of serving the dashboard (for scripts).",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65_535),
    default=None,
    help="Port of the dashboard's server, 0 for any free one (default: HYBRIDMESH_HTTP_PORT).",
)
def demo(events: str, exit_after: bool, port: int | None) -> None:
    """Start the reference services on local ports, load the registry and make real
    cross-architecture calls, with a fault injected so retries, the circuit breaker and
    the fallback show; then follow an event from an outbox to WebSocket and analytics, and a
    poison event to the dead letters and back; run the order saga (one order completes, one
    is compensated after its payment is declined), the onboarding workflow, and a legacy ERP
    batch exported to CSV; put a gateway in front of the legacy monolith (key auth, an IP
    allowlist, a rate limit, XML translation, a sticky split, a mirrored parallel run, a live
    weight change); last, carve content-management up with gated migration plans under live
    load (one reaches 100 %, one rolls itself back after an injected fault), move a function
    by branch by abstraction, and run a boundary experiment; then move legacy-erp's customers
    to user-service's database (an event bridge, a replication backfilled while writes go
    on, drift found and repaired by reconciliation, a database_decomposition plan cutting
    writes over with reverse sync and a conflict filed for review).

    Last, it serves the platform with its dashboard over what the demo left in the store,
    the reference services still running, and prints the dashboard's URL and a token to sign
    in with; it serves until Ctrl-C. Exits 0 when every step behaved as expected."""
    from hybridmesh.demo import run_demo
    from hybridmesh.demo.dashboard import serve_dashboard

    settings = get_ctx().settings

    def demo_on(settings: Settings) -> DemoReport:
        async def serving() -> None:
            await serve_dashboard(settings, console, port=port)

        return run(run_demo(settings, console, then=None if exit_after else serving))

    if events == "kafka":
        from hybridmesh.events.local_kafka import LocalKafka

        with LocalKafka() as broker:
            # Tansu answers a member joining a group after half the session timeout.
            url = f"{broker.url}?session_timeout=3"
            console.print(f"events on a local Kafka-protocol broker: {url}")
            report = demo_on(settings.model_copy(update={"events_url": url}))
    else:
        report = demo_on(settings)
    if not report.ok:
        raise HybridMeshError("the demo did not behave as expected; see the summary above")
