"""What the CLI says about bad settings and unreachable databases, what read-only commands
leave behind (nothing), and that no error says "error" twice. Run in-process through the
console-script entry point, so the exit codes are the ones a shell sees."""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from hybridmesh.cli.main import main
from hybridmesh.store import MIGRATIONS, PostgresStore, SQLiteStore, open_store

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "tanqory"
SERVICES = EXAMPLES / "services"
DEFINITIONS = EXAMPLES / "definitions"

DOUBLED = re.compile(r"error(?: \[[^\]]*\])?:\s*error\b", re.IGNORECASE)


@pytest.fixture
def empty_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty working directory, and no database or events URL in the environment."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    for name in ("HYBRIDMESH_DATABASE_URL", "HYBRIDMESH_EVENTS_URL", "HYBRIDMESH_EXCHANGE_DIR"):
        monkeypatch.delenv(name, raising=False)
    yield work


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    with pytest.raises(SystemExit) as done:
        main(list(args))
    out, err = capsys.readouterr()
    code = done.value.code
    return (code if isinstance(code, int) else 1), out, err


def label(args: list[str]) -> str:
    """A test id: the arguments, with folders shown by their last part."""
    return " ".join(Path(a).name if "/" in a and "://" not in a else a for a in args)


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


# --------------------------------------------------------------------------- database URLs

MALFORMED = [
    ("postgresql://[::1", "the host cannot be parsed"),
    ("postgresql://127.0.0.1:abc/mesh", "the port 'abc'"),
    ("postgresql://h/mesh?sslmode=bogus", "sslmode='bogus'"),
    ("postgresql://u:p@ss@h/mesh", "written %40"),
    ("mysql://root@h/mesh", "the scheme 'mysql:' is not supported"),
    ("sqlite://", "the SQLite path is empty"),
    ("sqlite:///", "the SQLite path is empty"),
    ("sqlite:///mesh.db?mode=ro", "takes no query"),
    ("mesh.db", "it has no scheme"),
]


@pytest.mark.parametrize(("url", "why"), MALFORMED)
def test_a_malformed_database_url_option_is_one_line_naming_the_option_exit_2(
    empty_dir: Path, capsys: pytest.CaptureFixture[str], url: str, why: str
) -> None:
    code, out, err = run_cli(capsys, "--database-url", url, "registry", "list")

    assert code == 2
    line = one_line(err)
    assert line.startswith("error [--database-url]: bad database URL")
    assert why in line
    assert out == ""
    assert list(empty_dir.iterdir()) == []


def test_a_malformed_database_url_in_the_environment_names_the_variable(
    empty_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HYBRIDMESH_DATABASE_URL", "sqlite://")

    code, _, err = run_cli(capsys, "executions", "list")

    assert code == 2
    assert one_line(err).startswith("error [HYBRIDMESH_DATABASE_URL]: bad database URL 'sqlite://'")
    assert list(empty_dir.iterdir()) == []


@pytest.mark.parametrize(
    "url", ["postgresql://mesh:s3cret@127.0.0.1:1/mesh", "postgresql://[::1]:1/mesh"]
)
def test_an_unreachable_database_is_one_line_exit_1(
    empty_dir: Path, capsys: pytest.CaptureFixture[str], url: str
) -> None:
    code, _, err = run_cli(capsys, "--database-url", url, "registry", "list")

    assert code == 1
    line = one_line(err)
    assert line.startswith("error: postgresql: cannot connect to ")
    assert "s3cret" not in line


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("HYBRIDMESH_HTTP_PORT", "eighty"),
        ("HYBRIDMESH_HTTP_PORT", "70000"),
        ("HYBRIDMESH_HTTP_HEADER_TIMEOUT", "0"),
        ("HYBRIDMESH_HTTP_BODY_TIMEOUT", "-1"),
        ("HYBRIDMESH_LOG_FORMAT", "xml"),
    ],
)
def test_a_setting_that_does_not_validate_is_one_line_naming_its_variable_exit_2(
    empty_dir: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
    value: str,
) -> None:
    monkeypatch.setenv(variable, value)

    code, _, err = run_cli(capsys, "registry", "list")

    assert code == 2
    assert one_line(err).startswith(f"error [{variable}]: ")


