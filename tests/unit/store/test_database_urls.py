"""Database URLs: every malformed one is refused whole, in one line that says why, before
anything connects or is created; the well-formed ones parse to their backend."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hybridmesh.core.errors import ConfigurationError, InvalidSettingError, ValidationError
from hybridmesh.store import open_store
from hybridmesh.store.postgres import PostgresStore, server_of
from hybridmesh.store.urls import ACCEPTED_URLS, parse_database_url, shown_url


@pytest.mark.parametrize(
    ("url", "dialect", "path"),
    [
        ("sqlite:///mesh.db", "sqlite", "mesh.db"),
        ("sqlite:///.hybridmesh/mesh.db", "sqlite", ".hybridmesh/mesh.db"),
        ("sqlite:////var/lib/mesh.db", "sqlite", "/var/lib/mesh.db"),
        ("SQLITE:///:memory:", "sqlite", ":memory:"),
        ("postgresql://mesh:pw@db.internal:5433/mesh", "postgresql", None),
        ("postgres://db/mesh", "postgresql", None),
        ("postgresql:///mesh", "postgresql", None),
        ("postgresql://[::1]:5432/mesh", "postgresql", None),
        (
            "postgresql://h1:5432,h2:5433,[::1]/mesh?target_session_attrs=read-write",
            "postgresql",
            None,
        ),
        ("postgresql://h/mesh?sslmode=verify-full&application_name=mesh", "postgresql", None),
        ("postgresql://h/mesh?port=5433,5434", "postgresql", None),
    ],
)
def test_well_formed_urls_parse(url: str, dialect: str, path: str | None) -> None:
    parsed = parse_database_url(url)
    assert (parsed.dialect, parsed.path) == (dialect, path)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("", "it has no scheme"),
        ("mesh.db", "it has no scheme"),
        ("mysql://root@h/db", "the scheme 'mysql:' is not supported"),
        ("sqlite:", "starts with sqlite:///"),
        ("sqlite:mesh.db", "starts with sqlite:///"),
        ("sqlite://", "the SQLite path is empty"),
        ("sqlite:///", "the SQLite path is empty"),
        ("sqlite://host/mesh.db", "has no host part ('host')"),
        ("sqlite:///mesh.db?mode=ro", "takes no query"),
        ("sqlite:///mesh.db#x", "takes no query"),
        ("sqlite:///me\x00sh.db", "control character"),
        ("postgresql:db", "starts with postgresql://"),
        ("postgresql://[::1", "the host cannot be parsed"),
        ("postgresql://[::1/db", "the host cannot be parsed"),
        ("postgresql://h:abc/db", "the port 'abc' is not a number from 1 to 65535"),
        ("postgresql://h:0/db", "the port '0'"),
        ("postgresql://h:70000/db", "the port '70000'"),
        ("postgresql://h:/db", "the port ''"),
        ("postgresql://h1,,h2/db", "a host is missing"),
        ("postgresql://u:p@ss@h/db", "'@' in the password is written %40"),
        ("postgresql://h/db?sslmode=bogus", "sslmode='bogus' is not one of"),
        ("postgresql://h/db?target_session_attrs=x", "target_session_attrs='x'"),
        ("postgresql://h/db?port=x", "the port 'x'"),
        ("postgresql://h/db?sslmode", "the query is not key=value pairs"),
        ("postgresql://h/db#frag", "takes no fragment"),
    ],
)
async def test_each_malformed_url_is_one_line_that_says_why(url: str, why: str) -> None:
    with pytest.raises(InvalidSettingError) as parsing:
        parse_database_url(url)
    with pytest.raises(InvalidSettingError) as opening:
        await open_store(url)
    for raised in (parsing, opening):
        message = str(raised.value)
        assert why in message
        assert ACCEPTED_URLS in message
        assert "\n" not in message
        # Bad configuration and bad input at once: callers catching either see it.
        assert isinstance(raised.value, ConfigurationError)
        assert isinstance(raised.value, ValidationError)


async def test_a_malformed_url_creates_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for url in ("sqlite://", "sqlite:///", "sqlite:///x.db?mode=ro"):
        with pytest.raises(InvalidSettingError):
            await open_store(url)
    assert not any(tmp_path.iterdir())  # noqa: ASYNC240 - a look at a temporary folder


async def test_postgres_store_open_checks_the_url_before_connecting() -> None:
    with pytest.raises(InvalidSettingError, match="the host cannot be parsed"):
        await PostgresStore.open("postgresql://[::1")


def test_messages_never_show_a_password() -> None:
    for url in (
        "postgresql://u:s3cret@h:abc/db",
        "postgresql://u:s3cret@h/db?sslmode=bogus",
        "postgresql://h/db?password=s3cret&sslmode=bogus",
        "postgresql://u:s3cret@[::1/db",
    ):
        with pytest.raises(InvalidSettingError) as raised:
            parse_database_url(url)
        assert "s3cret" not in str(raised.value), url


@settings(max_examples=400, deadline=None)
@given(
    st.one_of(
        st.text(max_size=60),
        st.builds(
            lambda scheme, rest: scheme + rest,
            st.sampled_from(["sqlite:", "sqlite://", "sqlite:///", "postgresql://", "postgres:"]),
            st.text(alphabet=st.sampled_from("ab1:/@[]?&=#%,. \x00"), max_size=30),
        ),
    )
)
def test_any_text_parses_or_is_refused_with_an_invalid_setting_error(url: str) -> None:
    try:
        parsed = parse_database_url(url)
    except InvalidSettingError as refused:
        assert "\n" not in str(refused)
        return
    # What parses can be named in messages without another error.
    shown_url(url)
    if parsed.dialect == "postgresql":
        server_of(url)
    else:
        assert parsed.path
