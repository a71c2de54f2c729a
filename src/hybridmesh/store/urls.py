"""Database URLs: the forms the store accepts, each checked whole before anything connects.

::

    sqlite:///relative/path            relative to the working directory
    sqlite:////absolute/path
    sqlite:///:memory:                 a private in-memory database
    postgresql://user:password@host:port/database?sslmode=require   (or postgres://)

A SQLite URL names a file and nothing else: no host, no query, no fragment, and never an
empty path (``sqlite://`` is an error, not a quiet default). A PostgreSQL URL may list several
``host:port`` pairs (``h1:5432,h2:5432``), bracket IPv6 hosts (``[::1]:5432``), and leave the
host out to use the local socket; its query takes the connection parameters asyncpg knows
(:data:`POSTGRES_PARAMETERS`), and any other parameter is a PostgreSQL run-time setting
sent at connect time (``application_name``, ``search_path``, ``statement_timeout``), which
the server itself accepts or refuses.

Every malformed URL raises :class:`~hybridmesh.core.errors.InvalidSettingError`: one line
that says what is wrong and which forms are accepted. A well-formed URL whose database
cannot be reached is a :class:`~hybridmesh.core.errors.StoreError` when it is opened.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import parse_qsl, urlsplit

from hybridmesh.core.errors import InvalidSettingError

#: The accepted forms, as every message about a bad URL lists them.
ACCEPTED_URLS = (
    "sqlite:///relative/path, sqlite:////absolute/path, sqlite:///:memory:, "
    "postgresql://user@host:port/database (or postgres://)"
)

MEMORY = ":memory:"

#: Query parameters asyncpg reads itself, and the values of those that take a fixed set.
POSTGRES_PARAMETERS: dict[str, frozenset[str] | None] = {
    "host": None,
    "port": None,
    "dbname": None,
    "database": None,
    "user": None,
    "password": None,
    "passfile": None,
    "service": None,
    "sslmode": frozenset({"disable", "allow", "prefer", "require", "verify-ca", "verify-full"}),
    "sslcert": None,
    "sslkey": None,
    "sslrootcert": None,
    "sslcrl": None,
    "sslpassword": None,
    "sslnegotiation": frozenset({"postgres", "direct"}),
    "ssl_min_protocol_version": frozenset({"TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"}),
    "ssl_max_protocol_version": frozenset({"TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"}),
    "target_session_attrs": frozenset(
        {"any", "primary", "standby", "prefer-standby", "read-write", "read-only"}
    ),
    "krbsrvname": None,
    "gsslib": frozenset({"gssapi", "sspi"}),
}

_POSTGRES_SCHEMES = ("postgresql", "postgres")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_QUERY_PASSWORD = re.compile(r"([?&](?:ssl)?password=)[^&#]*", re.IGNORECASE)
_BRACKETED = re.compile(r"^\[([0-9A-Fa-f:.%a-zA-Z]+)\](?::(.*))?$")


@dataclass(frozen=True)
class DatabaseUrl:
    """A database URL that parsed: which backend, and for SQLite the file (or ``:memory:``)."""

    url: str
    dialect: Literal["sqlite", "postgresql"]
    path: str | None = None

    @property
    def in_memory(self) -> bool:
        return self.path == MEMORY


def parse_database_url(url: str) -> DatabaseUrl:
    """``url`` checked whole; :class:`InvalidSettingError` says what is wrong with it."""
    if _CONTROL.search(url):
        raise _bad(url, "it contains a control character (a newline, a tab, a NUL)")
    match = _SCHEME.match(url)
    scheme = match.group(1).lower() if match else ""
    if scheme == "sqlite":
        return DatabaseUrl(url, "sqlite", _sqlite_path(url))
    if scheme in _POSTGRES_SCHEMES:
        _check_postgres(url)
        return DatabaseUrl(url, "postgresql")
    what = f"the scheme {scheme + ':'!r} is not supported" if scheme else "it has no scheme"
    raise _bad(url, what)


def _sqlite_path(url: str) -> str:
    rest = url[len("sqlite:") :]
    if not rest.startswith("//"):
        raise _bad(url, "a SQLite URL starts with sqlite:/// (three slashes)")
    host, slash, path = rest[2:].partition("/")
    if host:
        raise _bad(url, f"a SQLite URL has no host part ({host!r}); the path follows sqlite:///")
    if not slash or not path:
        raise _bad(url, "the SQLite path is empty")
    if "?" in path or "#" in path:
        raise _bad(url, "a SQLite URL takes no query ('?…') or fragment ('#…')")
    return path


def _check_postgres(url: str) -> None:
    if not url.partition(":")[2].startswith("//"):
        raise _bad(url, "a PostgreSQL URL starts with postgresql:// (two slashes)")
    try:
        parts = urlsplit(url)
    except ValueError as error:
        raise _bad(url, f"the host cannot be parsed ({error})") from None
    if parts.fragment:
        raise _bad(url, "a PostgreSQL URL takes no fragment ('#…')")
    # asyncpg splits user information from hosts at the first '@', as libpq does.
    hosts = parts.netloc.partition("@")[2] if "@" in parts.netloc else parts.netloc
    if hosts:
        for host in hosts.split(","):
            _check_host(url, host)
    if parts.query:
        try:
            query = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=True)
        except ValueError:
            raise _bad(url, "the query is not key=value pairs joined by '&'") from None
        for key, value in query:
            _check_parameter(url, key, value)


def _check_host(url: str, spec: str) -> None:
    bracketed = _BRACKETED.match(spec)
    port: str | None
    if bracketed is not None:
        port = bracketed.group(2)
    elif spec.startswith("["):
        raise _bad(url, f"the IPv6 host {spec!r} is not closed with ']'")
    else:
        host, colon, port = spec.partition(":")
        port = port if colon else None
        if not host:
            raise _bad(url, f"a host is missing in {spec!r}")
        if any(c in host for c in "@[] /"):
            raise _bad(
                url,
                f"the host {host!r} is not valid (a '@' in the password is written %40)",
            )
    if port is not None:
        _check_port(url, port)


def _check_port(url: str, port: str) -> None:
    if not (port.isascii() and port.isdigit()) or not 1 <= int(port) <= 65535:
        raise _bad(url, f"the port {port!r} is not a number from 1 to 65535")


def _check_parameter(url: str, key: str, value: str) -> None:
    if key not in POSTGRES_PARAMETERS:
        return  # a run-time setting, sent to the server, which accepts or refuses it
    allowed = POSTGRES_PARAMETERS[key]
    if allowed is not None and value not in allowed:
        raise _bad(url, f"{key}={value!r} is not one of {', '.join(sorted(allowed))}")
    if key == "port":
        for port in value.split(","):
            _check_port(url, port)


def _bad(url: str, why: str) -> InvalidSettingError:
    return InvalidSettingError(
        f"bad database URL {shown_url(url)!r}: {why}; accepted are {ACCEPTED_URLS}"
    )


def shown_url(url: str) -> str:
    """``url`` fit for a message: the password (in the user information or the query)
    replaced by ``***``; a URL that does not parse is shown whole unless it holds a '@'."""
    from hybridmesh.store._base import mask_password

    if "@" in url:
        url = mask_password(url)
    return _QUERY_PASSWORD.sub(r"\1***", url)


__all__ = [
    "ACCEPTED_URLS",
    "MEMORY",
    "POSTGRES_PARAMETERS",
    "DatabaseUrl",
    "parse_database_url",
    "shown_url",
]