# --------------------------------------------------------------------------- read-only commands

READ_ONLY = [
    (["registry", "validate", str(SERVICES)], 0),
    (["registry", "list"], 0),
    (["registry", "list", "--json"], 0),
    (["registry", "show", "user-service"], 1),
    (["registry", "graph"], 0),
    (["registry", "export"], 0),
    (["registry", "recommend", "microservice", "serverless"], 0),
    (["definitions", "validate", str(DEFINITIONS), "--services", str(SERVICES)], 0),
    (["definitions", "validate", str(DEFINITIONS)], 2),
    (["definitions", "list"], 0),
    (["executions", "list"], 0),
    (["executions", "show", "nope"], 1),
    (["review", "list"], 0),
    (["review", "show", "nope"], 1),
    (["batch", "list"], 0),
    (["batch", "runs"], 0),
    (["dlq", "list"], 0),
    (["dlq", "show", "nope"], 1),
    (["db", "status"], 0),
]


@pytest.mark.parametrize(("args", "expected"), READ_ONLY, ids=[label(a) for a, _ in READ_ONLY])
def test_a_read_only_command_against_no_database_creates_nothing(
    empty_dir: Path, capsys: pytest.CaptureFixture[str], args: list[str], expected: int
) -> None:
    code, _, err = run_cli(capsys, *args)

    assert code == expected, err
    assert "Traceback" not in err
    assert sorted(p.name for p in empty_dir.rglob("*")) == []


