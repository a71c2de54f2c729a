"""The review queue over HTTP: listed a page at a time and shown as `review list|show
--json` prints them, retried through the item's origin, resolved and discarded with a note
under the token's name; and the errors of each operation."""

from __future__ import annotations

import json
from typing import Any

import pytest
from tests.cli_in_process import run_cli_parts
from tests.integration.control.conftest import OpenPlane, Plane
from tests.integration.control.test_dead_letters_api import Consumer

from hybridmesh.control.routes.review import ReviewItemOut, ReviewPage
from hybridmesh.core.clock import FakeClock
from hybridmesh.events import CloudEvent
from hybridmesh.review import review_dead_letter


async def cli_json(capsys: pytest.CaptureFixture[str], database_url: str, *args: str) -> Any:
    code, out, err = await run_cli_parts(capsys, database_url, "review", *args, "--json")
    assert code == 0, err
    return json.loads(out)


async def walk(plane: Plane, query: str) -> list[str]:
    """Every id the listing gives for ``query``, page by page."""
    seen: list[str] = []
    cursor: str | None = None
    while True:
        path = f"/api/v1/review-items?{query}" + (f"&cursor={cursor}" if cursor else "")
        status, page = await plane.call("GET", path, role="read")
        assert status == 200, page
        ReviewPage.model_validate(page)
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            return seen


