"""The demo's data part: legacy-erp's customers move to user-service's database.

legacy-erp keeps its customers and orders in its own SQLite file, and goes on taking writes
through its HTTP API throughout (a load of new customers, updates and orders). Then:

- an **event bridge** publishes the ERP's changes as CloudEvents (``erp.customers.*``,
  ``erp.orders.*``); analytics-reporting, which counts every event on the bus, counts them
  too, and a read model of orders per customer (a :class:`Projection`) fills from them,
  without a line of legacy-erp changing;
- a **replication** backfills the customers into a ``customers`` table in user-service's
  database while writes go on (columns renamed, an email domain computed), then streams;
- **drift** is injected into the copy (rows deleted, changed and added behind the
  replication's back), and a **reconciliation** finds every row and repairs it;
- a ``database_decomposition`` **plan** cuts writes over: it checks the replication runs
  and caught up, verifies both sides agree, starts reverse sync, then (after approval)
  flips flag ``customer-writes`` so new customers are written by the new owner. Reverse
  sync carries them back, so legacy-erp still serves them. A customer changed on both sides
  at once is a conflict, resolved (last writer wins) and filed for review. A person confirms,
  and the plan retires the replication.

The part ends with the numbers: changes captured, lag, differences found and repaired,
events bridged, conflicts.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from rich.console import Console

from hybridmesh.core.errors import NotFoundError
from hybridmesh.data.capture import backlog
from hybridmesh.data.config import ReplicationSpec, parse_data
from hybridmesh.data.control import DataControl
from hybridmesh.data.databases import open_database
from hybridmesh.data.projections import Projection
from hybridmesh.data.runner import DataSupervisor
from hybridmesh.events import CloudEvent, EventBus
from hybridmesh.flags.client import FlagClient
from hybridmesh.flags.files import parse_flags
from hybridmesh.flags.store import FlagStore
from hybridmesh.gateway.stats import WindowRecorder
from hybridmesh.migration.abstraction import Abstraction, flag_chooser
from hybridmesh.migration.plans import PlanSpec, build_plan
from hybridmesh.migration.runner import PlanRunner
from hybridmesh.migration.state import MigrationState, Status
from hybridmesh.review import ReviewQueue
from hybridmesh.store import Store, Transaction

DEFINITIONS = """
replications:
  - name: erp-customers
    source: {{url: "{legacy}", system: legacy-erp}}
    target: {{url: "{users}", system: user-service}}
    chunk_size: 20
    tables:
      - source: customers
        target: customers
        columns: {{customer_id: id, name: full_name}}
        computed: {{email_domain: "hybridmesh.demo.data_walkthrough:email_domain"}}
    conflicts: last_writer_wins
bridges:
  - name: erp-events
    source: {{url: "{legacy}", system: legacy-erp}}
    prefix: erp
    tables: [customers, orders]
"""

WRITES_FLAG = """
key: customer-writes
description: "which system takes new customers, legacy-erp (old) or user-service (new)"
variants: {old: old, new: new}
default_variant: old
"""

PLAN = {
    "name": "customers-to-user-service",
    "source": "legacy-erp",
    "strategy": "database_decomposition",
    "description": "legacy-erp's customers move to user-service's database",
    "targets": [
        {"service": "user-service", "replication": "erp-customers", "flag": "customer-writes"}
    ],
    "criteria": {"interval": 1, "window": 2, "min_requests": 5},
}

#: Customers legacy-erp holds before the part starts moving them.
SEEDED = 240

#: The longest the part waits for anything.
DEADLINE_SECONDS = 60.0


def email_domain(row: Mapping[str, Any]) -> str | None:
    """The computed column of user-service's customers: the part of the email after @."""
    email = row.get("email")
    return email.rsplit("@", 1)[-1].lower() if isinstance(email, str) and "@" in email else None


@dataclass
class DataReport:
    """What the data part showed, for the verdict."""

    backfilled: int = 0
    changes_captured: int = 0
    max_lag_changes: int = 0
    max_lag_seconds: float = 0.0
    drift: dict[str, int] = field(default_factory=dict)
    found: dict[str, int] = field(default_factory=dict)
    rate_before_repair: float = 0.0
    repaired: int = 0
    remaining: int = -1
    events_bridged: int = 0
    analytics_counted: int = 0
    orders_projected: int = 0
    written_by_new_owner: int = 0
    reverse_synced: bool = False
    conflicts: int = 0
    review_items: int = 0
    plan_status: str = ""
    final_differences: int = -1

    @property
    def ok(self) -> bool:
        return (
            self.plan_status == Status.COMPLETED.value
            and sum(self.found.values()) == sum(self.drift.values())
            and self.remaining == 0
            and self.final_differences == 0
            and self.reverse_synced
            and self.events_bridged > 0
            and self.analytics_counted > 0
            and self.orders_projected > 0
            and self.conflicts >= 1
        )


