"""The store contract on a SQLite file."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.conformance.store import StoreConformance


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'mesh.db'}"


class TestSqliteStore(StoreConformance):
    pass
