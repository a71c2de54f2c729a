"""The SQL log's position arithmetic: leased rows become batches, settlements become the
rows that record them, and each row's values line up with its statement's placeholders."""

from __future__ import annotations

import re
from typing import Any

from hybridmesh.events.backend import GroupSpec, PartitionBatch, Settlement
from hybridmesh.events.backends import _sql_queries as q
from hybridmesh.events.backends._sql_batches import Scan, given_back, plan_batches, settle_rows
from hybridmesh.events.backends._sql_log import DeadLetterRow, SettleRow
from hybridmesh.events.envelope import CloudEvent

SPEC = GroupSpec("billing", "order.*")
NOW = 1_000.0


def _stored(seq: int, partition: int, type: str = "order.created") -> dict[str, Any]:
    event = CloudEvent.create(type, "/orders", {"seq": seq}, id=f"e{seq}")
    return {"seq": seq, "partition": partition, "type": type, "body": event.to_json().decode()}


def _leased(partition: int, position: int, head_attempts: int = 0) -> dict[str, Any]:
    return {"partition": partition, "position": position, "head_attempts": head_attempts}


def _scan(
    partition: int, position: int, head_attempts: int = 0, *, upto: int = 15, limit: int = 10
) -> Scan:
    return Scan(partition, position, head_attempts, upto, limit, newest=upto)


def _batch_of_three(head_attempts: int = 0) -> PartitionBatch:
    """Partition 3 holds seqs 11, 12 and 14 for the group, and 15 that it skips."""
    rows = [_stored(11, 3), _stored(12, 3), _stored(14, 3), _stored(15, 3, "user.created")]
    look = plan_batches(SPEC, "tok", [_scan(3, 10, head_attempts)], rows)
    assert look.releases == []
    [batch] = look.batches
    return batch


def test_a_partition_with_nothing_wanted_is_released_past_what_was_read() -> None:
    scans = [_scan(1, 4, head_attempts=2, upto=8), _scan(2, 7, upto=8)]
    look = plan_batches(SPEC, "tok", scans, [_stored(5, 1, "user.created"), _stored(8, 2)])
    assert [(b.partition, [d.position for d in b.deliveries]) for b in look.batches] == [("2", [8])]
    # Partition 1 read up to 8 (not only up to its last row, 5), and nothing of it is due.
    assert look.releases == [SettleRow(8, 0, 0.0, "billing", 1, "tok")]
    assert look.passed_over and not look.cut_short


def test_a_scan_that_returned_its_limit_read_only_up_to_its_last_row() -> None:
    rows = [_stored(5, 1, "user.created"), _stored(6, 1, "user.deleted")]
    look = plan_batches(SPEC, "tok", [_scan(1, 4, upto=100, limit=2)], rows)
    assert look.batches == []
    assert look.releases == [SettleRow(6, 0, 0.0, "billing", 1, "tok")]
    assert look.passed_over and look.cut_short  # more may follow at once


def test_a_scan_cut_short_of_the_newest_seq_says_so() -> None:
    cut = Scan(1, 4, 0, upto=50, limit=10, newest=90)
    look = plan_batches(SPEC, "tok", [cut], [])
    assert look.releases == [SettleRow(50, 0, 0.0, "billing", 1, "tok")]
    assert look.passed_over and look.cut_short


def test_a_scan_is_the_span_from_the_first_pending_seq_up_to_the_newest() -> None:
    leased = {**_leased(2, 10, head_attempts=1), "first": 40, "newest": 1_000}
    assert Scan.of(leased, limit=5, span=100) == Scan(2, 10, 1, 139, 5, 1_000)
    assert Scan.of({**leased, "newest": 60}, limit=5, span=100).upto == 60
    # Its events are gone (retention) since it was leased: it reads nothing.
    gone = Scan.of({**leased, "first": None}, limit=5, span=100)
    assert gone.upto == 10 and not plan_batches(SPEC, "tok", [gone], []).passed_over


def test_settling_every_delivery_moves_past_all_that_was_read() -> None:
    write = settle_rows(_batch_of_three(), Settlement(3), NOW)
    assert write.row == SettleRow(15, 0, 0.0, "billing", 3, "tok")
    assert write.dead_letter is None


def test_a_retry_stops_before_the_head_with_its_attempts_and_delay() -> None:
    batch = _batch_of_three(head_attempts=1)
    assert settle_rows(batch, Settlement(0, retry_after=5), NOW).row == SettleRow(
        10, 2, NOW + 5, "billing", 3, "tok"
    )
    # Past the first delivery, the head was delivered once.
    assert settle_rows(batch, Settlement(1, retry_after=5), NOW).row == SettleRow(
        11, 1, NOW + 5, "billing", 3, "tok"
    )


def test_a_release_keeps_the_attempts_the_head_had() -> None:
    write = settle_rows(_batch_of_three(head_attempts=2), Settlement(0), NOW)
    assert write.row == SettleRow(10, 2, 0.0, "billing", 3, "tok")


def test_a_dead_letter_is_written_under_the_lease_and_the_position_moves_past_it() -> None:
    write = settle_rows(_batch_of_three(head_attempts=4), Settlement(1, dead_letter="bad"), NOW)
    assert write.row == SettleRow(13, 0, 0.0, "billing", 3, "tok")  # up to the next one
    letter = write.dead_letter
    assert letter is not None
    assert (letter.group, letter.event_id, letter.source, letter.type) == (
        "billing",
        "e12",
        "/orders",
        "order.created",
    )
    assert (letter.reason, letter.attempts, letter.failed_at) == ("bad", 1, NOW)
    assert (letter.partition, letter.token) == (3, "tok")
    assert CloudEvent.from_json(letter.body).id == "e12"
    # The last delivery dead-lettered: the position moves past everything read.
    last = settle_rows(_batch_of_three(), Settlement(2, dead_letter="bad"), NOW)
    assert last.row.position == 15


def test_partitions_given_back_are_as_they_were_leased() -> None:
    rows = given_back("billing", "tok", [_leased(1, 4, head_attempts=2), _leased(5, 0)])
    assert rows == [
        SettleRow(4, 2, 0.0, "billing", 1, "tok"),
        SettleRow(0, 0, 0.0, "billing", 5, "tok"),
    ]


# The statements' column names, as the rows' fields are named.
_FIELD_OF = {"group_name": "group", "lease_token": "token"}


def _placeholder_columns(sql: str) -> list[str]:
    """The columns that ``?`` placeholders stand for, in order: an INSERT's column list
    (when it has one) followed by each ``column = ?``."""
    columns: list[str] = []
    insert = re.search(r"INSERT INTO \w+\s*\(([^)]*)\)", sql)
    if insert:
        columns += [name.strip() for name in insert.group(1).split(",")]
    columns += re.findall(r"(\w+) = \?", sql)
    assert len(columns) == sql.count("?")
    return [_FIELD_OF.get(name, name) for name in columns]


def test_settle_values_follow_the_settle_statement() -> None:
    row = SettleRow(7, 2, 3.5, "billing", 4, "tok")
    expected = tuple(getattr(row, name) for name in _placeholder_columns(q.SETTLE))
    assert row.values() == expected


def test_dead_letter_values_follow_the_insert_statement() -> None:
    letter = DeadLetterRow("dl1", "billing", "e1", "/o", "order.x", "bad", 3, "{}", 9.0, 4, "tok")
    columns = _placeholder_columns(q.INSERT_DEAD_LETTER)
    expected = tuple(getattr(letter, name) for name in columns)
    assert letter.values() == expected
