"""``hybridmesh demo``: run the reference system end to end."""

from __future__ import annotations

import click

from hybridmesh.cli._common import console, get_ctx, run
from hybridmesh.core.errors import HybridMeshError


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
def demo(events: str) -> None:
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
    writes over with reverse sync and a conflict filed for review). Exits 0 when every step
    behaved as expected."""
    from hybridmesh.demo import run_demo

    settings = get_ctx().settings
    if events == "kafka":
        from hybridmesh.events.local_kafka import LocalKafka

        with LocalKafka() as broker:
            # Tansu answers a member joining a group after half the session timeout.
            url = f"{broker.url}?session_timeout=3"
            console.print(f"events on a local Kafka-protocol broker: {url}")
            report = run(run_demo(settings.model_copy(update={"events_url": url}), console))
    else:
        report = run(run_demo(settings, console))
    if not report.ok:
        raise HybridMeshError("the demo did not behave as expected; see the summary above")
