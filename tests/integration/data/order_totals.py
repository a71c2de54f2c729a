"""A read model for the projection tests: per customer, the orders placed and their total.

``orders.placed`` adds an order, ``orders.cancelled`` takes it away again. An order whose
id is in :data:`FAILING` makes ``apply`` fail after it has written to the table, so a test
can check that nothing of that event is kept.
"""

from __future__ import annotations

from hybridmesh.data.projections import Projection
from hybridmesh.events import CloudEvent
from hybridmesh.store import Store, Transaction

PATTERN = "orders.*"
#: Order ids whose events fail to apply (after writing), until removed.
FAILING: set[str] = set()


async def create_table(tx: Transaction) -> None:
    await tx.execute(
        "CREATE TABLE IF NOT EXISTS order_totals ("
        "customer TEXT PRIMARY KEY, orders INTEGER NOT NULL, total BIGINT NOT NULL)"
    )


async def add_order(tx: Transaction, event: CloudEvent) -> None:
    data = event.data
    sign = -1 if event.type == "orders.cancelled" else 1
    await tx.execute(
        "INSERT INTO order_totals (customer, orders, total) VALUES (?, ?, ?) "
        "ON CONFLICT (customer) DO UPDATE SET orders = order_totals.orders + excluded.orders, "
        "total = order_totals.total + excluded.total",
        data["customer"],
        sign,
        sign * data["amount"],
    )
    if data["order"] in FAILING:
        raise RuntimeError(f"order {data['order']} cannot be applied")


async def empty_table(tx: Transaction) -> None:
    await tx.execute("DELETE FROM order_totals")


order_totals = Projection(
    "order-totals", PATTERN, setup=create_table, apply=add_order, reset=empty_table
)


def placed(order: str, customer: str, amount: int) -> CloudEvent:
    return CloudEvent.create(
        "orders.placed",
        "/shop",
        {"order": order, "customer": customer, "amount": amount},
        partition_key=customer,
    )


def cancelled(order: str, customer: str, amount: int) -> CloudEvent:
    return CloudEvent.create(
        "orders.cancelled",
        "/shop",
        {"order": order, "customer": customer, "amount": amount},
        partition_key=customer,
    )


async def totals(store: Store) -> dict[str, tuple[int, int]]:
    """The table: customer -> (orders, total)."""
    rows = await store.fetch_all("SELECT customer, orders, total FROM order_totals")
    return {row["customer"]: (int(row["orders"]), int(row["total"])) for row in rows}
