"""The files exchanged with a legacy system: exports out, result files back.

Exports (one file per run, UTF-8):

- CSV (RFC 4180, CRLF line ends): a header row ``record_id,idempotency_key,<fields…>``, then
  one row per record. Strings are written as they are, ``null`` as an empty cell, anything
  else (numbers, booleans, nested objects and lists) as JSON text.
- XML: ``<batch target= operation= run= created=>`` holding ``<record id= key=>`` elements,
  each with ``<field name=…>value</field>`` children (values as in CSV). A null value is
  ``<field name=… null="true"/>``. A value XML cannot carry exactly (control characters,
  carriage returns) is written base64-encoded with ``encoding="base64"``.

Result files, written by the legacy side to the target's inbox:

- CSV with the header ``record_id,status,error`` (``error`` optional; status ``ok`` or
  ``failed``, any case);
- XML ``<results><result record_id=… status=… error=…/>…</results>``; DTDs are refused.

A malformed result file raises :class:`ResultFileError`, which names the file and line.
"""

from __future__ import annotations

import base64
import csv
import io
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any
from xml.parsers import expat

from hybridmesh.batch.ledger import RESERVED_FIELDS, BatchRecord, RecordResult
from hybridmesh.core.errors import Problem, ValidationError
from hybridmesh.core.serialization import dumps, loads

RESULT_SUFFIXES = (".csv", ".xml")
# Control characters other than tab and newline: XML 1.0 cannot hold most of them, and
# parsers turn a carriage return into a newline.
_UNSAFE_XML_TEXT = re.compile("[\x00-\x08\x0b-\x1f\ufffe\uffff]")


class ResultFileError(ValidationError):
    """A result file (or bulk answer) that cannot be read. ``file`` and ``line`` say where."""

    def __init__(self, file: str, line: int | None, message: str) -> None:
        self.file = file
        self.line = line
        super().__init__([Problem(message, file=file, line=line)])


# -- exports ---------------------------------------------------------------------------------


def field_text(value: Any) -> str | None:
    """A payload value as export text: strings as they are, None as None, the rest as JSON."""
    if value is None or isinstance(value, str):
        return value
    return dumps(value)


def export_fields(records: Sequence[BatchRecord], fields: Sequence[str] | None) -> list[str]:
    """The payload fields a CSV export has columns for: ``fields``, else every key, sorted."""
    if fields is not None:
        return list(fields)
    return sorted({key for record in records for key in record.payload})


def csv_export(records: Sequence[BatchRecord], fields: Sequence[str] | None = None) -> bytes:
    """The CSV file of a run. Payload keys not in ``fields`` (when given) are not exported."""
    columns = export_fields(records, fields)
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow([*RESERVED_FIELDS, *columns])
    for record in records:
        payload = record.payload
        writer.writerow(
            [
                record.id,
                record.idempotency_key or "",
                *(field_text(payload.get(name)) or "" for name in columns),
            ]
        )
    return buffer.getvalue().encode("utf-8")


def xml_export(
    records: Sequence[BatchRecord],
    *,
    target: str,
    operation: str,
    run_id: str,
    created: datetime,
    fields: Sequence[str] | None = None,
) -> bytes:
    """The XML file of a run. Without ``fields``, each record lists its own payload keys."""
    root = ET.Element(
        "batch",
        {"target": target, "operation": operation, "run": run_id, "created": created.isoformat()},
    )
    for record in records:
        attributes = {"id": record.id}
        if record.idempotency_key is not None:
            attributes["key"] = record.idempotency_key
        element = ET.SubElement(root, "record", attributes)
        for name in fields if fields is not None else record.payload:
            _add_field(element, name, record.payload.get(name))
    ET.indent(root, space="  ")
    data: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return data + b"\n"


def _add_field(parent: ET.Element, name: str, value: Any) -> None:
    field = ET.SubElement(parent, "field", {"name": name})
    text = field_text(value)
    if text is None:
        field.set("null", "true")
    elif _UNSAFE_XML_TEXT.search(text):
        field.set("encoding", "base64")
        field.text = base64.b64encode(text.encode("utf-8")).decode("ascii")
    else:
        field.text = text


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the whole file or none of it.

    The bytes go to a hidden temporary name in the same folder, are flushed to disk, and
    are then renamed over ``path``; the folder is synced so the rename survives a crash.
    Blocking: call it in a thread.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    with open(temporary, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)
    _sync_folder(path.parent)


def _sync_folder(folder: Path) -> None:
    if os.name != "posix":
        return
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


# -- result files ----------------------------------------------------------------------------


def read_results(name: str, data: bytes) -> list[RecordResult]:
    """The results in a result file, by its suffix (``.csv`` or ``.xml``).

    Raises :class:`ResultFileError` for a malformed file or an unknown suffix.
    """
    suffix = Path(name).suffix.lower()
    if suffix == ".csv":
        return parse_csv_results(data, name)
    if suffix == ".xml":
        return parse_xml_results(data, name)
    raise ResultFileError(name, None, f"unknown result file type {suffix!r} (use .csv or .xml)")


