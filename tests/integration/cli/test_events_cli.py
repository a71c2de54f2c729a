"""``hybridmesh events`` and ``hybridmesh dlq`` against the SQL log on a SQLite file."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from tests.waiting import HANG

from hybridmesh.cli.main import main
from hybridmesh.events import CloudEvent, EventBus
from hybridmesh.events.backends.sql import SqlEventBackend


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as done:
        main(list(args))
    out, err = capsys.readouterr()
    return int(done.value.code or 0), out, err


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path / 'mesh.db'}"
    monkeypatch.setenv("HYBRIDMESH_DATABASE_URL", url)
    monkeypatch.delenv("HYBRIDMESH_EVENTS_URL", raising=False)
    return url


def test_publish_then_tail_from_the_earliest(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(
        capsys,
        "events", "publish", "user.registered", "--source", "/user-service",
        "--data", '{"user_id": "U-1"}', "--key", "U-1", "--json",
    )  # fmt: skip
    assert code == 0
    published = json.loads(out)
    assert published["partitionkey"] == "U-1" and published["traceparent"].startswith("00-")
    code, out, _ = run_cli(
        capsys, "events", "tail", "user.*", "--from", "earliest", "--count", "1", "--json"
    )
    assert code == 0
    line = json.loads(out.splitlines()[0])
    assert line["id"] == published["id"] and line["data"] == {"user_id": "U-1"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["user.*", "--source", "x"], "wildcards"),
        (["a.b", "--source", "x", "--data", "{bad"], "--data is not valid JSON"),
        (
            ["a.b", "--source", "x", "--data", '{"n": 18446744073709551616}'],
            "error [--data]: n: must be a whole number within 64 bits "
            "(-9223372036854775808 to 18446744073709551615)",
        ),
        (["a.b"], "Missing option"),
    ],
)
def test_bad_publish_input_exits_2(
    db: str, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    code, _, err = run_cli(capsys, "events", "publish", *args)
    assert code == 2
    assert message in err


async def _dead_letter(url: str) -> CloudEvent:
    bus = EventBus(await SqlEventBackend.open(url))

    async def refuse(event: CloudEvent) -> None:
        raise ValueError("no template for order.shipped")

    bus.subscribe("order.*", refuse, group="mailer", max_deliveries=1)
    poison = await bus.publish(CloudEvent.create("order.shipped", "/orders", {"order": 1}))
    await bus.drain()
    await bus.close()
    return poison


def test_dlq_list_show_replay_purge(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    import asyncio

    poison = asyncio.run(_dead_letter(db))
    code, out, _ = run_cli(capsys, "dlq", "list", "--json")
    assert code == 0
    [letter] = json.loads(out)
    assert letter["group"] == "mailer" and letter["event"]["id"] == poison.id
    assert "no template" in letter["reason"] and letter["attempts"] == 1

    code, out, _ = run_cli(capsys, "dlq", "show", letter["id"], "--json")
    assert code == 0 and json.loads(out)["id"] == letter["id"]

    code, out, _ = run_cli(capsys, "dlq", "replay", letter["id"])
    assert code == 0 and "replayed" in out
    code, out, _ = run_cli(capsys, "dlq", "list", "--json")
    assert json.loads(out)[0]["replayed_at"] is not None

    code, _, err = run_cli(capsys, "dlq", "show", "nope")
    assert code == 1 and "nope" in err

    code, out, _ = run_cli(capsys, "dlq", "replay", letter["id"], "--json")
    assert code == 0 and json.loads(out)["id"] == letter["id"]

    code, out, _ = run_cli(capsys, "dlq", "purge", "--group", "mailer", "--yes", "--json")
    assert code == 0 and json.loads(out) == {"purged": 1, "group": "mailer"}
    code, out, _ = run_cli(capsys, "dlq", "list", "--json")
    assert json.loads(out) == []


async def _publish(url: str, events: list[CloudEvent]) -> None:
    backend = await SqlEventBackend.open(url)
    try:
        await backend.publish(events)
    finally:
        await backend.close()


def _numbered(count: int, type_: str = "user.registered") -> list[CloudEvent]:
    return [CloudEvent.create(type_, "/tests", {"n": n}) for n in range(count)]


@pytest.mark.parametrize("count", [1, 3])
def test_tail_count_prints_exactly_that_many(
    db: str, capsys: pytest.CaptureFixture[str], count: int
) -> None:
    import asyncio

    sent = _numbered(150)
    asyncio.run(_publish(db, sent))  # far more than one batch is ready at once
    code, out, _ = run_cli(
        capsys, "events", "tail", ">", "--from", "earliest", "--count", str(count), "--json"
    )
    assert code == 0
    assert [json.loads(line)["id"] for line in out.splitlines()] == [e.id for e in sent[:count]]


def test_tail_with_a_group_consumes_only_what_it_printed(
    db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    import asyncio

    sent = _numbered(150)
    asyncio.run(_publish(db, sent))
    printed: list[str] = []
    for count in (2, 2, 146):
        code, out, _ = run_cli(
            capsys, "events", "tail", ">", "--group", "watchers", "--from", "earliest",
            "--count", str(count), "--json",
        )  # fmt: skip
        assert code == 0
        lines = [json.loads(line)["id"] for line in out.splitlines()]
        assert len(lines) == count
        printed += lines
    # Each tail of the group went on right after what the ones before it printed: every
    # event once (in order within a partition key, not across keys).
    assert sorted(printed) == sorted(e.id for e in sent)


def test_tail_count_must_be_positive(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "events", "tail", ">", "--count", "0")
    assert code == 2 and "--count" in err


def _groups(url: str) -> int:
    import asyncio

    async def count() -> int:
        from hybridmesh.store import open_store

        store = await open_store(url)
        try:
            await store.upgrade()
            return int(await store.fetch_value("SELECT COUNT(*) FROM event_groups"))
        finally:
            await store.close()

    return asyncio.run(count())


def _line(stream: Any, seconds: float = HANG) -> str:
    """The next line of a child's output, failing after ``seconds`` instead of hanging."""
    ready, _, _ = select.select([stream], [], [], seconds)
    assert ready, f"no output within {seconds} s"
    return str(stream.readline())


