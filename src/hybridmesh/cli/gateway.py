"""``hybridmesh gateway``, ``hybridmesh routes`` and ``hybridmesh keys``: the front door.

``gateway`` runs a replica of the reverse proxy; ``routes`` applies, inspects and changes
its routes in the state store (every replica picks a change up within a second); ``keys``
creates and revokes the API keys of the ``key_auth`` policy.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.markup import escape
from rich.table import Table

from hybridmesh.cli._common import (
    COUNT,
    console,
    emit_json,
    err_console,
    get_ctx,
    json_option,
    run,
)
from hybridmesh.core.errors import Problem, ValidationError
from hybridmesh.core.process import tune_gc
from hybridmesh.gateway.config import LoadedRoute, Route, load_routes
from hybridmesh.gateway.state import GatewayState
from hybridmesh.gateway.summary import route_mismatches, route_stats, route_summary, shown_spec
from hybridmesh.store import open_ready_store, open_store

T = TypeVar("T")


async def _with_state(action: Callable[[GatewayState], Awaitable[T]], *, create: bool = True) -> T:
    # Commands that only read (create=False) write nothing: a missing database reads as
    # empty, an out-of-date one asks for `hybridmesh db upgrade`.
    async with await open_ready_store(get_ctx().database_url, create=create) as store:
        return await action(GatewayState(store))


def _problems(problems: list[Problem]) -> None:
    for p in problems:
        err_console.print(str(p), style="red", markup=False, highlight=False, soft_wrap=True)


def _loaded(path: Path) -> list[LoadedRoute]:
    try:
        return load_routes(path)
    except ValidationError as invalid:
        _problems(invalid.problems)
        raise SystemExit(2) from None


# -- the gateway process -------------------------------------------------------------------


def _networks(values: tuple[str, ...]) -> tuple[str, ...]:
    from hybridmesh.gateway.addresses import parse_network

    for value in values:
        try:
            parse_network(value)
        except ValueError as error:
            raise click.BadParameter(str(error), param_hint="--trusted-proxy") from None
    return values


@click.command()
@click.option(
    "--host",
    default="127.0.0.1",
    envvar="HYBRIDMESH_GATEWAY_HOST",
    show_default=True,
    help="Address to bind.",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65_535),
    default=8800,
    envvar="HYBRIDMESH_GATEWAY_PORT",
    show_default=True,
    help="Port to bind, 0 for any free one.",
)
@click.option(
    "--status-port",
    type=click.IntRange(0, 65_535),
    default=None,
    envvar="HYBRIDMESH_GATEWAY_STATUS_PORT",
    help="Also serve GET /metrics, /livez and /readyz on this port (0: any free one).",
)
@click.option(
    "--trusted-proxy",
    "trusted_proxies",
    multiple=True,
    metavar="CIDR",
    callback=lambda _ctx, _param, values: _networks(values),
    help="A proxy in front of the gateway whose X-Forwarded-For is believed (repeatable): "
    "behind it, the client is the right-most X-Forwarded-For address that is not a "
    "trusted proxy.",
)
@click.option("--no-access-log", is_flag=True, help="Do not log a line per request.")
@click.option(
    "--loop",
    type=click.Choice(["auto", "uvloop", "asyncio"]),
    default="auto",
    show_default=True,
    help="The event loop: uvloop where it is installed (auto), or asyncio's own.",
)
def gateway(
    host: str,
    port: int,
    status_port: int | None,
    trusted_proxies: tuple[str, ...],
    no_access_log: bool,
    loop: str,
) -> None:
    """Run a gateway replica: an HTTP/1.1 reverse proxy with the routes in the store.

    Any number of replicas can share one store (SQLite on one host, PostgreSQL when
    scaled); each picks up a change to routes or keys within a second, without a restart.
    Prints the address it listens on, then serves until interrupted (Ctrl-C or SIGTERM),
    letting requests under way finish.
    """
    from hybridmesh.gateway.server import GatewaySettings

    settings = get_ctx().settings
    gateway_settings = GatewaySettings(
        header_timeout=settings.http_header_timeout,
        body_timeout=settings.http_body_timeout,
        redis_url=settings.redis_url,
        trusted_proxies=trusted_proxies,
        access_log=not no_access_log,
        log_format=settings.log_format,
    )
    tune_gc()
    main = _run_gateway(host, port, status_port, gateway_settings)
    with contextlib.suppress(KeyboardInterrupt):
        if loop != "asyncio":
            try:
                import uvloop
            except ImportError:
                if loop == "uvloop":
                    raise click.UsageError("--loop uvloop: uvloop is not installed") from None
            else:
                uvloop.run(main)
                return
        run(main)


async def _run_gateway(host: str, port: int, status_port: int | None, settings: Any) -> None:
    from hybridmesh.contracts.recorder import recorder_from_settings
    from hybridmesh.gateway.hooks import GatewayHooks
    from hybridmesh.gateway.metrics import GatewayMetrics
    from hybridmesh.gateway.server import Gateway
    from hybridmesh.gateway.state import SnapshotWatcher
    from hybridmesh.observability import configure_logging, configure_tracing, shutdown_tracing

    configure_logging(get_ctx().settings)
    configure_tracing(get_ctx().settings)  # a span per request when an exporter is set
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with await open_store(get_ctx().database_url) as store:
        await store.upgrade()
        metrics = GatewayMetrics()
        hooks = GatewayHooks(store, metrics)
        proxy = Gateway(
            settings,
            metrics=metrics,
            hooks=hooks,
            recorder=recorder_from_settings(get_ctx().settings),
        )
        hooks.start()
        watcher = SnapshotWatcher(GatewayState(store), proxy.use)
        await watcher.start()
        bound_host, bound_port = await proxy.start(host, port)
        status = None
        if status_port is not None:
            status = await _status_server(proxy, host, status_port)
        console.print(f"gateway listening on http://{bound_host}:{bound_port}", highlight=False)
        if status is not None:
            console.print(f"gateway status on http://{host}:{status[1]}", highlight=False)
        try:
            await stop.wait()
        finally:
            await watcher.close()
            await proxy.close()
            shutdown_tracing()
            await hooks.close()
            if status is not None:
                await status[0].cleanup()


async def _status_server(proxy: Any, host: str, port: int) -> tuple[Any, int]:
    from aiohttp import web

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=proxy.metrics.render(), content_type="text/plain")

    async def livez(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        ready = proxy.snapshot.revision >= 0
        return web.json_response(
            {"status": "ok" if ready else "starting", "revision": proxy.snapshot.revision},
            status=200 if ready else 503,
        )

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/livez", livez)
    app.router.add_get("/readyz", readyz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, bound


# -- routes --------------------------------------------------------------------------------


@click.group()
def routes() -> None:
    """The gateway's routes: apply YAML, list, show, diff, shift weights."""


