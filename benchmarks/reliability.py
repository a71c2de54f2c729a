"""Reliability: order sagas through injected faults while one of two workers is killed.

On a fresh PostgreSQL database, ``ORDERS`` order sagas (reserve stock, charge, ship,
confirm; each undone in reverse on failure) run on two ``hybridmesh worker`` processes,
as a scaled deployment runs them: the registry is stored in the database, the definition is
a YAML file the workers load, the engine's events go through the SQL log in the same
database. This process only records the executions (detached, as ``saga start --detach``
does) and watches. When about a third of them have ended, one worker is killed with
SIGKILL; the other goes on and takes over what the dead one held once its leases expire.

The four services run in this process on one loopback port, each under its own path. Each
is idempotent by ``Idempotency-Key`` (a repeated key gets the first answer and acts no
more), its compensation is a no-op when nothing was done and refuses a late action for an
order it already undid. ``FAULT_RATE`` of all calls (seeded) meet a fault:

- a quarter answer 503 before acting, a quarter act and then answer 503 (the effect is
  done, the caller does not know it);
- half are slowed down by a delay drawn from ``SLOW``: under the step's timeout a slow
  success, beyond it a timed-out attempt that is retried while the first may still act.

``DECLINED`` customers are refused by the payment service (402, not retried) by design, so
that some orders must end compensated: at most ``ORDERS - DECLINED`` can complete.

Goals: 100 % of the sagas end completed or compensated (none stuck, none half
done); the stock held by reservations equals the items of the completed orders; >= 99.5 %
completed. Also checked: no order is charged twice, none is charged without completing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web
from rich.progress import Progress

from benchmarks._postgres import fresh_database
from benchmarks._report import machine, write_json, write_section

ORDERS = 1_000
FAULT_RATE = 0.05
STEP_TIMEOUT_MS = 1_000
SLOW = (0.2, 1.6)  # seconds a slow call is delayed; beyond the step timeout it times out
DECLINED = 3  # orders whose payment is refused by design
LEASE = 2.0  # seconds; the workers' --lease
MAX_EXECUTIONS = 50  # per worker: under the client's bulkhead of 64 calls per service
KILL_AT = 1 / 3  # of the orders ended, when one worker is killed
END_TIMEOUT = 600.0  # seconds to wait for every saga to end
SKUS = 5
STOCK = 100_000  # units per SKU: no order fails for want of stock
SEED = 13
SAGA_TYPE = "bench-order"
COMPLETED_GOAL = 0.995
SERVICES = ("inventory", "payment", "shipping", "notification")
ENDED = ("completed", "failed", "compensated", "compensation_failed", "cancelled")

# Enough attempts that a step fails for good only by design: about 3.6 % of attempts fail
# (errors and time-outs), so eight in a row happen about once in 10^11 steps.
RETRY = {"max_attempts": 8, "backoff_ms": 200, "multiplier": 2, "max_backoff_ms": 2000}


def _definition() -> dict[str, Any]:
    """The order saga, as a YAML definition file holds it."""
    order = "{{ input.order_id }}"

    def step(
        step_id: str, service: str, operation: str, payload: dict[str, Any], undo: str | None
    ) -> dict[str, Any]:
        written: dict[str, Any] = {
            "step_id": step_id,
            "service_name": service,
            "operation": operation,
            "payload": {"order_id": order, **payload},
        }
        if undo:
            written["compensation_operation"] = undo
            written["compensation_payload"] = {"order_id": order}
        return {**written, "timeout": STEP_TIMEOUT_MS, "retry_policy": RETRY}

    items = {"items": "{{ input.items }}"}
    return {
        "saga_type": SAGA_TYPE,
        "description": "Reserve stock, charge, ship and confirm an order; undo in reverse.",
        "steps": [
            step("reserve-inventory", "inventory", "reserve-items", items, "release-items"),
            step(
                "process-payment",
                "payment",
                "charge-payment",
                {"customer_id": "{{ input.customer_id }}", "amount": "{{ input.total }}"},
                "refund-payment",
            ),
            step("create-shipment", "shipping", "create-shipment", items, "cancel-shipment"),
            step(
                "send-confirmation",
                "notification",
                "send-order-confirmation",
                {"customer_id": "{{ input.customer_id }}"},
                None,
            ),
        ],
    }


# -- the services --------------------------------------------------------------------------


@dataclass
class _Shop:
    """Inventory, payment, shipping and notification: their state, and the faults they meet."""

    rng: random.Random
    declined: set[str]
    available: dict[str, int] = field(
        default_factory=lambda: {f"sku-{n}": STOCK for n in range(SKUS)}
    )
    answers: dict[str, tuple[int, Any]] = field(default_factory=dict)  # by idempotency key
    reservations: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    charges: Counter[str] = field(default_factory=Counter)  # by order: actions, not answers
    refunds: Counter[str] = field(default_factory=Counter)
    shipments: Counter[str] = field(default_factory=Counter)
    cancellations: Counter[str] = field(default_factory=Counter)
    confirmations: Counter[str] = field(default_factory=Counter)
    undone: dict[str, set[str]] = field(default_factory=lambda: {s: set() for s in SERVICES})
    calls: Counter[str] = field(default_factory=Counter)  # by operation
    faults: Counter[str] = field(default_factory=Counter)
    replays: int = 0

    async def handle(self, request: web.Request) -> web.Response:
        service, operation = request.match_info["service"], request.match_info["op"]
        key = request.headers.get("Idempotency-Key")
        if service not in SERVICES or not key:
            return _problem(400, "unknown service or no Idempotency-Key")
        body = await request.json()
        self.calls[operation] += 1
        roll = self.rng.random()
        after_effect = False
        if roll < FAULT_RATE / 4:
            self.faults["error_before_effect"] += 1
            return _problem(503, "injected: unavailable")
        if roll < FAULT_RATE / 2:
            after_effect = True
        elif roll < FAULT_RATE:
            delay = self.rng.uniform(*SLOW)
            self.faults["slow" if delay < STEP_TIMEOUT_MS / 1000 else "timed_out"] += 1
            await asyncio.sleep(delay)
        # From here to the answer nothing awaits: a key is checked and acted on at once.
        if key in self.answers:
            self.replays += 1
            status, answer = self.answers[key]
        else:
            status, answer = self._act(service, operation, body)
            self.answers[key] = (status, answer)
        if after_effect:
            self.faults["error_after_effect"] += 1
            return _problem(503, "injected: unavailable after acting")
        if status >= 400:
            return _problem(status, str(answer))
        return web.json_response(answer)

    def _act(self, service: str, operation: str, body: dict[str, Any]) -> tuple[int, Any]:
        order = str(body.get("order_id"))
        undone = self.undone[service]
        if operation in ("reserve-items", "charge-payment", "create-shipment") and order in undone:
            return 409, f"order {order} was cancelled here"
        if operation == "reserve-items":
            items = body["items"]
            if any(self.available[i["sku"]] < i["quantity"] for i in items):
                return 409, "out of stock"
            for item in items:
                self.available[item["sku"]] -= item["quantity"]
            self.reservations[order] = items
            return 200, {"reservation_id": f"r-{order}"}
        if operation == "release-items":
            undone.add(order)
            items = self.reservations.pop(order, [])
            for item in items:
                self.available[item["sku"]] += item["quantity"]
            return 200, {"released": bool(items)}
        if operation == "charge-payment":
            if body.get("customer_id") in self.declined:
                return 402, "payment declined"
            self.charges[order] += 1
            return 200, {"charge_id": f"c-{order}", "amount": body.get("amount")}
        if operation == "refund-payment":
            undone.add(order)
            refunded = self.charges[order] > self.refunds[order]
            if refunded:
                self.refunds[order] += 1
            return 200, {"refunded": refunded}
        if operation == "create-shipment":
            self.shipments[order] += 1
            return 200, {"shipment_id": f"s-{order}"}
        if operation == "cancel-shipment":
            undone.add(order)
            cancelled = self.shipments[order] > self.cancellations[order]
            if cancelled:
                self.cancellations[order] += 1
            return 200, {"cancelled": cancelled}
        if operation == "send-order-confirmation":
            self.confirmations[order] += 1
            return 200, {"sent": True}
        return 404, f"no operation {operation!r}"


def _problem(status: int, title: str) -> web.Response:
    return web.json_response(
        {"title": title, "status": status}, status=status, content_type="application/problem+json"
    )


@contextlib.asynccontextmanager
async def _serve(shop: _Shop) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_post("/{service}/operations/{op}", shop.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


def _orders(count: int, rng: random.Random) -> list[dict[str, Any]]:
    orders = []
    for n in range(count):
        items: list[dict[str, Any]] = [
            {"sku": f"sku-{rng.randrange(SKUS)}", "quantity": rng.randint(1, 3)}
            for _ in range(rng.randint(1, 2))
        ]
        orders.append(
            {
                "order_id": f"order-{n:05d}",
                "customer_id": f"customer-{n:05d}",
                "items": items,
                "total": round(sum(i["quantity"] for i in items) * 9.5, 2),
            }
        )
    return orders


# -- the workers ---------------------------------------------------------------------------


@dataclass
class _Worker:
    name: str
    process: asyncio.subprocess.Process
    output: Path


async def _start_worker(name: str, database_url: str, definitions: Path, folder: Path) -> _Worker:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HYBRIDMESH_")}
    env.update(
        HYBRIDMESH_DATABASE_URL=database_url,
        HYBRIDMESH_LOG_LEVEL="WARNING",
        HYBRIDMESH_EXCHANGE_DIR=str(folder / f"exchange-{name}"),
    )
    output = folder / f"{name}.log"
    with output.open("wb") as sink:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "hybridmesh",
            "worker",
            "--definitions",
            str(definitions),
            "--lease",
            str(LEASE),
            "--max-executions",
            str(MAX_EXECUTIONS),
            "--worker-id",
            name,
            stdout=sink,
            stderr=asyncio.subprocess.STDOUT,
            env=env,
            cwd=folder,
        )
    return _Worker(name, process, output)


def _log_summary(output: Path) -> dict[str, Any]:
    """Log lines of a worker by level, and the first few distinct warnings and errors."""
    levels: Counter[str] = Counter()
    notable: list[str] = []
    for line in output.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if not isinstance(record, dict) or "level" not in record:
            continue
        level = str(record["level"])
        levels[level] += 1
        message = f"{level}: {record.get('message', '')}"[:300]
        if level in ("WARNING", "ERROR", "CRITICAL") and message not in notable:
            notable.append(message)
    return {"levels": dict(levels), "notable": notable[:5]}


async def _until_running(worker: _Worker, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while b" running" not in worker.output.read_bytes():
        if worker.process.returncode is not None or time.monotonic() > deadline:
            tail = worker.output.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"worker {worker.name} did not start:\n{tail}")
        await asyncio.sleep(0.05)


async def _stop(worker: _Worker, sig: int = signal.SIGTERM, seconds: float = 30.0) -> int:
    if worker.process.returncode is None:
        worker.process.send_signal(sig)
        try:
            await asyncio.wait_for(worker.process.wait(), seconds)
        except TimeoutError:
            worker.process.kill()
            await worker.process.wait()
    return int(worker.process.returncode or 0)


# -- the run -------------------------------------------------------------------------------


async def _save_registry(database_url: str, base_url: str) -> None:
    from hybridmesh.registry import RegistryCatalog, ServiceDefinition
    from hybridmesh.store import open_store

    store = await open_store(database_url)
    try:
        await store.upgrade()
        await RegistryCatalog(store).save(
            [
                ServiceDefinition.model_validate(
                    {
                        "name": name,
                        "architecture": "microservice",
                        "base_url": f"{base_url}/{name}",
                        "version": "v1",
                        "capabilities": {"synchronous": True},
                    }
                )
                for name in SERVICES
            ],
            source="benchmarks/reliability.py",
        )
    finally:
        await store.close()


async def _statuses(store: Any) -> Counter[str]:
    rows = await store.fetch_all(
        "SELECT status, COUNT(*) AS n FROM orch_executions GROUP BY status"
    )
    return Counter({str(r["status"]): int(r["n"]) for r in rows})


async def _held_by(store: Any, worker: str) -> set[str]:
    rows = await store.fetch_all(
        "SELECT id FROM orch_executions WHERE lease_owner = ? AND ended_at IS NULL", worker
    )
    return {str(r["id"]) for r in rows}


async def run(*, quick: bool = False) -> dict[str, Any]:
    """Run the benchmark, write its JSON and its section of docs/benchmarks.md."""
    from hybridmesh.core.settings import Settings
    from hybridmesh.runtime import Runtime

    count = 200 if quick else ORDERS
    declined = 1 if quick else DECLINED
    rng = random.Random(SEED)
    orders = _orders(count, rng)
    refused = {o["customer_id"] for o in rng.sample(orders, declined)}
    shop = _Shop(random.Random(SEED + 1), refused)
    results: dict[str, Any] = {
        "benchmark": "reliability",
        "machine": machine(),
        "orders": count,
        "declined_by_design": declined,
        "fault_rate": FAULT_RATE,
        "step_timeout_ms": STEP_TIMEOUT_MS,
        "slow_seconds": list(SLOW),
        "lease_seconds": LEASE,
        "max_executions_per_worker": MAX_EXECUTIONS,
        "retry_policy": RETRY,
    }
    with tempfile.TemporaryDirectory(prefix="hm-bench-") as tmp:
        folder = Path(tmp)
        definitions = folder / "definitions"
        definitions.mkdir()
        (definitions / f"{SAGA_TYPE}.yaml").write_text(
            yaml.safe_dump(_definition(), sort_keys=False)
        )
        async with _serve(shop) as base_url, fresh_database() as database_url:
            await _save_registry(database_url, base_url)
            settings = Settings(database_url=database_url, events_url=None)
            runtime = await Runtime.open(settings, exchange_dir=folder / "exchange")
            workers: list[_Worker] = []
            try:
                await runtime.load_definitions(definitions)
                workers = [
                    await _start_worker(name, database_url, definitions, folder)
                    for name in ("worker-1", "worker-2")
                ]
                await asyncio.gather(*(_until_running(w) for w in workers))
                results.update(await _drive(runtime, orders, workers))
                results["survivor_exit_code"] = await _stop(workers[1])
                results["checks"] = await _check(runtime.store, orders, refused, shop)
            finally:
                for worker in workers:
                    await _stop(worker, signal.SIGKILL)
                results["worker_logs"] = {w.name: _log_summary(w.output) for w in workers}
                await runtime.close()
    results["service"] = {
        "calls": sum(shop.calls.values()),
        "calls_by_operation": dict(shop.calls),
        "faults": dict(shop.faults),
        "replayed_keys": shop.replays,
    }
    results["goals"] = _goals(results)
    write_json("reliability", results)
    write_section("reliability", _markdown(results, quick))
    return results


async def _drive(
    runtime: Any, orders: list[dict[str, Any]], workers: list[_Worker]
) -> dict[str, Any]:
    """Record every order's saga, kill the first worker a third of the way, wait for the
    end; returns the timings."""
    store, engine = runtime.store, runtime.engine
    victim = workers[0]
    count = len(orders)
    began = time.monotonic()

    async def record() -> float:
        for order in orders:
            await engine.start("saga", SAGA_TYPE, order, execution_id=order["order_id"])
        return time.monotonic() - began

    recording = asyncio.create_task(record())
    killed_at: float | None = None
    held: set[str] = set()
    first_taken_at: float | None = None
    taken_over_at: float | None = None
    recovered_at: float | None = None
    ended = 0
    timings: dict[str, Any] = {}
    with Progress(transient=True) as progress:
        task = progress.add_task(f"{count:,} order sagas on two workers", total=count)
        while True:
            await asyncio.sleep(0.1)
            statuses = await _statuses(store)
            ended = sum(statuses[s] for s in ENDED)
            progress.update(task, completed=ended)
            now = time.monotonic()
            if killed_at is None and ended >= count * KILL_AT:
                held = await _held_by(store, victim.name)
                victim.process.send_signal(signal.SIGKILL)
                await victim.process.wait()
                killed_at = now
                timings["killed_after_seconds"] = round(now - began, 3)
                timings["ended_when_killed"] = ended
                timings["held_by_killed_worker"] = len(held)
                progress.update(task, description=f"{victim.name} killed; the other goes on")
            if killed_at is not None and held and taken_over_at is None:
                still = await _held_by(store, victim.name) & held
                if first_taken_at is None and len(still) < len(held):
                    first_taken_at = now
                if not still:
                    taken_over_at = now
            if killed_at is not None and held and recovered_at is None:
                open_ids = await store.fetch_all(
                    "SELECT id FROM orch_executions WHERE ended_at IS NULL"
                )
                if not {str(r["id"]) for r in open_ids} & held:
                    recovered_at = now
            if recording.done() and ended >= count:
                break
            if now - began > END_TIMEOUT:
                timings["timed_out"] = True
                break
    timings["record_seconds"] = round(await recording, 3)
    timings["seconds"] = round(time.monotonic() - began, 3)
    if killed_at is not None:
        timings["first_takeover_seconds"] = (
            round(first_taken_at - killed_at, 3) if first_taken_at is not None else None
        )
        timings["takeover_seconds"] = (
            round(taken_over_at - killed_at, 3) if taken_over_at is not None else None
        )
        timings["held_ended_seconds"] = (
            round(recovered_at - killed_at, 3) if recovered_at is not None else None
        )
    timings["recovered_steps"] = int(
        await store.fetch_value("SELECT COUNT(*) FROM orch_history WHERE type = 'step.recovered'")
    )
    timings["retried_attempts"] = int(
        await store.fetch_value("SELECT COUNT(*) FROM orch_history WHERE type = 'step.retried'")
    )
    return timings


async def _check(
    store: Any, orders: list[dict[str, Any]], refused: set[str], shop: _Shop
) -> dict[str, Any]:
    """What the database and the services hold at the end, order by order."""
    rows = await store.fetch_all("SELECT id, status FROM orch_executions")
    status_of = {str(r["id"]): str(r["status"]) for r in rows}
    statuses = Counter(status_of.values())
    completed = [o for o in orders if status_of.get(o["order_id"]) == "completed"]
    compensated = [o for o in orders if status_of.get(o["order_id"]) == "compensated"]
    held = sum(STOCK - left for left in shop.available.values())
    expected = sum(i["quantity"] for o in completed for i in o["items"])
    half_done: list[str] = []
    for order in orders:
        oid = order["order_id"]
        status = status_of.get(oid)
        effects = (
            oid in shop.reservations,
            shop.charges[oid] - shop.refunds[oid],
            shop.shipments[oid] - shop.cancellations[oid],
            shop.confirmations[oid],
        )
        if (status == "completed" and effects != (True, 1, 1, 1)) or (
            status == "compensated" and effects != (False, 0, 0, 0)
        ):
            half_done.append(oid)
    failed_by_design = [o["order_id"] for o in orders if o["customer_id"] in refused]
    return {
        "statuses": dict(statuses),
        "missing": len([o for o in orders if o["order_id"] not in status_of]),
        "completed": len(completed),
        "compensated": len(compensated),
        "not_ended_cleanly": len(orders) - len(completed) - len(compensated),
        "declined_orders_compensated": sum(
            1 for oid in failed_by_design if status_of.get(oid) == "compensated"
        ),
        "reserved_units": held,
        "units_of_completed_orders": expected,
        "reservations_of_other_orders": len(
            set(shop.reservations) - {o["order_id"] for o in completed}
        ),
        "orders_charged_twice": sum(1 for n in shop.charges.values() if n > 1),
        "orders_charged_without_completing": sum(
            1
            for o in orders
            if shop.charges[o["order_id"]] - shop.refunds[o["order_id"]] > 0
            and status_of.get(o["order_id"]) != "completed"
        ),
        "half_done": len(half_done),
        "half_done_examples": half_done[:10],
        "duplicate_confirmations": sum(1 for n in shop.confirmations.values() if n > 1),
    }


# -- goals and the report ------------------------------------------------------------------


def _goals(results: dict[str, Any]) -> dict[str, Any]:
    checks = results.get("checks", {})
    count = results["orders"]
    ended = checks.get("completed", 0) + checks.get("compensated", 0)
    rate = checks.get("completed", 0) / count if count else 0.0
    return {
        "ended_completed_or_compensated": {
            "value": ended,
            "of": count,
            "half_done": checks.get("half_done"),
            "met": ended == count and checks.get("half_done") == 0,
        },
        "stock_invariant": {
            "reserved": checks.get("reserved_units"),
            "completed_items": checks.get("units_of_completed_orders"),
            "met": checks.get("reserved_units") == checks.get("units_of_completed_orders")
            and checks.get("reservations_of_other_orders") == 0,
        },
        "completed_rate": {
            "value": round(rate, 4),
            "goal": COMPLETED_GOAL,
            "met": rate >= COMPLETED_GOAL,
        },
        "no_double_charge": {
            "charged_twice": checks.get("orders_charged_twice"),
            "charged_without_completing": checks.get("orders_charged_without_completing"),
            "met": checks.get("orders_charged_twice") == 0
            and checks.get("orders_charged_without_completing") == 0,
        },
    }


def _markdown(results: dict[str, Any], quick: bool) -> str:
    flag = " --quick" if quick else ""
    info, goals, checks = results["machine"], results["goals"], results.get("checks", {})
    service = results["service"]
    faults = Counter(service["faults"])
    count = results["orders"]

    def verdict(met: bool | None) -> str:
        return "n/a" if met is None else ("met" if met else "missed")

    intro = (
        f"{count:,} order sagas (reserve stock, charge, ship, confirm; compensated in reverse) "
        "on two `hybridmesh worker` processes sharing a fresh PostgreSQL database (registry "
        "stored in it, definition loaded from YAML with `--definitions`, "
        f"`--lease {results['lease_seconds']:g}`, `--max-executions "
        f"{results['max_executions_per_worker']}`, events through the SQL log). This process "
        "records the executions detached and serves the four services, each idempotent by "
        f"`Idempotency-Key`. {results['fault_rate']:.0%} of all calls meet a fault: a quarter "
        "answer 503 before acting, a quarter act and then answer 503, half are delayed "
        f"{results['slow_seconds'][0]:g} to {results['slow_seconds'][1]:g} s against a step "
        f"timeout of {results['step_timeout_ms'] / 1000:g} s (slow successes, or attempts that "
        "time out and are retried). Steps retry with "
        f"`{yaml.safe_dump(results['retry_policy'], default_flow_style=True).strip()}`. "
        f"The payment service declines {results['declined_by_design']} of the customers by "
        "design (402), so their orders must end compensated. When a third of the sagas have "
        "ended, one worker is killed with SIGKILL. "
        f"Command: `make bench` (`python -m benchmarks reliability{flag}`). "
        f"Machine: {info['cpus']} CPUs, Python {info['python']}, {info['date']}."
    )
    ended = goals["ended_completed_or_compensated"]
    stock = goals["stock_invariant"]
    rate = goals["completed_rate"]
    charge = goals["no_double_charge"]
    lines = [
        "## Reliability (`benchmarks/reliability.py`)",
        "",
        intro,
        "",
        "| check | measured | goal | verdict |",
        "|---|---|---|---|",
        f"| ended completed or compensated | {ended['value']:,} of {ended['of']:,} "
        f"({checks.get('completed', 0):,} completed, {checks.get('compensated', 0):,} "
        f"compensated, {checks.get('not_ended_cleanly', 0)} in another status or none); "
        f"{ended['half_done']} half done "
        f"| 100 %, none half done | {verdict(ended['met'])} |",
        f"| reserved stock = units of completed orders | {stock['reserved']:,} = "
        f"{stock['completed_items']:,}; {checks.get('reservations_of_other_orders', 0)} "
        f"reservations of other orders | equal | {verdict(stock['met'])} |",
        f"| completed | {rate['value']:.2%} | ≥ {COMPLETED_GOAL:.1%} | {verdict(rate['met'])} |",
        f"| orders charged twice; charged without completing | {charge['charged_twice']}; "
        f"{charge['charged_without_completing']} | 0; 0 | {verdict(charge['met'])} |",
        "",
        "| run | figure |",
        "|---|---|",
        f"| wall time until all sagas ended | {_seconds(results.get('seconds'))} "
        f"(recording them took {_seconds(results.get('record_seconds'))}) |",
        f"| calls to the services | {service['calls']:,}; {service['replayed_keys']:,} "
        "answered from the idempotency record (a key seen before) |",
        f"| faults injected | {sum(faults.values()):,}: {faults['error_before_effect']} 503 "
        f"before acting, {faults['error_after_effect']} 503 after acting, {faults['slow']} "
        f"slow successes, {faults['timed_out']} timed out |",
        f"| attempts retried (history) | {results.get('retried_attempts', 'n/a')} |",
        f"| worker killed (SIGKILL) | after {results.get('killed_after_seconds', 0):.1f} s, "
        f"{results.get('ended_when_killed', 0):,} sagas ended; it held "
        f"{results.get('held_by_killed_worker', 0)} |",
        f"| takeover: first / every saga it held claimed by the survivor | "
        f"{_seconds(results.get('first_takeover_seconds'))} / "
        f"{_seconds(results.get('takeover_seconds'))} after the kill (lease "
        f"{results['lease_seconds']:g} s) |",
        f"| every saga it held ended | {_seconds(results.get('held_ended_seconds'))} after "
        "the kill |",
        f"| interrupted steps run again (step.recovered) | "
        f"{results.get('recovered_steps', 'n/a')} |",
        f"| survivor stopped with SIGTERM | exit code {results.get('survivor_exit_code')} |",
        f"| worker logs: warnings and errors | {_log_cell(results.get('worker_logs', {}))} |",
    ]
    return "\n".join(lines)


def _log_cell(logs: dict[str, Any]) -> str:
    parts = []
    for name, summary in logs.items():
        levels = summary["levels"]
        count = sum(levels.get(level, 0) for level in ("WARNING", "ERROR", "CRITICAL"))
        seen = "; ".join(summary["notable"]).replace("|", "\\|")
        parts.append(f"{name}: {count}" + (f" ({seen})" if seen else ""))
    return ", ".join(parts) or "n/a"


def _seconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f} s"
