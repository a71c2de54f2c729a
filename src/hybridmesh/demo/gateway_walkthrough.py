"""The demo's gateway part: the legacy monolith behind the front door, and the first steps
of a strangler fig that carves content-management into three services.

A gateway replica runs with routes applied to the demo's store:

- ``legacy-erp`` (``/erp``): key auth, an IP allowlist (127.0.0.1 only), a rate limit of
  5 requests a second per consumer; ``legacy-erp-xml`` (``/erp/xml``) besides translates
  JSON to the XML the monolith's oldest interface speaks, and its XML answers back to JSON;
- ``content-creation`` (``/content``): split 50/50 between content-management and
  content-creation, sticky per user (``x-user``);
- ``content-delivery`` (``/content/{id}``): all on content-management, every request
  mirrored to content-delivery and the answers compared (a parallel run);
- ``content-workflow`` (``/content/{id}/publish``): still all on content-management.

Then it shows refusals (no key: 401; a disallowed address: 403; over the limit: 429 with
Retry-After), a transformed legacy call, the sticky split, a mirrored request whose
mismatch is recorded, and a live weight change that moves content delivery over.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from rich.console import Console
from rich.table import Table

from hybridmesh.gateway.config import parse_routes
from hybridmesh.gateway.hooks import GatewayHooks
from hybridmesh.gateway.metrics import GatewayMetrics
from hybridmesh.gateway.server import Gateway, GatewaySettings
from hybridmesh.gateway.state import GatewayState, SnapshotWatcher
from hybridmesh.store import Store

ROUTES = """
routes:
  - name: legacy-erp
    match: {path: {prefix: /erp}}
    backends:
      - {name: legacy, service: legacy-erp, weight: 100}
    policies:
      ip_restriction: {allow: [127.0.0.1/32]}
      key_auth: {hide_credentials: true}
      rate_limit: {limit: 5, per: second, by: consumer}
  - name: legacy-erp-xml
    match: {path: {prefix: /erp/xml}}
    backends:
      - {name: legacy, service: legacy-erp, weight: 100}
    policies:
      ip_restriction: {allow: [127.0.0.1/32]}
      key_auth: {hide_credentials: true}
      xml: {request: json_to_xml, root: order, response: xml_to_json}
  - name: content-creation
    match: {path: {exact: /content}}
    sticky: {header: x-user}
    backends:
      - {name: monolith, service: content-management, weight: 50}
      - {name: creation, service: content-creation, weight: 50}
  - name: content-delivery
    match: {path: {regex: '/content/(?P<id>[0-9]+)'}, methods: [GET]}
    sticky: {header: x-user}
    backends:
      - {name: monolith, service: content-management, weight: 100}
      - {name: delivery, service: content-delivery, weight: 0}
    mirror:
      backend: delivery
      percent: 100
      compare: {headers: [content-type], ignore: [created_at]}
  - name: content-workflow
    match: {path: {regex: '/content/(?P<id>[0-9]+)/publish'}, methods: [POST]}
    backends:
      - {name: monolith, service: content-management, weight: 100}
      - {name: workflow, service: content-workflow, weight: 0}
