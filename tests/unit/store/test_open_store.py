"""open_store: choosing a backend from a URL, and what it does to the file system."""

from __future__ import annotations

from pathlib import Path

import pytest

from hybridmesh.core.errors import ConfigurationError, StoreError
from hybridmesh.core.settings import DEFAULT_DATABASE_URL
from hybridmesh.store import PostgresStore, SQLiteStore, open_store


@pytest.mark.parametrize(
    "url",
    [
        "mysql://root@localhost/db",
        "postgresql+asyncpg://h/db",
        "mesh.db",
        "",
        "sqlite://",
        "sqlite:///",
        "postgresql://[::1",
    ],
)
async def test_a_bad_url_raises_configuration_error_naming_url_and_schemes(
    url: str,
) -> None:
    with pytest.raises(ConfigurationError) as raised:
        await open_store(url)
    message = str(raised.value)
    assert repr(url) in message
    assert "sqlite:///" in message
    assert "postgresql://" in message


async def test_configuration_error_masks_the_password() -> None:
    with pytest.raises(ConfigurationError) as raised:
        await open_store("mysql://root:s3cret@localhost/db")
    assert "s3cret" not in str(raised.value)
    assert "mysql://root:***@localhost/db" in str(raised.value)


async def test_sqlite_path_parent_directories_are_created(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "mesh.db"
    async with await open_store(f"sqlite:///{path}") as store:
        assert isinstance(store, SQLiteStore)
        assert store.dialect == "sqlite"
        await store.upgrade()
    assert path.is_file()


async def test_relative_sqlite_path_is_relative_to_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    async with await open_store("sqlite:///state/mesh.db"):
        pass
    assert (tmp_path / "state" / "mesh.db").is_file()


async def test_no_url_opens_the_default_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    async with await open_store() as store:
        assert store.url == DEFAULT_DATABASE_URL
    assert (tmp_path / ".hybridmesh" / "mesh.db").is_file()


async def test_in_memory_sqlite_works(tmp_path: Path) -> None:
    async with await open_store("sqlite:///:memory:") as store:
        assert await store.upgrade()
        await store.execute("CREATE TABLE t (x INTEGER)")
        await store.executemany("INSERT INTO t (x) VALUES (?)", [(1,), (2,)])
        assert await store.fetch_value("SELECT SUM(x) FROM t") == 3


async def test_unopenable_sqlite_file_raises_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(StoreError, match="cannot open"):
        await open_store(f"sqlite:///{blocker / 'mesh.db'}")


async def test_unreachable_postgres_raises_store_error_naming_host_not_password() -> None:
    with pytest.raises(StoreError) as raised:
        await open_store("postgresql://mesh:s3cret@127.0.0.1:1/mesh")
    message = str(raised.value)
    assert "127.0.0.1:1/mesh" in message
    assert "s3cret" not in message


def test_display_url_and_repr_hide_the_password() -> None:
    store = PostgresStore("postgresql://mesh:s3cret@db.internal:5433/mesh", pool=None)
    assert store.display_url == "postgresql://mesh:***@db.internal:5433/mesh"
    assert "s3cret" not in repr(store)
