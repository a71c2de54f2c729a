"""``hybridmesh tokens|audit``: the control-plane API's bearer tokens and its audit trail."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click
from rich.markup import escape
from rich.table import Table

from hybridmesh.cli._common import console, emit_json, err_console, get_ctx, json_option, run
from hybridmesh.store import Store, open_ready_store

T = TypeVar("T")

_ROLES = click.Choice(["read", "operate", "admin"])


async def _with_store(action: Callable[[Store], Awaitable[T]], *, create: bool = True) -> T:
    # Commands that only read (create=False) write nothing: a missing database reads as
    # empty, an out-of-date one asks for `hybridmesh db upgrade`.
    async with await open_ready_store(get_ctx().database_url, create=create) as store:
        return await action(store)


@click.group()
def tokens() -> None:
    """Bearer tokens of the control-plane API (`hybridmesh serve`, /api/v1)."""


@tokens.command("create")
@click.argument("name")
@click.option(
    "--role",
    type=_ROLES,
    required=True,
    help="read: every GET; operate: also start and cancel executions, apply the registry; "
    "admin: also the audit trail.",
)
@json_option
def tokens_create(name: str, role: str, as_json: bool) -> None:
    """Create the token NAME with ROLE. The token is printed once: only its SHA-256 is
    stored. Exit 2 when NAME is not a name or a live token has it already."""
    from hybridmesh.control import TokenStore

    record, token = run(_with_store(lambda store: TokenStore(store).create(name, role)))
    if as_json:
        emit_json({**record.to_dict(), "token": token})
        return
    console.print(
        f"token {escape(record.name)} ({record.role.value}): {token}",
        highlight=False,
        soft_wrap=True,
    )
    err_console.print("store it now: it is not shown again", style="yellow")


@tokens.command("list")
@json_option
def tokens_list(as_json: bool) -> None:
    """The tokens, live and revoked (never the tokens themselves)."""
    from hybridmesh.control import TokenStore

    found = run(_with_store(lambda store: TokenStore(store).list(), create=False))
    if as_json:
        emit_json([t.to_dict() for t in found])
        return
    table = Table("name", "role", "id", "created", "status")
    for token in found:
        row = token.to_dict()
        table.add_row(escape(token.name), row["role"], token.id, row["created_at"], row["status"])
    console.print(table)


@tokens.command("revoke")
@click.argument("name")
def tokens_revoke(name: str) -> None:
    """Revoke the live token NAME: the API refuses it from the next request on (exit 1
    when no live token has that name)."""
    from hybridmesh.control import TokenStore

    record = run(_with_store(lambda store: TokenStore(store).revoke(name)))
    console.print(f"revoked {escape(record.name)} ({record.id})", highlight=False)


@click.group()
def audit() -> None:
    """The audit trail of the control-plane API: every write made through it."""


@audit.command("list")
@click.option("--limit", type=click.IntRange(1, 1_000_000), default=50, show_default=True)
@json_option
def audit_list(limit: int, as_json: bool) -> None:
    """The newest writes, newest first: who, what, the outcome, the request id."""
    from hybridmesh.control import AuditLog

    found: list[Any] = run(
        _with_store(lambda store: AuditLog(store).list(limit=limit), create=False)
    )
    if as_json:
        emit_json([entry.to_dict() for entry in found])
        return
    table = Table("time", "token", "role", "request", "operation", "target", "status", "request id")
    for entry in found:
        row = entry.to_dict()
        table.add_row(
            row["at"],
            escape(entry.token_name),
            entry.role,
            escape(f"{entry.method} {entry.path}"),
            entry.operation,
            escape(entry.target or ""),
            str(entry.status),
            escape(entry.request_id or ""),
        )
    console.print(table)


__all__ = ["audit", "tokens"]
