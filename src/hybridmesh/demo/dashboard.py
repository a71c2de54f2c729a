"""The demo's last part: the platform's HTTP server with the dashboard, over what the demo
left in the store, until Ctrl-C.

It serves as ``hybridmesh serve`` does (the control-plane API, the dashboard, event ingest,
the WebSocket hub, an embedded worker), while the reference services the walkthrough started
still answer, so that what the dashboard starts or retries reaches them. An ``admin`` token
named ``demo`` is made for the run (one of an earlier run is revoked first) and printed with
the dashboard's URL.
"""

from __future__ import annotations

import contextlib

from rich.console import Console

from hybridmesh.core.errors import NotFoundError
from hybridmesh.core.settings import Settings
from hybridmesh.store import Store

#: The name of the token the demo makes for the dashboard.
TOKEN_NAME = "demo"


async def demo_token(store: Store) -> str:
    """A new ``admin`` token named :data:`TOKEN_NAME`, revoking the live one of that name."""
    from hybridmesh.control import Role, TokenStore

    tokens = TokenStore(store)
    with contextlib.suppress(NotFoundError):  # none on the first run on this store
        await tokens.revoke(TOKEN_NAME)
    _, token = await tokens.create(TOKEN_NAME, Role.ADMIN)
    return token


async def serve_dashboard(settings: Settings, console: Console, *, port: int | None) -> None:
    """Serve the platform on ``settings``' store until SIGINT or SIGTERM; print where."""
    from hybridmesh.api import run_server
    from hybridmesh.api.websocket import WebSocketHub, allow_any
    from hybridmesh.control import ControlPlane
    from hybridmesh.observability import MeshMetrics
    from hybridmesh.runtime import Runtime

    runtime = await Runtime.open(settings)
    try:
        assert runtime.bus is not None
        await runtime.engine.start_worker()
        token = await demo_token(runtime.store)
        metrics = MeshMetrics()

        def ready(url: str) -> None:
            console.print()
            console.rule("[bold]Dashboard")
            # Never wrapped: a person copies these, and a script reads them.
            console.print(f"Dashboard: {url}/ui/", markup=False, highlight=False, soft_wrap=True)
            console.print(
                f"Sign in with the token: {token}", markup=False, highlight=False, soft_wrap=True
            )
            console.print(
                f"API reference: {url}/api/docs · serving until Ctrl-C "
                "(`hybridmesh demo --exit` ends after the walkthrough instead)",
                markup=False,
                highlight=False,
            )

        await run_server(
            settings,
            bus=runtime.bus,
            host="127.0.0.1",
            port=port,
            hub=WebSocketHub(allow_any, metrics=metrics),
            metrics=metrics,
            ready=ready,
            control=ControlPlane.on(runtime.store, runtime.engine),
        )
    finally:
        await runtime.close()


__all__ = ["TOKEN_NAME", "demo_token", "serve_dashboard"]
