"""``hybridmesh events`` and ``hybridmesh dlq`` against the SQL log on a SQLite file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

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

    code, out, _ = run_cli(capsys, "dlq", "purge", "--group", "mailer", "--yes")
    assert code == 0 and "purged 1" in out
    code, out, _ = run_cli(capsys, "dlq", "list", "--json")
    assert json.loads(out) == []