TAIL = [sys.executable, "-m", "hybridmesh", "events", "tail"]


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_tail_stopped_by_a_signal_ends_cleanly_and_leaves_no_group(
    db: str, stop: signal.Signals
) -> None:
    import asyncio

    [sent] = _numbered(1)
    asyncio.run(_publish(db, [sent]))
    tail = subprocess.Popen(
        [*TAIL, "user.*", "--from", "earliest", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "HYBRIDMESH_LOG_LEVEL": "WARNING"},
    )
    try:
        assert json.loads(_line(tail.stdout))["id"] == sent.id
        assert _groups(db) == 0  # it reads with no consumer group at all
        tail.send_signal(stop)
        assert tail.wait(HANG) == 0
        assert "Traceback" not in tail.stderr.read()
    finally:
        if tail.poll() is None:
            tail.kill()
            tail.wait()
    assert _groups(db) == 0


async def _publish_after_a_malformed_row(url: str, event: CloudEvent) -> None:
    backend = await SqlEventBackend.open(url)
    try:
        await backend.store.execute(
            "INSERT INTO event_log (event_id, source, type, partition, body, published_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            "bad-1", "/tests", "user.registered", 0, '{"specversion": "1.0"', 0.0,
        )  # fmt: skip
        await backend.publish([event])
    finally:
        await backend.close()


@pytest.mark.parametrize("group", [None, "watchers"])
def test_tail_reports_an_event_that_does_not_parse_and_goes_on(
    db: str, capsys: pytest.CaptureFixture[str], group: str | None
) -> None:
    import asyncio

    [sent] = _numbered(1)
    asyncio.run(_publish_after_a_malformed_row(db, sent))
    grouped = ["--group", group] if group else []
    code, out, err = run_cli(
        capsys, "events", "tail", "user.*", "--from", "earliest", "--count", "1", "--json",
        *grouped,
    )  # fmt: skip
    assert code == 0
    assert [json.loads(line)["id"] for line in out.splitlines()] == [sent.id]
    assert "not a CloudEvent" in err
    if group:  # a group keeps it, as the bus would
        assert "dead letters of watchers" in err
        code, out, _ = run_cli(capsys, "dlq", "list", "--json")
        assert [letter["group"] for letter in json.loads(out)] == ["watchers"]