async def show_data(
    store: Store, bus: EventBus, workdir: Path, urls: Mapping[str, str], console: Console
) -> DataReport:
    """Run the data part against the running reference system; see the module docstring."""
    console.rule("[bold]9. Data: legacy-erp's customers move to user-service's database")
    report = DataReport()
    await _seed_customers(urls["legacy-erp"], SEEDED)
    console.print(
        f"  legacy-erp imports {SEEDED} customers by its nightly batch "
        "(POST /batch/customer-sync) and keeps taking customers and orders through its API."
    )
    legacy_url = f"sqlite:///{workdir / 'legacy-erp.db'}"
    users_url = f"sqlite:///{workdir / 'user-service.db'}"
    definitions = parse_data(
        DEFINITIONS.format(legacy=legacy_url, users=users_url), "demo-replication.yaml"
    )
    spec = definitions.replications["erp-customers"]
    control = DataControl(store)
    await control.apply(definitions)
    for name in ("erp-events", "erp-customers"):
        await control.set_desired(name, "running")
    console.print(
        "  hybridmesh replicate apply demo-replication.yaml; replicate start erp-events; "
        "replicate start erp-customers"
    )
    orders = orders_by_customer(workdir)
    await orders.open(store)
    orders.attach(bus)
    stop = asyncio.Event()
    supervisor = asyncio.create_task(DataSupervisor(store, bus=bus, look_every=0.2).run(stop))
    users = await open_database(users_url)
    writes = CustomerWrites(urls["legacy-erp"], users)
    try:
        async with aiohttp.ClientSession() as http:
            writes.http = http
            writes.start()
            try:
                await _backfill(control, report, console)
                # Reconciliation compares two moving databases; rows in flight would count
                # as differences, so the injected drift is found with writes held.
                await writes.pause()
                await _wait_for("the replication to catch up", _caught_up(control), console)
                await _drift_and_reconcile(store, spec, users, report, console)
                writes.resume()
                await _cut_over(store, control, writes, report, console)
            finally:
                await writes.halt()
            await _numbers(store, bus, spec, http, urls, orders, report, console)
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await supervisor
        await orders.close()
        await users.close()
    return report


# ---------------------------------------------------------------------------- the load


async def _seed_customers(erp: str, count: int) -> None:
    customers = [
        {"name": f"Seed Customer {n}", "email": f"seed{n}@shop{n % 7}.example"}
        for n in range(count)
    ]
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{erp}/batch/customer-sync", json={"customers": customers}) as response,
    ):
        response.raise_for_status()


class CustomerWrites:
    """legacy-erp's users at work: new customers, changed customers and orders, all through
    legacy-erp's API, until the cut-over sends new customers to the new owner instead (flag
    ``customer-writes``, read through an :class:`Abstraction`)."""

    def __init__(self, erp: str, users: Store) -> None:
        self.erp = erp
        self.users = users
        self.http: aiohttp.ClientSession | None = None
        self.created: list[str] = []
        self.by_new_owner: list[str] = []
        self.abstraction: Abstraction[..., str] | None = None
        self.failures = 0
        self._stop = asyncio.Event()
        self._going = asyncio.Event()
        self._going.set()
        self._task: asyncio.Task[None] | None = None

    async def pause(self) -> None:
        """Hold the writes (the one under way ends first)."""
        self._going.clear()
        await asyncio.sleep(0.1)

    def resume(self) -> None:
        self._going.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def halt(self) -> None:
        """Stop writing (and wait for the write under way)."""
        self._stop.set()
        self._going.set()
        if self._task is not None:
            await self._task

    async def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            await self._going.wait()
            n += 1
            try:
                await self.one(n)
            except (aiohttp.ClientError, OSError):
                self.failures += 1
            await asyncio.sleep(0.03)

    async def one(self, n: int) -> None:
        assert self.http is not None
        name, email = f"Customer {n}", f"buyer{n}@shop{n % 7}.example"
        if self.abstraction is not None:
            customer_id = await self.abstraction.call({"targetingKey": f"clerk-{n % 50}"}, n)
        else:
            customer_id = await self.legacy_create(name, email)
        self.created.append(customer_id)
        if n % 3 == 0 and len(self.created) > 5:
            target = self.created[-5]
            if target not in self.by_new_owner:
                await self.post(
                    "/erp/customers", {"customer_id": target, "name": f"{name} Ltd", "email": email}
                )
        if n % 2 == 0:
            await self.post(
                "/erp/orders",
                {
                    "customer_id": "C-1",
                    "items": [{"sku": f"SKU-{n % 9}", "qty": 1}],
                    "total": 10 + n % 40,
                },
            )

    async def legacy_create(self, name: str, email: str) -> str:
        body = await self.post("/erp/customers", {"name": name, "email": email})
        return str(body["customer_id"])

    async def new_owner_create(self, n: int) -> str:
        """user-service writes the customer itself, in its own database."""
        customer_id = f"U-{n}"
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        email = f"buyer{n}@shop{n % 7}.example"
        await self.users.execute(
            "INSERT INTO customers (id, full_name, email, created_at, updated_at, email_domain) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            customer_id,
            f"Customer {n}",
            email,
            now,
            now,
            email.rsplit("@", 1)[-1],
        )
        self.by_new_owner.append(customer_id)
        return customer_id

    async def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST ``body`` to legacy-erp's ``path``; its JSON answer."""
        assert self.http is not None
        async with self.http.post(f"{self.erp}{path}", json=body) as response:
            response.raise_for_status()
            answer: dict[str, Any] = await response.json()
            return answer