async def test_pages_and_items_are_as_the_cli_prints_them(
    open_plane: OpenPlane, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    clock = FakeClock()
    async with open_plane(clock=clock) as plane:
        queue = plane.runtime.review
        filed = []
        for n in range(7):
            origin = "saga" if n % 2 else "batch"
            filed.append(await queue.add(origin, f"failed {n}", {"n": n}, origin_ref=f"ref-{n}"))
            if n % 3 == 0:  # the others are filed at the same time: the id breaks the tie
                clock.advance(2)
        await queue.resolve(filed[0].id, note="by hand")
        # Newest first; items filed at the same time in the order of their ids.
        newest_first = [
            item.id for item in sorted(filed, key=lambda i: (i.created_at, i.id), reverse=True)
        ]
        sagas = {item.id for item in filed if item.origin == "saga"}

        assert await walk(plane, "limit=2&status=all") == newest_first
        assert await walk(plane, "limit=3") == newest_first[:-1]  # open ones by default
        assert await walk(plane, "origin=saga&limit=1") == [i for i in newest_first if i in sagas]
        assert await walk(plane, "status=resolved") == [filed[0].id]

        status, page = await plane.call("GET", "/api/v1/review-items?status=all", role="read")
        assert status == 200 and page["next_cursor"] is None
        assert page["items"] == await cli_json(capsys, database_url, "list", "--status", "all")

        status, shown = await plane.call("GET", f"/api/v1/review-items/{filed[0].id}", role="read")
        assert status == 200
        ReviewItemOut.model_validate(shown)
        assert [a["action"] for a in shown["actions"]] == ["created", "resolved"]
        assert shown == await cli_json(capsys, database_url, "show", filed[0].id)


async def test_resolve_and_discard_record_the_note_under_the_tokens_name(
    plane: Plane, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    queue = plane.runtime.review
    first = await queue.add("saga", "compensation failed", {"order": 1}, origin_ref="x-1")
    second = await queue.add("batch", "rejected by the ledger", {"row": 2}, origin_ref="r-2")

    status, resolved = await plane.call(
        "POST",
        f"/api/v1/review-items/{first.id}/resolve",
        role="operate",
        json={"note": "refunded by hand"},
    )
    assert status == 200, resolved
    assert resolved["status"] == "resolved"
    assert resolved["actions"][-1] | {"at": None} == {
        "action": "resolved",
        "actor": "operate",
        "note": "refunded by hand",
        "at": None,
    }
    assert await cli_json(capsys, database_url, "show", first.id) == resolved

    status, discarded = await plane.call(
        "POST", f"/api/v1/review-items/{second.id}/discard", role="operate"
    )
    assert status == 200
    assert (await queue.get(second.id)).status == "discarded" == discarded["status"]

    for action in ("resolve", "discard", "retry"):  # neither is open any more
        status, problem = await plane.call(
            "POST", f"/api/v1/review-items/{first.id}/{action}", role="operate"
        )
        assert (status, problem["status"]) == (409, 409), action
        assert "only open items" in problem["detail"]
    assert [a.action for a in (await queue.get(first.id)).actions] == ["created", "resolved"]


async def test_a_retried_dead_letter_item_is_replayed_and_handled(
    open_plane: OpenPlane, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HYBRIDMESH_EVENTS_URL", raising=False)
    async with open_plane(events=True) as plane:
        bus = plane.runtime.bus
        assert bus is not None
        mailer = Consumer()
        bus.subscribe("order.*", mailer, group="mailer", max_deliveries=1)
        poison = await bus.publish(CloudEvent.create("order.shipped", "/orders", {"order": 1}))
        await bus.drain()
        [letter] = await bus.dead_letters()
        item = await review_dead_letter(plane.runtime.review, letter)

        mailer.broken = False
        status, retried = await plane.call(
            "POST", f"/api/v1/review-items/{item.id}/retry", role="operate", json={"note": "fixed"}
        )
        assert status == 200, retried
        assert retried["status"] == "retried"
        assert [a["action"] for a in retried["actions"]] == ["created", "retried"]
        await bus.drain()
        assert mailer.handled == [poison.id]

        # The work of a retry can fail: the item stays open, the failure on its timeline.
        again = await plane.runtime.review.add("dlq", "lost", {}, origin_ref="no-such-letter")
        status, problem = await plane.call(
            "POST", f"/api/v1/review-items/{again.id}/retry", role="operate"
        )
        assert status == 409
        assert "stays open" in problem["detail"] and "no-such-letter" in problem["detail"]
        after = await plane.runtime.review.get(again.id)
        assert (after.status, after.actions[-1].action) == ("open", "retry_failed")


async def test_an_origin_without_a_retry_here_is_a_conflict(plane: Plane) -> None:
    item = await plane.runtime.review.add("replication", "both sides wrote", {"key": "k"})
    status, problem = await plane.call(
        "POST", f"/api/v1/review-items/{item.id}/retry", role="operate"
    )
    assert (status, problem["status"]) == (409, 409)
    assert "no retry handler" in problem["detail"]
    assert (await plane.runtime.review.get(item.id)).status == "open"


async def test_errors_of_each_operation(plane: Plane) -> None:
    item = await plane.runtime.review.add("saga", "stuck", {}, origin_ref="x")
    actions = [f"/api/v1/review-items/{item.id}/{verb}" for verb in ("retry", "resolve", "discard")]
    for method, path in [
        ("GET", "/api/v1/review-items"),
        ("GET", f"/api/v1/review-items/{item.id}"),
        *(("POST", path) for path in actions),
    ]:
        status, _ = await plane.call(method, path, role=None)
        assert status == 401, path
    for path in actions:
        status, problem = await plane.call("POST", path, role="read")
        assert (status, problem["status"]) == (403, 403), path
    for method, path in (
        ("GET", "/api/v1/review-items/nope"),
        *(("POST", f"/api/v1/review-items/nope/{verb}") for verb in ("retry", "resolve")),
    ):
        status, problem = await plane.call(method, path, role="operate")
        assert (status, problem["status"]) == (404, 404), path
    for path, field_name in (
        ("/api/v1/review-items?status=closed", "status"),
        ("/api/v1/review-items?origin=mail", "origin"),
        ("/api/v1/review-items?cursor=zzz", "cursor"),
        ("/api/v1/review-items?limit=0", "limit"),
    ):
        status, problem = await plane.call("GET", path, role="read")
        assert status == 400, path
        assert [e["field"] for e in problem["errors"]] == [field_name], path
    status, problem = await plane.call(
        "POST", f"/api/v1/review-items/{item.id}/resolve", role="operate", json={"notes": "x"}
    )
    assert status == 400 and [e["field"] for e in problem["errors"]] == ["notes"]
    assert (await plane.runtime.review.get(item.id)).status == "open"
