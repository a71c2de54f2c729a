"""The recorder's limits: a cap per pair of services, and files it must not overwrite."""

from __future__ import annotations

from pathlib import Path

from hybridmesh.contracts.pact import read_pact
from hybridmesh.contracts.recorder import MAX_INTERACTIONS_PER_PAIR, ContractRecorder


def exchange(recorder: ContractRecorder, path: str) -> bool:
    return recorder.record_http(
        consumer="web-shop",
        provider="user-service",
        method="GET",
        path=path,
        query=None,
        request_headers={"Accept": "application/json"},
        request_body=None,
        status=200,
        response_headers={"Content-Type": "application/json"},
        response_body=b'{"ok": true}',
    )


def test_paths_that_are_not_ids_stop_at_the_pairs_cap(tmp_path: Path) -> None:
    recorder = ContractRecorder(tmp_path)
    recorded = [exchange(recorder, f"/users/by-name/user{n}x") for n in range(205)]
    assert sum(recorded) == MAX_INTERACTIONS_PER_PAIR
    pact = read_pact(tmp_path / "web-shop-user-service.json")
    assert len(pact.interactions) == MAX_INTERACTIONS_PER_PAIR


def test_a_malformed_file_in_the_folder_is_left_as_it_is(tmp_path: Path) -> None:
    file = tmp_path / "web-shop-user-service.json"
    file.write_text('{"consumer": 1}\n')
    recorder = ContractRecorder(tmp_path)
    assert exchange(recorder, "/users/1") is False
    assert file.read_text() == '{"consumer": 1}\n'
    assert [p.name for p in tmp_path.iterdir()] == [file.name]  # no stray lock or temp file
