"""Export files (CSV, XML) and result files (CSV, XML, bulk answers)."""

from __future__ import annotations

import base64
import csv
import io
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from hybridmesh.batch import RecordStatus, ResultFileError
from hybridmesh.batch.formats import (
    csv_export,
    parse_bulk_answer,
    parse_csv_results,
    parse_xml_results,
    read_results,
    write_atomic,
    xml_export,
)
from hybridmesh.batch.ledger import BatchRecord

WHEN = datetime(2026, 1, 1, 2, 0, tzinfo=UTC)


def record(record_id: str, payload: dict[str, Any], key: str | None = None) -> BatchRecord:
    return BatchRecord(
        id=record_id,
        target="erp",
        operation="orders",
        payload=payload,
        idempotency_key=key,
        status=RecordStatus.SENT,
        run_id="run-1",
        error=None,
        created_at=WHEN,
        updated_at=WHEN,
    )


TRICKY = 'a, "quoted" <tag> & more\nsecond line'


def test_csv_has_record_id_and_key_then_the_sorted_payload_fields() -> None:
    data = csv_export(
        [
            record("r1", {"sku": "A-1", "qty": 2, "note": TRICKY}, key="k1"),
            record("r2", {"sku": "B-2", "extra": None}),
        ]
    )
    assert data.startswith(b"record_id,idempotency_key,extra,note,qty,sku\r\n")
    rows = list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))
    assert rows[1] == ["r1", "k1", "", TRICKY, "2", "A-1"]
    assert rows[2] == ["r2", "", "", "", "", "B-2"]


def test_csv_writes_nested_values_and_non_strings_as_json() -> None:
    payload = {"lines": [{"sku": "A", "qty": 1}], "address": {"city": "Zürich"}, "paid": True}
    data = csv_export([record("r1", payload)], fields=("address", "lines", "paid", "missing"))
    header, row = list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))
    assert header == ["record_id", "idempotency_key", "address", "lines", "paid", "missing"]
    assert row == ["r1", "", '{"city":"Zürich"}', '[{"sku":"A","qty":1}]', "true", ""]


def test_xml_escapes_markup_and_keeps_every_character() -> None:
    control = "bell\x07 and\r\nCRLF"
    data = xml_export(
        [record("r1", {"note": TRICKY, "raw": control, "n": 1.5, "gone": None}, key='k"<&>')],
        target="erp",
        operation="orders",
        run_id="run-1",
        created=WHEN,
    )
    root = ET.fromstring(data)
    assert root.tag == "batch"
    assert root.attrib == {
        "target": "erp",
        "operation": "orders",
        "run": "run-1",
        "created": WHEN.isoformat(),
    }
    (rec,) = root
    assert rec.attrib == {"id": "r1", "key": 'k"<&>'}
    fields = {f.attrib["name"]: f for f in rec}
    assert fields["note"].text == TRICKY
    assert fields["n"].text == "1.5"
    assert fields["gone"].attrib.get("null") == "true" and fields["gone"].text is None
    raw = fields["raw"]
    assert raw.attrib["encoding"] == "base64"
    assert base64.b64decode(raw.text or "").decode("utf-8") == control


def test_xml_nested_values_are_json_and_fields_can_be_fixed() -> None:
    data = xml_export(
        [record("r1", {"lines": [1, 2], "secret": "x"})],
        target="erp",
        operation="orders",
        run_id="run-1",
        created=WHEN,
        fields=("lines",),
    )
    fields = ET.fromstring(data).find("record")
    assert fields is not None
    assert [(f.attrib["name"], f.text) for f in fields] == [("lines", "[1,2]")]


def test_write_atomic_leaves_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "erp" / "outbox" / "orders-1.csv"
    write_atomic(target, b"one")
    write_atomic(target, b"two")
    assert target.read_bytes() == b"two"
    assert [p.name for p in target.parent.iterdir()] == ["orders-1.csv"]


# -- result files ----------------------------------------------------------------------------


def test_csv_results_with_bom_any_case_and_blank_lines() -> None:
    data = (
        "\ufeffRecord_ID,Status,Error\r\nr1,ok,\r\n\r\nr2,FAILED,\"bad sku, 'A-1'\"\r\n"
    ).encode()
    results = parse_csv_results(data, "acks.csv")
    assert [(r.record_id, r.ok, r.error, r.line) for r in results] == [
        ("r1", True, None, 2),
        ("r2", False, "bad sku, 'A-1'", 4),
    ]