_path = click.argument("path", type=click.Path(exists=True, path_type=Path), metavar="FILE")


@routes.command("validate")
@_path
@json_option
def routes_validate(path: Path, as_json: bool) -> None:
    """Check a routes file (or folder) without touching the store; exits 2 naming
    file:line and field when it is invalid."""
    try:
        loaded = load_routes(path)
    except ValidationError as invalid:
        if as_json:
            emit_json({"valid": False, "errors": [_problem_dict(p) for p in invalid.problems]})
        else:
            _problems(invalid.problems)
        raise SystemExit(2) from None
    if as_json:
        emit_json({"valid": True, "routes": [item.route.name for item in loaded]})
    else:
        console.print(f"[green]valid[/green]: {len(loaded)} route(s)", highlight=False)


def _problem_dict(p: Problem) -> dict[str, Any]:
    return {"file": p.file, "line": p.line, "field": p.field, "message": p.message}


@routes.command("apply")
@_path
@click.option("--prune", is_flag=True, help="Delete stored routes that FILE does not define.")
@json_option
def routes_apply(path: Path, prune: bool, as_json: bool) -> None:
    """Store the routes of FILE (a file or a folder): new ones are created, changed ones
    replaced. Every replica routes with them within a second. Exits 2 when FILE is invalid
    or a backend names a service that is not registered."""
    loaded = _loaded(path)

    async def apply(state: GatewayState) -> Any:
        try:
            return await state.apply(loaded, prune=prune, source=str(path))
        except ValidationError as invalid:
            _problems(invalid.problems)
            raise SystemExit(2) from None

    result = run(_with_state(apply))
    if as_json:
        emit_json(result.to_dict())
        return
    for what, names in result.to_dict().items():
        for name in names:
            console.print(f"{what:9} {name}", highlight=False)