def orders_by_customer(workdir: Path) -> Projection:
    """analytics-reporting's read model of ERP orders per customer, fed by the bridge."""

    async def setup(tx: Transaction) -> None:
        await tx.execute(
            "CREATE TABLE IF NOT EXISTS erp_orders_by_customer (customer_id TEXT PRIMARY KEY, "
            "orders INTEGER NOT NULL, revenue REAL NOT NULL)"
        )

    async def apply(tx: Transaction, event: CloudEvent) -> None:
        after = event.data.get("after") or {}
        if event.type != "erp.orders.created" or not after:
            return
        await tx.execute(
            "INSERT INTO erp_orders_by_customer (customer_id, orders, revenue) VALUES (?, 1, ?) "
            "ON CONFLICT (customer_id) DO UPDATE SET orders = orders + 1, "
            "revenue = revenue + excluded.revenue",
            after.get("customer_id"),
            float(after.get("total") or 0),
        )

    async def reset(tx: Transaction) -> None:
        await tx.execute("DELETE FROM erp_orders_by_customer")

    return Projection(
        "erp-orders-by-customer",
        "erp.orders.*",
        setup=setup,
        apply=apply,
        reset=reset,
        database=f"sqlite:///{workdir / 'analytics-reporting.db'}",
        import_path="hybridmesh.demo.data_walkthrough:orders_by_customer",
    )


# ---------------------------------------------------------------------------- the steps


async def _wait_for(what: str, check: Any, console: Console) -> Any:
    began = time.monotonic()
    while time.monotonic() - began < DEADLINE_SECONDS:
        found = await check()
        if found:
            return found
        await asyncio.sleep(0.1)
    console.print(f"[red]  {what}: not within {DEADLINE_SECONDS:g} s[/red]")
    return None


async def _backfill(control: DataControl, report: DataReport, console: Console) -> None:
    async def backfilled() -> dict[str, Any] | None:
        status = (await control.get("erp-customers")).status or {}
        report.max_lag_changes = max(report.max_lag_changes, int(status.get("lag_changes", 0)))
        report.max_lag_seconds = max(report.max_lag_seconds, float(status.get("lag_seconds", 0)))
        if status.get("phase") == "streaming" and status.get("lag_changes", 1) <= 5:
            return status
        return None

    status = await _wait_for("backfill", backfilled, console)
    if status:
        report.backfilled = sum(int(t["rows_copied"]) for t in status["tables"])
        console.print(
            f"  Backfill by watermarks while legacy-erp takes writes: {report.backfilled} "
            f"customers copied in chunks of 20, then streaming; lag {status['lag_changes']} "
            "changes.",
            highlight=False,
        )