def test_a_list_against_no_database_shows_it_empty(
    empty_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_cli(capsys, "registry", "list", "--json")
    assert (code, out.strip()) == (0, "[]")
    code, _, _ = run_cli(capsys, "executions", "list")
    assert code == 0
    code, out, _ = run_cli(capsys, "db", "status", "--json")
    assert code == 0 and json.loads(out)["version"] == 0


def test_the_database_appears_once_a_command_writes(
    empty_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli(capsys, "registry", "load", str(SERVICES))[0] == 0
    assert (empty_dir / ".hybridmesh" / "mesh.db").is_file()
    code, out, _ = run_cli(capsys, "registry", "list", "--json")
    assert code == 0 and "user-service" in out


# ------------------------------------------- read-only commands on a database without the schema


async def _relations(url: str) -> list[str]:
    """Every table, index, sequence and view in the database, outside the system schemas."""
    import asyncpg

    conn = await asyncpg.connect(url, timeout=5)
    try:
        rows = await conn.fetch(
            "SELECT n.nspname || '.' || c.relname AS name FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') "
            "AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%' ORDER BY 1"
        )
    finally:
        await conn.close()
    return [row["name"] for row in rows]


async def _admin(url: str, sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.mark.postgres
@pytest.mark.parametrize(("args", "expected"), READ_ONLY, ids=[label(a) for a, _ in READ_ONLY])
def test_a_read_only_command_on_an_empty_postgres_database_creates_no_table(
    empty_dir: Path,
    capsys: pytest.CaptureFixture[str],
    postgres_url: str,
    args: list[str],
    expected: int,
) -> None:
    code, _, err = run_cli(capsys, "--database-url", postgres_url, *args)

    assert code == expected, err
    assert "Traceback" not in err
    assert asyncio.run(_relations(postgres_url)) == []
    assert list(empty_dir.iterdir()) == []


@pytest.mark.postgres
def test_a_postgres_schema_without_the_tables_reads_empty_and_stays_empty(
    empty_dir: Path, capsys: pytest.CaptureFixture[str], postgres_url: str
) -> None:
    # The database's public schema holds a registry; the schema the URL names holds nothing.
    assert (
        run_cli(capsys, "--database-url", postgres_url, "registry", "load", str(SERVICES))[0] == 0
    )
    asyncio.run(_admin(postgres_url, "CREATE SCHEMA mesh"))
    before = asyncio.run(_relations(postgres_url))
    url = f"{postgres_url}?search_path=mesh"

    for args in (["registry", "list", "--json"], ["review", "list", "--json"]):
        code, out, err = run_cli(capsys, "--database-url", url, *args)
        assert (code, out.strip()) == (0, "[]"), err

    assert asyncio.run(_relations(postgres_url)) == before
    assert not [name for name in before if name.startswith("mesh.")]


async def _upgrade_to(url: str, version: int) -> None:
    """The schema as a release that knew migrations up to ``version`` left it."""
    kind = SQLiteStore if url.startswith("sqlite") else PostgresStore
    older = [m for m in MIGRATIONS if m.version <= version]
    async with await kind.open(url, migrations=older) as store:
        await store.upgrade()


async def _version(url: str) -> int:
    async with await open_store(url, create=False) as store:
        return await store.schema_version()


@pytest.mark.parametrize("args", [["review", "list"], ["registry", "list"], ["dlq", "list"]])
def test_a_read_only_command_on_an_older_schema_says_to_upgrade_and_changes_nothing(
    empty_dir: Path, capsys: pytest.CaptureFixture[str], database_url: str, args: list[str]
) -> None:
    asyncio.run(_upgrade_to(database_url, 4))

    code, out, err = run_cli(capsys, "--database-url", database_url, *args)

    assert (code, out) == (1, "")
    line = one_line(err)
    assert line.startswith("error: ")
    assert f"is at schema version 4, and this release reads version {MIGRATIONS[-1].version}" in (
        line
    )
    assert "run `hybridmesh db upgrade` first" in line
    assert asyncio.run(_version(database_url)) == 4
    assert run_cli(capsys, "--database-url", database_url, "db", "upgrade")[0] == 0
    assert run_cli(capsys, "--database-url", database_url, *args)[0] == 0


def test_a_sqlite_file_without_the_schema_is_read_as_empty_and_left_so(
    empty_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = empty_dir / "other.db"
    sqlite3.connect(path).close()
    url = f"sqlite:///{path}"

    code, out, err = run_cli(capsys, "--database-url", url, "review", "list", "--json")

    assert (code, out.strip()) == (0, "[]"), err
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("SELECT name FROM sqlite_master").fetchall() == []


# --------------------------------------------------------------------------- "error" once


@pytest.mark.parametrize(
    "args",
    [
        ["--database-url", "sqlite://", "registry", "list"],
        ["--database-url", "postgresql://127.0.0.1:1/mesh", "registry", "list"],
        ["registry", "show", "nope"],
        ["events", "publish", "user.*", "--source", "/x"],
        ["events", "publish", "a.b", "--source", "/x", "--data", "{"],
        ["events", "tail", "a..b"],
        ["definitions", "validate", str(DEFINITIONS)],
        ["saga", "start", "nope"],
        ["executions", "show", "nope"],
        ["dlq", "show", "nope"],
        ["review", "show", "nope"],
    ],
    ids=label,
)
def test_no_error_says_error_twice(
    empty_dir: Path, capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    code, _, err = run_cli(capsys, *args)

    assert code in (1, 2)
    assert "Traceback" not in err
    assert not DOUBLED.search(err), err
    assert err.lower().count("error:") + err.lower().count("error [") >= 1


def test_a_registry_that_breaks_the_name_rule_is_refused_with_the_rule(
    empty_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (empty_dir / "svc.yaml").write_text(
        f"name: {'x' * 10_000}\narchitecture: microservice\nbase_url: http://x\nversion: v1\n"
    )

    code, _, err = run_cli(capsys, "registry", "validate", str(empty_dir / "svc.yaml"))

    assert code == 2
    line = one_line(err)
    assert "svc.yaml:1: error [name]: " in line
    assert "it has 10000 characters, more than 63" in line
    assert "1 to 63 characters" in line