@routes.command("diff")
@_path
@click.option("--prune", is_flag=True, help="Also show stored routes FILE does not define.")
@json_option
def routes_diff(path: Path, prune: bool, as_json: bool) -> None:
    """What `routes apply FILE` would change, changing nothing."""
    loaded = _loaded(path)
    result = run(
        _with_state(lambda s: s.diff([i.route for i in loaded], prune=prune), create=False)
    )
    if as_json:
        emit_json(result.to_dict())
        return
    marks = {"created": "+", "updated": "~", "deleted": "-", "unchanged": "="}
    for what, names in result.to_dict().items():
        for name in names:
            console.print(f"{marks[what]} {name} ({what})", highlight=False)


@routes.command("list")
@json_option
def routes_list(as_json: bool) -> None:
    """The stored routes."""
    stored = run(_with_state(lambda s: s.routes(), create=False))
    rows = [route_summary(s) for s in stored]
    if as_json:
        emit_json(rows)
        return
    table = Table("route", "match", "backends", "policies", "revision")
    for row in rows:
        path = row["path"]
        match = " ".join([*(row["hosts"] or []), f"{next(iter(path))} {next(iter(path.values()))}"])
        if row["methods"]:
            match += " " + ",".join(row["methods"])
        backends = ", ".join(f"{b['name']} {b['weight']:g}%" for b in row["backends"])
        table.add_row(
            escape(row["name"]),
            escape(match),
            escape(backends),
            escape(", ".join(row["policies"])),
            str(row["revision"]),
        )
    console.print(table)


@routes.command("show")
@click.argument("name")
@json_option
def routes_show(name: str, as_json: bool) -> None:
    """One route, as stored."""
    stored = run(_with_state(lambda s: s.route(name), create=False))
    if as_json:
        emit_json(
            {
                **route_summary(stored),
                "spec": shown_spec(stored.route),
            }
        )
        return
    import yaml

    console.print(f"[bold]{escape(name)}[/bold] (revision {stored.revision})")
    text = yaml.safe_dump(shown_spec(stored.route), sort_keys=False)
    console.print(text, markup=False, highlight=False)


@routes.command("set-weight")
@click.argument("name")
@click.argument("backend")
@click.argument("percent", type=float)
@json_option
def routes_set_weight(name: str, backend: str, percent: float, as_json: bool) -> None:
    """Give BACKEND of route NAME PERCENT of the traffic (0 to 100, in 0.01 steps); the
    other backends share the rest in their present proportions."""
    route: Route = run(_with_state(lambda s: s.set_weight(name, backend, percent)))
    weights = {b.name: b.weight for b in route.backends}
    if as_json:
        emit_json({"route": name, "weights": weights})
        return
    console.print(
        f"{escape(name)}: " + ", ".join(f"{escape(k)} {v:g}%" for k, v in weights.items()),
        highlight=False,
    )