async def _drift_and_reconcile(
    store: Store, spec: ReplicationSpec, users: Store, report: DataReport, console: Console
) -> None:
    from hybridmesh.data.reconcile import reconcile

    rows = await users.fetch_all("SELECT id FROM customers ORDER BY id LIMIT 6")
    ids = [r["id"] for r in rows]
    await users.execute("DELETE FROM customers WHERE id IN (?, ?)", ids[1], ids[2])
    await users.execute(
        "UPDATE customers SET email = 'drifted@nowhere.example' WHERE id = ?", ids[3]
    )
    await users.execute("UPDATE customers SET full_name = 'Typo Corp' WHERE id = ?", ids[4])
    await users.execute(
        "INSERT INTO customers (id, full_name, email, created_at, updated_at) "
        "VALUES ('X-999', 'Ghost', 'ghost@x.example', '2020-01-01', '2020-01-01')"
    )
    report.drift = {"missing": 2, "different": 2, "extra": 1}
    console.print(
        "  Drift injected into user-service's copy behind the replication's back: 2 rows "
        "deleted, 2 changed, 1 added."
    )
    result = await reconcile(spec, store=store, repair=True)
    table = result.tables[0]
    report.found = {
        "missing": table.missing,
        "different": table.different,
        "extra": table.extra,
    }
    report.rate_before_repair = table.inconsistency_rate
    report.repaired = table.repaired
    report.remaining = table.remaining if table.remaining is not None else -1
    console.print(
        f"  hybridmesh reconcile run erp-customers --repair: {table.source_rows} rows compared "
        f"by checksum bisection; missing {table.missing}, different "
        f"{table.different}, extra {table.extra} "
        f"(inconsistency {table.inconsistency_rate:.2%} before repair); {table.repaired} "
        f"repaired from the source, {table.remaining} left.",
        highlight=False,
    )


async def _cut_over(
    store: Store,
    control: DataControl,
    writes: CustomerWrites,
    report: DataReport,
    console: Console,
) -> None:
    await FlagStore(store).apply(parse_flags(WRITES_FLAG, "demo-flags.yaml"))
    plans = MigrationState(store)
    plan = build_plan(PlanSpec.model_validate(PLAN), {})
    with contextlib.suppress(NotFoundError):
        await plans.delete(plan.name)
    await plans.save(plan, actor="demo")
    await plans.control(plan.name, "start", actor="demo", reason=plan.spec.description)
    console.print(
        "  hybridmesh migrate plan legacy-erp --strategy database_decomposition --target "
        "user-service --replication erp-customers --flag customer-writes --start"
    )
    flags = await FlagClient(store, poll_seconds=0.2).start()
    recorder = WindowRecorder(store, replica="demo-app", flush_seconds=0.2)
    recorder.start()

    async def old(n: int) -> str:
        return await writes.legacy_create(f"Customer {n}", f"buyer{n}@shop{n % 7}.example")

    writes.abstraction = Abstraction(
        "customer-writes",
        old,
        writes.new_owner_create,
        choose=flag_chooser(flags, "customer-writes"),
        recorder=recorder,
    )
    stop = asyncio.Event()
    runner = asyncio.create_task(PlanRunner(store, owner="demo-runner").run(stop))
    try:
        for step in ("writes to user-service", "confirm"):
            record = await _wait_for(
                f"plan step {step}", _waiting_at(plans, plan.name, step), console
            )
            if record is None:
                return
            if step == "confirm":
                await _conflict(store, writes, report, console)
                await _reverse_synced(writes, report, console)
                # The last writes drain through both directions before a person confirms.
                await writes.halt()
                await _wait_for("both directions caught up", _caught_up(control), console)
            console.print(
                f"  steps so far: {', '.join(s.name for s in plan.steps[: record.step])}; "
                f"hybridmesh migrate approve {plan.name}  ({step})",
                highlight=False,
            )
            await plans.control(plan.name, "approve", actor="demo", reason=None)
        final = await _wait_for("the plan's end", _ended(plans, plan.name), console)
        report.plan_status = final.status.value if final else "unfinished"
        console.print(f"  plan {plan.name}: [bold]{report.plan_status}[/bold]")
    finally:
        stop.set()
        await runner
        writes.abstraction = None
        await recorder.close()
        await flags.close()


def _waiting_at(plans: MigrationState, name: str, step: str) -> Any:
    async def check() -> Any:
        record = await plans.get(name)
        if record.status.ended:
            return record
        if record.status is Status.WAITING_APPROVAL and record.plan.steps[record.step].name == step:
            return record
        return None

    return check


def _caught_up(control: DataControl) -> Any:
    async def check() -> bool:
        status = (await control.get("erp-customers")).status or {}
        reverse = status.get("reverse")
        return status.get("lag_changes") == 0 and (
            reverse is None or reverse.get("lag_changes") == 0
        )

    return check


