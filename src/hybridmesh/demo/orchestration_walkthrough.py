"""The demo's sagas and workflows part.

order-processing (a microservice with its own store) runs the order saga on the engine it
embeds: validate the user, reserve stock, charge the payment, create the shipment, send the
confirmation. One order completes; the next is declined by payment-service, and the saga
releases the stock it had reserved. order-processing announces each ending on the bus
(``order.confirmed``, ``order.cancelled``) and notification-services tells the customer:
the demo shows the customer's notifications. Then the onboarding workflow runs as the
integration guide gives it. Its legacy ERP step is a batch operation, so it is queued and
then exported to a CSV file in the exchange folder.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from rich.console import Console
from rich.table import Table

from hybridmesh.orchestration import Execution
from hybridmesh.runtime import Runtime

#: Orders above this total are declined by payment-service during the demo.
DEMO_DECLINE_ABOVE = 500
#: The notification each order event becomes, in notification-services' templates.
ORDER_NOTIFICATIONS = {"order.confirmed": "order-confirmed", "order.cancelled": "order-cancelled"}
#: How long the demo waits for the customer's notifications of the order events.
NOTIFICATION_WAIT = 15.0

_ADDRESS = {"street": "1 Analytical Way", "city": "London", "postal_code": "N1", "country": "GB"}


@dataclass
class OrchestrationReport:
    """What the sagas and workflows part showed, for the verdict."""

    completed_order: str | None = None
    compensated_order: str | None = None
    stock_restored: bool = False
    #: The order events whose notification reached the customer.
    customer_told: list[str] = field(default_factory=list)
    onboarding: str | None = None
    batch_file: Path | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (
            self.completed_order is not None
            and self.compensated_order is not None
            and self.stock_restored
            and sorted(self.customer_told) == sorted(ORDER_NOTIFICATIONS)
            and self.onboarding == "completed"
            and self.batch_file is not None
        )


async def show_orchestration(
    runtime: Runtime, urls: dict[str, str], console: Console
) -> OrchestrationReport:
    """Run the part against running services (order-processing on ``runtime``'s engine)."""
    report = OrchestrationReport()
    console.rule("[bold]6. Sagas and workflows: the order saga, compensation, legacy batch")
    plans = await runtime.catalog.list()
    console.print(
        "Definitions in the catalog: "
        + ", ".join(f"{p.kind.value} {p.name} v{p.version}" for p in plans),
        highlight=False,
    )
    async with aiohttp.ClientSession() as http:

        async def call(method: str, url: str, body: Any = None) -> Any:
            async with http.request(method, url, json=body) as resp:
                if resp.status >= 300:
                    raise RuntimeError(f"{method} {url}: {resp.status} {await resp.text()}")
                return await resp.json()

        users, orders = urls["user-service"], urls["order-processing"]
        customer = await call(
            "POST",
            f"{users}/users",
            {"email": "katherine@example.com", "name": "Katherine Johnson"},
        )
        await call(
            "POST",
            f"{urls['payment-service']}/_admin/declines",
            {"max_amount": DEMO_DECLINE_ABOVE},
        )
        before = await _stock(call, urls["inventory-management"])
        placed = await call("POST", f"{orders}/orders", _order(customer["id"], 129.5))
        done = await runtime.engine.wait(placed["order_id"], timeout=30)
        _print_saga(console, "Order with payment accepted", done)
        if done.status.value == "completed":
            report.completed_order = done.id
        else:
            report.notes.append(f"order {done.id} ended {done.status.value}: {done.error}")

        after_first = await _stock(call, urls["inventory-management"])
        declined = await call("POST", f"{orders}/orders", _order(customer["id"], 900.0))
        undone = await runtime.engine.wait(declined["order_id"], timeout=30)
        _print_saga(console, f"Order above {DEMO_DECLINE_ABOVE}: payment declined", undone)
        after_second = await _stock(call, urls["inventory-management"])
        if undone.status.value == "compensated":
            report.compensated_order = undone.id
        report.stock_restored = after_second == after_first
        order = await call("GET", f"{orders}/orders/{undone.id}")
        console.print(
            f"  order {undone.id} is [yellow]{order['status']}[/yellow]; reserved stock "
            f"{_reserved(before)} -> {_reserved(after_first)} after the first order, "
            f"{_reserved(after_second)} after the declined one (released again)",
            highlight=False,
        )
        report.customer_told = await _show_notifications(
            call, urls["notification-services"], customer["id"], console
        )
        missing = sorted(set(ORDER_NOTIFICATIONS) - set(report.customer_told))
        if missing:
            report.notes.append(f"the customer was not notified of {', '.join(missing)}")

        onboarding = await runtime.engine.start_workflow(
            "user-onboarding", {"email": "mary@example.com", "name": "Mary Jackson"}
        )
        flow = await runtime.engine.wait(onboarding, timeout=30)
        _print_saga(console, "Workflow user-onboarding (as the guide gives it)", flow)
        report.onboarding = flow.status.value
        runs = await runtime.batch.flush(target="legacy-erp")
        for run in runs:
            path = Path(run.location)
            report.batch_file = path
            lines = (await asyncio.to_thread(path.read_text, encoding="utf-8")).splitlines()
            console.print(
                f"  legacy-erp batch: {run.records} record(s) of {run.operation} exported to "
                f"{path.name} ({run.format}); its first lines:",
                highlight=False,
            )
            for line in lines[:2]:
                console.print(f"    {line[:150]}", highlight=False, markup=False)
    if report.batch_file is None:
        report.notes.append("no legacy-erp batch file was written")
    return report


async def _show_notifications(
    call: Any, notifications_url: str, customer_id: str, console: Console
) -> list[str]:
    """Wait for the notifications of both order events, print all of the customer's, and
    return the order events the customer was told of."""
    url = f"{notifications_url}/notifications?user_id={customer_id}"

    def told(found: list[dict[str, Any]]) -> list[str]:
        return [
            n["event_type"]
            for n in found
            if ORDER_NOTIFICATIONS.get(n["event_type"]) == n["template"]
        ]

    found: list[dict[str, Any]] = await call("GET", url)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + NOTIFICATION_WAIT
    while len(told(found)) < len(ORDER_NOTIFICATIONS) and loop.time() < deadline:
        await asyncio.sleep(0.05)
        found = await call("GET", url)
    missing = sorted(set(ORDER_NOTIFICATIONS) - set(told(found)))
    if missing:
        console.print(
            f"[red]no notification of {', '.join(missing)} reached {customer_id} within "
            f"{NOTIFICATION_WAIT:.0f} s[/red]",
            highlight=False,
        )
    else:
        console.print(
            "order-processing announced both endings on the bus (order.confirmed, "
            "order.cancelled; written to its outbox in the transaction that recorded them), "
            f"and notification-services told the customer. {customer_id}'s notifications:",
            highlight=False,
        )
    table = Table("template", "channel", "because of", "from", box=None)
    for note in found:
        table.add_row(note["template"], note["channel"], note["event_type"], note["event_source"])
    console.print(table)
    console.print(
        "  (the order-confirmation e-mail is the saga's send-confirmation step; the pushes "
        "come from the order events)",
        highlight=False,
    )
    return told(found)


def _order(customer_id: str, total: float) -> dict[str, Any]:
    return {
        "customer_id": customer_id,
        "items": [{"sku": "SKU-1", "quantity": 2}, {"sku": "SKU-4", "quantity": 1}],
        "total": total,
        "shipping_address": _ADDRESS,
    }


async def _stock(call: Any, inventory_url: str) -> dict[str, int]:
    items = await call("GET", f"{inventory_url}/inventory")
    return {item["sku"]: int(item["reserved"]) for item in items}


def _reserved(stock: dict[str, int]) -> int:
    return sum(stock.values())


def _print_saga(console: Console, title: str, execution: Execution) -> None:
    colour = {"completed": "green", "compensated": "yellow"}.get(execution.status.value, "red")
    console.print(
        f"{title}: {execution.kind} {execution.name} v{execution.version} {execution.id} "
        f"-> [{colour}]{execution.status.value}[/{colour}]",
        highlight=False,
    )
    table = Table("step", "status", "attempts", "compensation", "error", box=None)
    for step in execution.steps:
        table.add_row(
            step.step_id,
            step.status,
            str(step.attempt),
            "" if step.compensation in (None, "none") else step.compensation,
            (step.error or "")[:70],
        )
    console.print(table)


__all__ = ["OrchestrationReport", "show_orchestration"]