@routes.command("delete")
@click.argument("name")
@json_option
def routes_delete(name: str, as_json: bool) -> None:
    """Delete route NAME (exits 1 when there is none)."""
    deleted = run(_with_state(lambda s: s.delete(name)))
    if as_json:
        emit_json({"route": name, "deleted": deleted})
    if not deleted:
        err_console.print(f"error: no route {name!r}", highlight=False, markup=False)
        raise SystemExit(1)
    if not as_json:
        console.print(f"deleted {escape(name)}", highlight=False)


@routes.command("generate")
@click.option(
    "--from-registry",
    "from_registry",
    is_flag=True,
    help="A route per service registered in the store (the only source so far).",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    default=None,
    help="Write the YAML to this file instead of printing it.",
)
@json_option
def routes_generate(from_registry: bool, output: Path | None, as_json: bool) -> None:
    """Write routes for the registered services: a route per service at /SERVICE (the
    prefix stripped), with timeouts, retries and breaker from its architecture's
    resilience policy and its overrides; a traditional monolith also gets key_auth and a
    rate_limit of its rate. The YAML is a starting point for `routes apply`. Exits 1
    when the registry is empty."""
    from hybridmesh.gateway.generate import render_yaml, routes_from_registry
    from hybridmesh.registry.catalog import RegistryCatalog

    if not from_registry:
        raise click.UsageError("say where the routes come from: --from-registry")

    async def services(state: GatewayState) -> list[Any]:
        return await RegistryCatalog(state.store).list()

    found = run(_with_state(services, create=False))
    if not found:
        err_console.print(
            "error: the registry has no services (hybridmesh registry load FILE)",
            highlight=False,
        )
        raise SystemExit(1)
    generated = routes_from_registry(found)
    text = render_yaml(generated)
    if output is not None:
        output.write_text(text, encoding="utf-8")
    if as_json:
        document: dict[str, Any] = {"routes": generated}
        if output is not None:
            document = {"output": str(output), "routes": [r["name"] for r in generated]}
        emit_json(document)
    elif output is not None:
        console.print(f"wrote {len(generated)} route(s) to {escape(str(output))}", highlight=False)
    else:
        click.echo(text, nl=False)


@routes.command("mismatches")
@click.argument("name", metavar="ROUTE")
@click.option("--limit", type=COUNT, default=20, show_default=True, help="How many, newest first.")
@json_option
def routes_mismatches(name: str, limit: int, as_json: bool) -> None:
    """The mirror mismatches kept for ROUTE, newest first: what differed between the
    primary's answer and the candidate's (the route's mirror.compare.keep newest are
    kept). Exits 1 when there is no such route and nothing kept for it."""

    found = run(_with_state(lambda s: route_mismatches(s, name, limit), create=False))
    if as_json:
        emit_json([m.to_dict() for m in found])
        return
    if not found:
        console.print(f"no mismatches kept for {escape(name)}", highlight=False)
        return
    table = Table("at", "request", "status", "differences")
    for m in found:
        status = (
            f"{m.primary_status}"
            if m.primary_status == m.candidate_status
            else f"{m.primary_status} -> {m.candidate_status}"
        )
        table.add_row(
            _utc(m.at),
            escape(f"{m.method} {m.path}"),
            status,
            escape(_differences_text(m.differences)),
        )
    console.print(table)


