"""``hybridmesh serve``: the HTTP server of a hybridmesh process."""

from __future__ import annotations

import contextlib

import click

from hybridmesh.cli._common import console, get_ctx, run
from hybridmesh.core.process import tune_gc
from hybridmesh.core.settings import Settings


def _parse_tokens(values: tuple[str, ...]) -> dict[str, str]:
    tokens: dict[str, str] = {}
    for value in values:
        name, sep, user_id = value.partition("=")
        if not sep or not name or not user_id:
            raise click.BadParameter(
                f"{value!r}: expected NAME=USER_ID, e.g. s3cr3t=42", param_hint="--token"
            )
        tokens[name] = user_id
    return tokens


@click.command()
@click.option("--host", default=None, help="Address to bind (default: HYBRIDMESH_HTTP_HOST).")
@click.option(
    "--port",
    type=click.IntRange(0, 65_535),
    default=None,
    help="Port to bind, 0 for any free one (default: HYBRIDMESH_HTTP_PORT).",
)
@click.option(
    "--dev-tokens",
    is_flag=True,
    help="Development only: accept any non-empty WebSocket token as the user of that id.",
)
@click.option(
    "--token",
    "tokens",
    multiple=True,
    metavar="NAME=USER_ID",
    envvar="HYBRIDMESH_WS_TOKENS",
    show_envvar=True,
    help="A WebSocket token and the user it stands for (repeatable; in the environment "
    "variable, separated by spaces). Without tokens /ws/events answers 401.",
)
@click.option(
    "--worker/--no-worker",
    default=True,
    show_default=True,
    help="Also run sagas and workflows, legacy batches and function triggers in this process "
    "(the embedded mode); --no-worker when `hybridmesh worker` processes do that.",
)
def serve(
    host: str | None, port: int | None, dev_tokens: bool, tokens: tuple[str, ...], worker: bool
) -> None:
    """Run the platform's HTTP server: event ingest, WebSocket fan-out, metrics, health,
    and the control-plane API.

    Serves POST /events (CloudEvents in), GET /ws/events (WebSocket fan-out), GET /metrics,
    GET /livez (the process serves), GET /readyz and GET /healthz (503 while the event
    backend cannot publish or fetch) until interrupted (Ctrl-C or SIGTERM), then shuts down
    gracefully. By default it is also a worker: executions started with `--detach` run here.

    The control-plane API is under /api/v1 (services, registry, executions, dead letters,
    review items, batches, circuit breakers, migration plans, routes, flags,
    replications, the SLO report, a live stream of events and execution changes, audit);
    its OpenAPI document is GET /openapi.json and its reference page GET /api/docs. Its
    calls need `Authorization: Bearer TOKEN` with a token from `hybridmesh tokens create
    NAME --role read|operate|admin` (the --token values below are for WebSocket clients
    only). The dashboard is GET /ui/ (GET / redirects there); it signs in with such a
    token.

    WebSocket clients need a token: until --token (or HYBRIDMESH_WS_TOKENS) lists some, or
    --dev-tokens is given, /ws/events refuses every connection with 401.

    A connection that has not sent a complete request head within
    HYBRIDMESH_HTTP_HEADER_TIMEOUT seconds (10) of opening or of its previous answer is
    closed; a body not all come within HYBRIDMESH_HTTP_BODY_TIMEOUT seconds (30) gets 408.
    """
    if dev_tokens and tokens:
        raise click.UsageError(
            "use either --dev-tokens or --token (or HYBRIDMESH_WS_TOKENS), not both"
        )
    table = None if dev_tokens else _parse_tokens(tokens)
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C before the server took over
        run(_serve(get_ctx().settings, table, host, port, worker))


async def _serve(
    settings: Settings,
    tokens: dict[str, str] | None,
    host: str | None,
    port: int | None,
    worker: bool,
) -> None:
    from hybridmesh.api import run_server
    from hybridmesh.api.websocket import (
        HOW_TO_CONFIGURE_TOKENS,
        Authenticator,
        Principal,
        StaticTokens,
        WebSocketHub,
        allow_any,
    )
    from hybridmesh.control import ControlPlane
    from hybridmesh.observability import (
        MeshMetrics,
        configure_logging,
        configure_tracing,
        get_logger,
        shutdown_tracing,
    )
    from hybridmesh.runtime import Runtime

    configure_logging(settings)
    configure_tracing(settings)
    authenticate: Authenticator | None = allow_any
    if tokens is not None:
        # An empty table is no tokens at all: the hub then says how to configure them.
        authenticate = (
            StaticTokens({t: Principal(user_id=u) for t, u in tokens.items()}) if tokens else None
        )
    if authenticate is None:
        get_logger("hybridmesh.cli.serve").warning(
            "no WebSocket tokens are configured, /ws/events refuses every connection with 401: %s",
            HOW_TO_CONFIGURE_TOKENS,
        )
    metrics = MeshMetrics.default()
    # The control plane needs the store and the engine, worker or not; without a worker
    # here, what it starts waits in the store for a `hybridmesh worker`.
    runtime = await Runtime.open(settings)
    assert runtime.bus is not None
    bus = runtime.bus
    if worker:
        await runtime.engine.start_worker()
        await runtime.triggers.start()
        runtime.batch.start()
    hub = WebSocketHub(authenticate, metrics=metrics)

    def announce(url: str) -> None:
        tune_gc()  # start-up is done: what it loaded stays, and is frozen
        console.print(f"serving on {url} (Ctrl-C to stop)", markup=False, highlight=False)

    try:
        await run_server(
            settings,
            bus=bus,
            host=host,
            port=port,
            hub=hub,
            metrics=metrics,
            ready=announce,
            control=ControlPlane.of(runtime),
        )
    finally:
        await runtime.close()
        shutdown_tracing()


__all__ = ["serve"]