def test_csv_results_need_no_error_column() -> None:
    results = parse_csv_results(b"record_id,status\nr1,ok\n", "acks.csv")
    assert results[0].ok and results[0].error is None


@pytest.mark.parametrize(
    ("data", "line", "message"),
    [
        (b"", 1, "empty file"),
        (b"id,status\nr1,ok\n", 1, "lacks record_id"),
        (b"record_id,status,error\nr1,ok\nr2,done,\n", 2, "expected 3 fields"),
        (b"record_id,status,error\nr1,ok,\nr2,done,\n", 3, "must be 'ok' or 'failed'"),
        (b"record_id,status\nr1,ok\n,ok\n", 3, "record_id is empty"),
        (b"record_id,status\nr1,ok\nr2,\xff\xfe\n", 3, "not UTF-8"),
        (b'record_id,status\nr1,ok\n"r2,ok\n', 3, "unexpected end of data"),
        (b'record_id,status\nr1,ok\n"r2"x,ok\n', 3, "bad CSV"),
    ],
)
def test_a_malformed_csv_result_file_names_file_and_line(
    data: bytes, line: int, message: str
) -> None:
    with pytest.raises(ResultFileError) as raised:
        parse_csv_results(data, "acks.csv")
    error = raised.value
    assert error.file == "acks.csv" and error.line == line, str(error)
    assert message in str(error)
    assert str(error).startswith(f"acks.csv:{line}: error")


def test_xml_results() -> None:
    data = b"""<?xml version="1.0"?>
<results>
  <result record_id="r1" status="ok"/>
  <result record_id="r2" status="failed" error="unknown customer &amp; co"/>
</results>
"""
    results = parse_xml_results(data, "acks.xml")
    assert [(r.record_id, r.ok, r.error, r.line) for r in results] == [
        ("r1", True, None, 3),
        ("r2", False, "unknown customer & co", 4),
    ]


@pytest.mark.parametrize(
    ("data", "line", "message"),
    [
        (b"", 1, "bad XML"),
        (b"<results>\n<result record_id='r1' status='ok'>\n</results>", 3, "bad XML"),
        (b"<acks/>", 1, "root element must be <results>"),
        (b"<results>\n  <ack/>\n</results>", 2, "expected <result>"),
        (b"<results>\n<result record_id='r1' status='ok'><x/></result></results>", 2, "inside"),
        (b"<results>\n\n<result status='ok'/></results>", 3, "record_id is empty"),
        (b"<results><result record_id='r1' status='maybe'/></results>", 1, "'ok' or 'failed'"),
        (
            b'<?xml version="1.0"?>\n<!DOCTYPE r [<!ENTITY a "aaaa">]>\n<results/>',
            2,
            "DOCTYPE",
        ),
    ],
)
def test_a_malformed_xml_result_file_names_file_and_line(
    data: bytes, line: int, message: str
) -> None:
    with pytest.raises(ResultFileError) as raised:
        parse_xml_results(data, "acks.xml")
    assert raised.value.file == "acks.xml" and raised.value.line == line, str(raised.value)
    assert message in str(raised.value)


def test_read_results_picks_the_parser_by_suffix() -> None:
    assert read_results("A.CSV", b"record_id,status\nr1,ok\n")[0].record_id == "r1"
    assert read_results("a.xml", b"<results><result record_id='r9' status='ok'/></results>")
    with pytest.raises(ResultFileError, match="unknown result file type"):
        read_results("a.txt", b"")


def test_bulk_answers() -> None:
    body = (
        b'{"results": [{"record_id": "r1", "status": "ok"}, '
        b'{"record_id": "r2", "status": "failed", "error": "nope"}]}'
    )
    results = parse_bulk_answer(body, "answer")
    assert [(r.record_id, r.ok, r.error) for r in results] == [
        ("r1", True, None),
        ("r2", False, "nope"),
    ]
    for bad, message in [
        (b"not json", "not JSON"),
        (b'{"ok": true}', '"results" list'),
        (b'{"results": [1]}', "JSON object"),
        (b'{"results": [{"record_id": 7, "status": "ok"}]}', "must be strings"),
    ]:
        with pytest.raises(ResultFileError, match=message):
            parse_bulk_answer(bad, "answer")