def _utc(at: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _differences_text(differences: list[dict[str, Any]], most: int = 6) -> str:
    parts: list[str] = []
    for d in differences:
        field = d.get("field")
        if field == "status":
            parts.append(f"status {d.get('primary')} -> {d.get('candidate')}")
        elif field == "header":
            parts.append(f"header {d.get('name')}")
        elif d.get("change") == "more":
            parts.append(f"{d.get('count')} more in the body")
        elif d.get("path") is not None:
            parts.append(f"body {d.get('path') or '(whole)'} ({d.get('change')})")
        else:
            parts.append(f"body ({d.get('change')})")
    text = "; ".join(parts[:most])
    if len(parts) > most:
        text += f"; and {len(parts) - most} more"
    return text


@routes.command("stats")
@click.argument("name", metavar="ROUTE")
@click.option(
    "--window",
    default="60s",
    show_default=True,
    help="How far back: 30s, 5m, 1h (whole seconds, at most 1h).",
)
@json_option
def routes_stats(name: str, window: str, as_json: bool) -> None:
    """Requests, error rate and p50/p95/p99 latency of ROUTE's backends over the last
    WINDOW, every gateway replica together (each writes its counts once a second).
    Errors are answers of 500 or more, the gateway's 502/503/504 included. Exits 2 for a
    malformed window, 1 when there is no such route."""
    from hybridmesh.gateway.stats import MAX_WINDOW_SECONDS, parse_duration

    try:
        seconds = parse_duration(window)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--window") from None
    if not 1 <= seconds <= MAX_WINDOW_SECONDS or seconds != int(seconds):
        raise click.BadParameter(
            f"{window!r}: a window is whole seconds, 1s to {MAX_WINDOW_SECONDS // 3600}h",
            param_hint="--window",
        )

    stats = run(_with_state(lambda s: route_stats(s, name, int(seconds)), create=False))
    if as_json:
        emit_json(stats.to_dict())
        return
    console.print(
        f"[bold]{escape(name)}[/bold]: last {stats.window_seconds} s, "
        f"{stats.replicas} replica(s), {stats.requests} request(s)",
        highlight=False,
    )
    if not stats.backends:
        return
    table = Table("backend", "requests", "errors", "error rate", "p50 ms", "p95 ms", "p99 ms")
    for row in stats.to_dict()["backends"]:
        table.add_row(
            escape(row["backend"]),
            str(row["requests"]),
            str(row["errors"]),
            f"{row['error_rate'] * 100:.2f}%",
            *(_ms(row[k]) for k in ("p50_ms", "p95_ms", "p99_ms")),
        )
    console.print(table)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


# -- keys ----------------------------------------------------------------------------------


@click.group()
def keys() -> None:
    """API keys for routes with the key_auth policy."""


@keys.command("create")
@click.option("--consumer", required=True, help="Who the key belongs to (rate limits use it).")
@click.option("--route", default=None, help="Only valid on this route (default: every route).")
@json_option
def keys_create(consumer: str, route: str | None, as_json: bool) -> None:
    """Create a key. The key is printed once and stored only as a digest."""
    from hybridmesh.core.names import name_problem

    problem = name_problem(consumer)
    if problem is not None:
        raise click.BadParameter(problem, param_hint="--consumer")
    record, secret = run(_with_state(lambda s: s.create_key(consumer, route)))
    if as_json:
        emit_json({**record.to_dict(), "key": secret})
        return
    console.print(
        f"key {record.id} for {escape(consumer)}: {secret}", highlight=False, soft_wrap=True
    )
    err_console.print("store it now: it is not shown again", style="yellow")


@keys.command("list")
@click.option("--active", is_flag=True, help="Leave revoked keys out.")
@json_option
def keys_list(active: bool, as_json: bool) -> None:
    """The keys (never the keys themselves: their id, consumer and first characters)."""
    found = run(_with_state(lambda s: s.keys(include_revoked=not active), create=False))
    if as_json:
        emit_json([k.to_dict() for k in found])
        return
    table = Table("id", "consumer", "route", "prefix", "status")
    for k in found:
        row = k.to_dict()
        table.add_row(k.id, escape(k.consumer), escape(k.route or "*"), k.prefix, row["status"])
    console.print(table)


@keys.command("revoke")
@click.argument("key_id")
@json_option
def keys_revoke(key_id: str, as_json: bool) -> None:
    """Revoke key KEY_ID: every replica refuses it within a second."""
    record = run(_with_state(lambda s: s.revoke_key(key_id)))
    if as_json:
        emit_json(record.to_dict())
        return
    console.print(f"revoked {record.id} ({escape(record.consumer)})", highlight=False)


__all__ = ["gateway", "keys", "routes"]