"""


@dataclass
class GatewayReport:
    """What the gateway part showed, for the verdict."""

    no_key: int = 0
    wrong_address: int = 0
    over_limit: int = 0
    retry_after: str | None = None
    transformed: dict[str, Any] | None = None
    sticky_kept: bool = False
    split: dict[str, int] = field(default_factory=dict)
    mismatch: list[dict[str, Any]] = field(default_factory=list)
    shifted_to: str | None = None
    shift_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        order = (self.transformed or {}).get("order", {})
        return (
            self.no_key == 401
            and self.wrong_address == 403
            and self.over_limit == 429
            and bool(self.retry_after)
            and str(order.get("order_id", "")).startswith("SO-")
            and self.sticky_kept
            and len(self.split) == 2
            and bool(self.mismatch)
            and self.shifted_to == "content-delivery"
        )


async def show_gateway(store: Store, console: Console) -> GatewayReport:
    """Part 7: run a gateway replica on ``store`` (whose registry holds the reference
    services at their local URLs) and walk through what it does."""
    console.rule("[bold]7. Gateway: the legacy monolith behind the front door")
    report = GatewayReport()
    state = GatewayState(store)
    applied = await state.apply(parse_routes(ROUTES, "demo-routes.yaml"), source="demo")
    console.print(
        f"Applied {len(applied.created) + len(applied.updated)} routes "
        "(hybridmesh routes apply): legacy-erp behind key auth, an IP allowlist and a "
        "rate limit; content-management's routes ready to split."
    )
    async with running_gateway(store) as (watcher, base):
        console.print(f"A gateway replica listens on {base} (hybridmesh gateway).")
        _, key = await state.create_key("warehouse-terminals")
        console.print(
            "Created an API key for consumer warehouse-terminals (hybridmesh keys create)."
        )
        await watcher.reload()
        async with aiohttp.ClientSession() as http:
            await _refusals(http, base, key, console, report)
            await _transformed(http, base, key, console, report)
            await _split(http, base, console, report)
            await _mirrored(http, base, state, console, report)
            await _shift(http, base, state, console, report)
    return report


@contextlib.asynccontextmanager
async def running_gateway(
    store: Store,
) -> AsyncIterator[tuple[SnapshotWatcher, str]]:
    """A gateway replica on ``store`` (as ``hybridmesh gateway`` runs one), writing its
    stats windows every 0.2 s; yields its snapshot watcher and its base URL."""
    state = GatewayState(store)
    metrics = GatewayMetrics()
    hooks = GatewayHooks(store, metrics, flush_seconds=0.2)
    gateway = Gateway(GatewaySettings(access_log=False), metrics=metrics, hooks=hooks)
    watcher = SnapshotWatcher(state, gateway.use)
    await watcher.start()
    hooks.start()
    host, port = await gateway.start("127.0.0.1", 0)
    try:
        yield watcher, f"http://{host}:{port}"
    finally:
        await watcher.close()
        await gateway.close(grace=2)
        await hooks.close()


async def _status(
    http: aiohttp.ClientSession, method: str, url: str, **kwargs: Any
) -> tuple[int, dict[str, str], Any]:
    async with http.request(method, url, **kwargs) as response:
        body = await response.json(content_type=None)
        return response.status, dict(response.headers), body


async def _refusals(
    http: aiohttp.ClientSession, base: str, key: str, console: Console, report: GatewayReport
) -> None:
    url = f"{base}/erp/customers/C-1"
    report.no_key, _, body = await _status(http, "GET", url)
    console.print(
        f"  GET /erp/customers/C-1 without a key: [bold]{report.no_key}[/bold] ({body['detail']})"
    )
    other = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
    async with aiohttp.ClientSession(connector=other) as elsewhere:
        report.wrong_address, _, body = await _status(
            elsewhere, "GET", url, headers={"apikey": key}
        )
    console.print(
        f"  the same with the key, from 127.0.0.2: [bold]{report.wrong_address}[/bold] "
        f"({body['detail']})"
    )
    statuses = []
    for _ in range(8):
        status, headers, _ = await _status(http, "GET", url, headers={"apikey": key})
        statuses.append(status)
        if status == 429:
            report.over_limit = status
            report.retry_after = headers.get("Retry-After")
    console.print(
        f"  8 calls at once with the key (limit 5 a second): {statuses}; the 429 says "
        f"Retry-After: {report.retry_after}"
    )
    await asyncio.sleep(1.1)  # the next second's window


async def _transformed(
    http: aiohttp.ClientSession, base: str, key: str, console: Console, report: GatewayReport
) -> None:
    order = {"customer_id": "C-1", "total": 42.5}
    status, _, body = await _status(
        http, "POST", f"{base}/erp/xml/orders", json=order, headers={"apikey": key}
    )
    report.transformed = body if isinstance(body, dict) else None
    console.print(
        f"  POST /erp/xml/orders {order} (JSON in): legacy-erp got XML and answered XML; "
        f"the caller got {status} JSON: {body}",
        highlight=False,
    )


async def _split(
    http: aiohttp.ClientSession, base: str, console: Console, report: GatewayReport
) -> None:
    first: dict[str, str] = {}
    kept = True
    for round_ in range(2):
        for n in range(20):
            user = f"reader-{n}"
            async with http.get(f"{base}/content", headers={"x-user": user}) as response:
                served = response.headers.get("X-Served-By", "?")
            if round_ == 0:
                first[user] = served
            elif first[user] != served:
                kept = False
    report.sticky_kept = kept
    report.split = dict(Counter(first.values()))
    console.print(
        f"  GET /content for 20 users, twice each (50/50, sticky on x-user): "
        f"{report.split}; every user kept their side: {kept}"
    )


async def _mirrored(
    http: aiohttp.ClientSession,
    base: str,
    state: GatewayState,
    console: Console,
    report: GatewayReport,
) -> None:
    for item in (1, 2, 3):
        async with http.get(f"{base}/content/{item}", headers={"x-user": "reader-1"}) as response:
            await response.read()
    for _ in range(100):  # the comparison and its write happen in the background
        found = await state.mismatches("content-delivery", limit=5)
        if found:
            break
        await asyncio.sleep(0.05)
    report.mismatch = [m.to_dict() for m in found]
    table = Table("path", "differences (hybridmesh routes mismatches content-delivery)")
    for m in found:
        table.add_row(m.path, "; ".join(_difference(d) for d in m.differences))
    console.print("  GET /content/1..3, each mirrored to content-delivery (a parallel run):")
    console.print(table)


def _difference(d: dict[str, Any]) -> str:
    where = d.get("path") or d.get("name") or ""
    return f"{d['field']} {where}: {d.get('primary')!r} vs {d.get('candidate')!r}"


async def _shift(
    http: aiohttp.ClientSession,
    base: str,
    state: GatewayState,
    console: Console,
    report: GatewayReport,
) -> None:
    loop = asyncio.get_running_loop()
    await state.set_weight("content-delivery", "delivery", 100)
    began = loop.time()
    console.print("  hybridmesh routes set-weight content-delivery delivery 100 ...")
    while loop.time() - began < 5:
        async with http.get(f"{base}/content/1", headers={"x-user": "reader-1"}) as response:
            served = response.headers.get("X-Served-By")
        if served == "content-delivery":
            report.shifted_to = served
            break
        await asyncio.sleep(0.05)
    report.shift_seconds = round(loop.time() - began, 2)
    console.print(
        f"  GET /content/1 is served by {report.shifted_to} {report.shift_seconds} s later, "
        "with no restart."
    )


__all__ = ["GatewayReport", "running_gateway", "show_gateway"]
