"""``hybridmesh batch`` against a SQLite file: list, flush, collect, runs and requeue."""

from __future__ import annotations

import asyncio
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from hybridmesh.batch import BatchIntegration
from hybridmesh.cli.batch import batch
from hybridmesh.cli.main import cli, main
from hybridmesh.store import open_store


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as done:
        main(list(args))
    out, err = capsys.readouterr()
    return int(done.value.code or 0), out, err


@pytest.fixture(autouse=True)
def registered() -> None:
    # The group is registered in cli/main.py; until then, these tests add it themselves.
    if "batch" not in cli.commands:
        cli.add_command(batch)


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path / 'mesh.db'}"
    monkeypatch.setenv("HYBRIDMESH_DATABASE_URL", url)
    monkeypatch.delenv("HYBRIDMESH_EXCHANGE_DIR", raising=False)
    return url


def seed(url: str, exchange: Path, *payloads: dict[str, object]) -> list[str]:
    async def enqueue() -> list[str]:
        async with await open_store(url) as store:
            await store.upgrade()
            async with BatchIntegration(store, exchange_dir=exchange) as integration:
                return [
                    (await integration.enqueue("erp", "orders", payload)).id for payload in payloads
                ]

    return asyncio.run(enqueue())


def test_flush_collect_and_requeue(
    db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    exchange = tmp_path / "exchange"
    ok, bad = seed(db, exchange, {"order": "O-1"}, {"order": "O-2"})

    code, out, _ = run_cli(capsys, "batch", "list", "--status", "queued", "--json")
    assert code == 0 and [r["id"] for r in json.loads(out)] == [bad, ok]

    code, out, _ = run_cli(capsys, "batch", "flush", "--exchange-dir", str(exchange))
    assert code == 0
    (written,) = (exchange / "erp" / "outbox").iterdir()
    assert f"2 record(s) of erp/orders -> {written}" in out

    code, out, _ = run_cli(capsys, "batch", "runs", "--json")
    (run,) = json.loads(out)
    assert (run["records"], run["status"], run["location"]) == (2, "sent", str(written))

    inbox = exchange / "erp" / "inbox"
    inbox.mkdir(parents=True)
    (inbox / "acks.csv").write_text(f"record_id,status,error\n{ok},ok,\n{bad},failed,no stock\n")
    code, out, _ = run_cli(capsys, "batch", "collect", "--exchange-dir", str(exchange))
    assert code == 0 and "1 acknowledged, 1 failed (sent for review)" in out

    code, out, _ = run_cli(capsys, "batch", "list", "--status", "failed", "--json")
    (failed,) = json.loads(out)
    assert failed["id"] == bad and failed["error"] == "no stock"
    code, out, _ = run_cli(capsys, "batch", "list")
    assert code == 0 and "status" in out

    code, out, _ = run_cli(capsys, "batch", "requeue", bad)
    assert code == 0 and f"queued {bad} again" in out
    code, out, _ = run_cli(capsys, "batch", "list", "--status", "queued", "--json")
    assert [r["id"] for r in json.loads(out)] == [bad]


def test_the_exchange_dir_and_format_can_be_chosen(
    db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    exchange = tmp_path / "from-env"
    monkeypatch.setenv("HYBRIDMESH_EXCHANGE_DIR", str(exchange))
    (record,) = seed(db, exchange, {"note": "<&>"})
    code, out, _ = run_cli(capsys, "batch", "flush", "--target", "erp", "--format", "xml", "--json")
    assert code == 0
    (run,) = json.loads(out)
    assert run["format"] == "xml" and Path(run["location"]).parent == exchange / "erp" / "outbox"
    element = ET.parse(run["location"]).getroot().find("record")
    assert element is not None and element.attrib["id"] == record

    code, out, _ = run_cli(capsys, "batch", "flush")
    assert code == 0 and "nothing queued" in out


def test_a_malformed_result_file_is_reported_and_exits_1(
    db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    exchange = tmp_path / "exchange"
    seed(db, exchange, {"order": "O-1"})
    run_cli(capsys, "batch", "flush", "--exchange-dir", str(exchange))
    inbox = exchange / "erp" / "inbox"
    inbox.mkdir(parents=True)
    (inbox / "acks.xml").write_text("<results>\n<result status='ok'/>\n</results>")
    code, _, err = run_cli(capsys, "batch", "collect", "--exchange-dir", str(exchange))
    assert code == 1 and "1 result file(s) rejected" in err
    assert f"rejected {inbox / 'acks.xml'}: {inbox / 'acks.xml'}:2: error" in err
    assert "record_id is empty" in err
    assert (inbox / "rejected" / "acks.xml").exists()


def test_bad_input_exits_2(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "batch", "flush", "--format", "xml")
    assert code == 2 and "--format and --endpoint need --target" in err
    code, _, err = run_cli(capsys, "batch", "list", "--status", "lost")
    assert code == 2
    code, _, err = run_cli(capsys, "batch", "requeue", "no-such-record")
    assert code == 1 and "no batch record" in err


def test_an_undelivered_bulk_run_exits_1(
    db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    exchange = tmp_path / "exchange"
    seed(db, exchange, {"order": "O-1"})
    code, out, err = run_cli(
        capsys, "batch", "flush", "--target", "erp", "--endpoint", "http://127.0.0.1:9/bulk"
    )
    assert code == 1 and "not delivered" in out
    assert "1 run(s) not delivered; their records stay queued" in err
    code, out, _ = run_cli(capsys, "batch", "list", "--status", "queued", "--json")
    assert len(json.loads(out)) == 1
