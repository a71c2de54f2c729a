"""``hybridmesh events`` and ``hybridmesh dlq`` with HYBRIDMESH_EVENTS_URL set to Kafka."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path

import pytest
from tests.integration.events.kafka.conftest import kafka_url

from hybridmesh.cli.main import main
from hybridmesh.events import CloudEvent, EventBus
from hybridmesh.events.backends.kafka import KafkaEventBackend

pytestmark = pytest.mark.kafka


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as done:
        main(list(args))
    out, err = capsys.readouterr()
    return int(done.value.code or 0), out, err


@pytest.fixture
def on_kafka(
    kafka_bootstrap: str, kafka_prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> str:
    url = kafka_url(kafka_bootstrap, kafka_prefix)
    monkeypatch.setenv("HYBRIDMESH_DATABASE_URL", f"sqlite:///{tmp_path / 'mesh.db'}")
    monkeypatch.setenv("HYBRIDMESH_EVENTS_URL", url)
    return url


def test_publish_then_tail_then_a_dead_letter_and_its_replay(
    on_kafka: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_cli(
        capsys,
        "events", "publish", "order.shipped", "--source", "/orders",
        "--data", '{"order_id": "O-1"}', "--key", "O-1", "--json",
    )  # fmt: skip
    assert code == 0
    published = json.loads(out)
    code, out, _ = run_cli(
        capsys, "events", "tail", "order.*", "--from", "earliest", "--count", "1", "--json"
    )
    assert code == 0
    assert json.loads(out.splitlines()[0])["id"] == published["id"]

    async def refuse(event: CloudEvent) -> None:
        raise ValueError("no template for order.shipped")

    async def bury() -> None:
        bus = EventBus(KafkaEventBackend(on_kafka), poll_wait=0.05)
        bus.subscribe("order.*", refuse, group="mailer", max_deliveries=1)
        await bus.drain()
        await bus.close()

    asyncio.run(bury())
    code, out, _ = run_cli(capsys, "dlq", "list", "--json")
    assert code == 0
    [letter] = json.loads(out)
    assert letter["group"] == "mailer" and "no template" in letter["reason"]
    code, out, _ = run_cli(capsys, "dlq", "replay", letter["id"])
    assert code == 0
    code, out, _ = run_cli(capsys, "dlq", "show", letter["id"], "--json")
    assert json.loads(out)["replayed_at"] is not None


def test_an_unreachable_broker_exits_1_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("HYBRIDMESH_DATABASE_URL", f"sqlite:///{tmp_path / 'mesh.db'}")
    monkeypatch.setenv("HYBRIDMESH_EVENTS_URL", f"kafka://127.0.0.1:{port}?connect_timeout=3")
    code, _, err = run_cli(capsys, "events", "publish", "a.b", "--source", "/x")
    assert code == 1
    assert f"Kafka at 127.0.0.1:{port} is unreachable" in err


def test_a_malformed_kafka_url_exits_2_naming_the_option(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HYBRIDMESH_DATABASE_URL", f"sqlite:///{tmp_path / 'mesh.db'}")
    monkeypatch.setenv("HYBRIDMESH_EVENTS_URL", "kafka://127.0.0.1:9092?partitions=0")
    code, _, err = run_cli(capsys, "events", "publish", "a.b", "--source", "/x")
    assert code == 2
    assert "partitions must be positive" in err