def _ended(plans: MigrationState, name: str) -> Any:
    async def check() -> Any:
        record = await plans.get(name)
        return record if record.status.ended else None

    return check


async def _conflict(
    store: Store, writes: CustomerWrites, report: DataReport, console: Console
) -> None:
    """A straggler at legacy-erp and user-service change one customer while the two are
    out of sync (the replication is held for a moment, as a slow network would hold it)."""
    customer = "C-1"
    control = DataControl(store)
    await control.set_desired("erp-customers", "paused")
    await asyncio.sleep(0.8)  # the runner looks at what is asked every half second
    await writes.post(
        "/erp/customers",
        {
            "customer_id": customer,
            "name": "Acme Corp (legacy desk)",
            "email": "billing@acme.example",
        },
    )
    await asyncio.sleep(0.02)
    await writes.users.execute(
        "UPDATE customers SET full_name = 'Acme Corporation', updated_at = ? WHERE id = ?",
        time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        customer,
    )
    await control.set_desired("erp-customers", "running")

    async def filed() -> Any:
        items = await ReviewQueue(store).list(origin="replication")
        return items or None

    items = await _wait_for("the conflict's review item", filed, console)
    report.review_items = len(items or [])
    await asyncio.sleep(1.2)  # the replications report their counts every second
    status = (await DataControl(store).get("erp-customers")).status or {}
    reverse = status.get("reverse") or {}
    report.conflicts = int(status.get("conflicts", 0)) + int(reverse.get("conflicts", 0))
    if items:
        winner = items[0].payload["winner_system"]
        console.print(
            f"  Customer {customer} changed on both sides at once: a conflict, filed for "
            f"review with both versions (hybridmesh review list --origin replication); "
            f"{winner}'s later change won (last writer wins) and both databases hold it.",
            highlight=False,
        )


async def _reverse_synced(writes: CustomerWrites, report: DataReport, console: Console) -> None:
    """A customer the new owner wrote is served by legacy-erp: reverse sync carried it."""
    report.written_by_new_owner = len(writes.by_new_owner)
    if not writes.by_new_owner:
        return
    customer = writes.by_new_owner[-1]

    async def served() -> bool:
        assert writes.http is not None
        async with writes.http.get(f"{writes.erp}/erp/customers/{customer}") as response:
            return response.status == 200

    report.reverse_synced = bool(await _wait_for("reverse sync", served, console))
    console.print(
        f"  Writes cut over: {report.written_by_new_owner} customers written by user-service; "
        f"legacy-erp still serves them (GET /erp/customers/{customer}: "
        f"{'200' if report.reverse_synced else 'missing'}), through reverse sync.",
        highlight=False,
    )


async def _numbers(
    store: Store,
    bus: EventBus,
    spec: ReplicationSpec,
    http: aiohttp.ClientSession,
    urls: Mapping[str, str],
    orders: Projection,
    report: DataReport,
    console: Console,
) -> None:
    from hybridmesh.data.reconcile import reconcile

    legacy = await open_database(spec.source.url)
    try:
        report.changes_captured = (await backlog(legacy)).head
    finally:
        await legacy.close()
    bridge = (await DataControl(store).get("erp-events")).status or {}
    report.events_bridged = int(bridge.get("published", 0))
    await bus.drain(max_seconds=5)
    async with http.get(f"{urls['analytics-reporting']}/reports/events?type=erp.>") as response:
        body = await response.json()
        report.analytics_counted = int(body.get("count", 0))
    projected = await orders.store.fetch_value(
        "SELECT COALESCE(SUM(orders), 0) FROM erp_orders_by_customer"
    )
    report.orders_projected = int(projected or 0)
    result = await reconcile(spec, store=store)
    report.final_differences = result.inconsistent
    console.print(
        f"  The numbers: {report.changes_captured} changes captured from legacy-erp; lag, as "
        f"the replication reported it each second of the backfill, at most "
        f"{report.max_lag_changes} changes ({report.max_lag_seconds:.2f} s); "
        f"{sum(report.found.values())} differences found and {report.repaired} repaired; "
        f"{report.conflicts} conflict(s); {report.events_bridged} ERP events bridged, "
        f"{report.analytics_counted} counted by analytics-reporting, "
        f"{report.orders_projected} orders in its read model; after retirement "
        f"{report.final_differences} rows differ.",
        highlight=False,
    )


__all__ = ["DataReport", "email_domain", "orders_by_customer", "show_data"]
