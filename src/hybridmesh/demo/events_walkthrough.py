"""The demo's events part: an event end to end, a poison event, its dead letter and replay.

user-service writes ``user.registered`` to its outbox with the user row; its relay publishes
it on the bus; notification-services turns it into a notification pushed to a WebSocket
client; analytics-reporting counts it. Then an ``order.shipped`` event arrives for which
notification-services has no template: it is retried, lands in the dead letters, the
template is added, and the replayed event goes through.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from rich.console import Console

from hybridmesh.client import CommunicationRequest, HybridClient
from hybridmesh.events import CloudEvent, EventBus


@dataclass
class EventsReport:
    """What the events part showed, for the verdict."""

    pushed_live: bool = False
    push_millis: float = 0.0
    registered_counted: int = 0
    dead_letter_id: str | None = None
    dead_letter_reason: str = ""
    dead_letter_attempts: int = 0
    replayed_ok: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (
            self.pushed_live
            and self.registered_counted > 0
            and self.dead_letter_id is not None
            and self.replayed_ok
        )


async def _until(check: Callable[[], Awaitable[Any]], seconds: float = 15.0) -> Any:
    """Poll ``check`` until it returns something truthy; return it (None on timeout)."""
    try:
        async with asyncio.timeout(seconds):
            while True:
                value = await check()
                if value:
                    return value
                await asyncio.sleep(0.05)
    except TimeoutError:
        return None


async def show_events(
    client: HybridClient,
    bus: EventBus,
    urls: dict[str, str],
    console: Console,
) -> EventsReport:
    """Run the events part against running services; print it; return what happened."""
    report = EventsReport()
    console.rule("[bold]5. Events: outbox -> bus -> consumers, dead letter, replay")
    notifications = urls["notification-services"]
    analytics = urls["analytics-reporting"]
    ws_url = notifications.replace("http://", "ws://") + "/ws/notifications?token=demo"
    async with aiohttp.ClientSession() as session, session.ws_connect(ws_url) as ws:
        await ws.send_json({"action": "subscribe", "patterns": ["notification.*"]})
        loop = asyncio.get_running_loop()
        began = loop.time()
        created = await client.communicate(
            "order-processing",
            "user-service",
            CommunicationRequest(
                type="command",
                method="POST",
                endpoint="/users",
                payload={"email": "grace@example.com", "name": "Grace Hopper"},
                pattern="rest",
            ),
        )
        user_id = str(created.data["id"])
        console.print(
            f"Registered {user_id} at user-service: the user row and its user.registered "
            "event were committed together (outbox); the relay published the event."
        )
        pushed = await _receive_push(ws, user_id)
        if pushed is not None:
            report.pushed_live = True
            report.push_millis = (loop.time() - began) * 1000
            console.print(
                f"  [green]WebSocket client[/green] got notification.sent "
                f"({pushed.get('template')}, {pushed.get('channel')}) for {user_id} "
                f"{report.push_millis:.0f} ms after the HTTP call",
                highlight=False,
            )

        async def counted() -> dict[str, Any] | None:
            # analytics-reporting consumes on its own group, beside notification-services.
            async with session.get(f"{analytics}/reports/summary") as resp:
                found: dict[str, Any] = await resp.json()
            return found if found.get("users", {}).get("registered", 0) else None

        summary = await _until(counted, 10.0) or {}
        report.registered_counted = int(summary.get("users", {}).get("registered", 0))
        console.print(
            f"  [green]analytics-reporting[/green] counts {report.registered_counted} "
            f"registered user(s), {summary.get('events', {}).get('total', 0)} event(s) in all",
            highlight=False,
        )

        await _poison_and_replay(session, bus, notifications, user_id, console, report)
    return report


async def _receive_push(ws: aiohttp.ClientWebSocketResponse, user_id: str) -> Any:
    try:
        async with asyncio.timeout(15):
            async for message in ws:
                if message.type != aiohttp.WSMsgType.TEXT:
                    break
                body = message.json()
                if body.get("type") != "event":
                    continue
                data = body["event"].get("data") or {}
                if str(data.get("user_id")) == user_id:
                    return data
    except TimeoutError:
        return None
    return None


async def _poison_and_replay(
    session: aiohttp.ClientSession,
    bus: EventBus,
    notifications: str,
    user_id: str,
    console: Console,
    report: EventsReport,
) -> None:
    shipped = CloudEvent.create(
        "order.shipped",
        "/order-processing",
        {"order_id": "O-1001", "user_id": user_id, "carrier": "DHL"},
        partition_key="O-1001",
    )
    await bus.publish(shipped)
    console.print(
        "Published order.shipped; notification-services has no template for it yet, so its "
        "handler fails and the bus retries with backoff..."
    )

    async def buried() -> Any:
        letters = await bus.dead_letters(group="notification-services")
        return next((x for x in letters if x.event_id == shipped.id), None)

    letter = await _until(buried)
    if letter is None:
        report.notes.append("the poison event did not reach the dead letters")
        return
    report.dead_letter_id = letter.id
    report.dead_letter_reason = letter.reason
    report.dead_letter_attempts = letter.attempts
    console.print(
        f"  [yellow]dead letter[/yellow] {letter.id} (group {letter.group}, "
        f"{letter.attempts} attempts): {letter.reason}",
        highlight=False,
    )
    async with session.post(
        f"{notifications}/_admin/templates",
        json={"event_type": "order.shipped", "template": "order-shipped", "channel": "push"},
    ) as resp:
        resp.raise_for_status()
    console.print("Fixed the cause: added the order-shipped template. Replaying the dead letter...")
    await bus.replay(letter.id)

    async def delivered() -> Any:
        async with session.get(
            f"{notifications}/notifications", params={"user_id": user_id}
        ) as resp:
            rows = await resp.json()
        items = rows.get("notifications", rows) if isinstance(rows, dict) else rows
        return any(str(n.get("template")) == "order-shipped" for n in items)

    report.replayed_ok = bool(await _until(delivered))
    if report.replayed_ok:
        console.print(
            f"  [green]replayed[/green]: the order-shipped notification for {user_id} was sent",
            highlight=False,
        )
    console.print("Inspect them yourself: `hybridmesh dlq list`, `hybridmesh events tail '>'`.")


__all__ = ["EventsReport", "show_events"]