def parse_csv_results(data: bytes, source: str) -> list[RecordResult]:
    """Results from a CSV file with the header ``record_id,status[,error]``."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise ResultFileError(source, line, "not UTF-8 text") from None
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    results: list[RecordResult] = []
    header: list[str] | None = None
    try:
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            if header is None:
                header = _csv_header(row, source, reader.line_num)
                continue
            if len(row) != len(header):
                raise ResultFileError(
                    source, reader.line_num, f"expected {len(header)} fields, found {len(row)}"
                )
            cells = dict(zip(header, row, strict=True))
            results.append(
                _result(
                    source,
                    reader.line_num,
                    cells.get("record_id"),
                    cells.get("status"),
                    cells.get("error"),
                )
            )
    except csv.Error as error:
        raise ResultFileError(source, reader.line_num, f"bad CSV: {error}") from None
    if header is None:
        raise ResultFileError(source, 1, "empty file: expected the header record_id,status,error")
    return results


def _csv_header(row: list[str], source: str, line: int) -> list[str]:
    header = [cell.strip().lower() for cell in row]
    missing = [name for name in ("record_id", "status") if name not in header]
    if missing:
        raise ResultFileError(
            source,
            line,
            f"the header lacks {', '.join(missing)} (expected record_id,status,error)",
        )
    if len(set(header)) != len(header):
        raise ResultFileError(source, line, "the header repeats a column")
    return header


class _Refused(Exception):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


def parse_xml_results(data: bytes, source: str) -> list[RecordResult]:
    """Results from ``<results><result record_id= status= error=/>…</results>``."""
    parser = expat.ParserCreate()
    results: list[RecordResult] = []
    depth = 0

    def start(name: str, attributes: dict[str, str]) -> None:
        nonlocal depth
        depth += 1
        line = parser.CurrentLineNumber
        if depth == 1 and name != "results":
            raise _Refused(line, f"the root element must be <results>, not <{name}>")
        if depth == 2:
            if name != "result":
                raise _Refused(line, f"expected <result>, found <{name}>")
            results.append(
                _result(
                    source,
                    line,
                    attributes.get("record_id"),
                    attributes.get("status"),
                    attributes.get("error"),
                )
            )
        if depth > 2:
            raise _Refused(line, f"unexpected <{name}> inside <result>")

    def end(name: str) -> None:
        nonlocal depth
        depth -= 1

    def doctype(*_: Any) -> None:
        # No DTD means no entity declarations: nothing can expand or reach out to a file.
        raise _Refused(parser.CurrentLineNumber, "DOCTYPE declarations are not accepted")

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.StartDoctypeDeclHandler = doctype
    try:
        parser.Parse(data, True)
    except expat.ExpatError as error:
        message = expat.ErrorString(error.code) if error.code is not None else str(error)
        raise ResultFileError(source, error.lineno, f"bad XML: {message}") from None
    except _Refused as refused:
        raise ResultFileError(source, refused.line, refused.message) from None
    return results


def _result(
    source: str, line: int, record_id: str | None, status: str | None, error: str | None
) -> RecordResult:
    record_id = (record_id or "").strip()
    if not record_id:
        raise ResultFileError(source, line, "record_id is empty")
    state = (status or "").strip().lower()
    if state not in ("ok", "failed"):
        raise ResultFileError(
            source, line, f"status {status!r} of record {record_id} must be 'ok' or 'failed'"
        )
    return RecordResult(record_id, state == "ok", (error or "").strip() or None, line)


def parse_bulk_answer(body: bytes, source: str) -> list[RecordResult]:
    """Results from a bulk endpoint's JSON answer ``{"results": [{record_id, status,
    error}]}``; :class:`ResultFileError` (line = the result's index + 1) when malformed."""
    try:
        document = loads(body)
    except ValueError as error:
        raise ResultFileError(source, None, f"the answer is not JSON: {error}") from None
    items = document.get("results") if isinstance(document, dict) else None
    if not isinstance(items, list):
        raise ResultFileError(source, None, 'the answer has no "results" list')
    results: list[RecordResult] = []
    for index, item in enumerate(items, start=1):
        if not isinstance(item, dict):
            raise ResultFileError(source, index, "a result must be a JSON object")
        values = [item.get(key) for key in ("record_id", "status", "error")]
        if any(value is not None and not isinstance(value, str) for value in values):
            raise ResultFileError(source, index, "record_id, status and error must be strings")
        results.append(_result(source, index, *values))
    return results


__all__ = [
    "RESULT_SUFFIXES",
    "ResultFileError",
    "csv_export",
    "export_fields",
    "field_text",
    "parse_bulk_answer",
    "parse_csv_results",
    "parse_xml_results",
    "read_results",
    "write_atomic",
    "xml_export",
]
