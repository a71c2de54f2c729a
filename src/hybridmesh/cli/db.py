"""``hybridmesh db``: create and upgrade the state store's schema, and report on it."""

from __future__ import annotations

from typing import Any

import click

from hybridmesh.cli._common import console, emit_json, get_ctx, json_option, run
from hybridmesh.store import open_store


def _say(text: str) -> None:
    # Plain text: URLs may hold "[…]" (IPv6 hosts) that rich would read as markup.
    console.print(text, markup=False, highlight=False, soft_wrap=True)


@click.group()
def db() -> None:
    """Manage the state store."""


@db.command()
def upgrade() -> None:
    """Apply pending schema migrations (safe to run again, and from several processes)."""
    url = get_ctx().database_url

    async def _upgrade() -> tuple[list[str], int]:
        async with await open_store(url) as store:
            applied = await store.upgrade()
            return [f"{m.version} {m.name}" for m in applied], await store.schema_version()

    applied, version = run(_upgrade())
    if not applied:
        _say(f"schema is up to date (version {version})")
        return
    for line in applied:
        _say(f"applied {line}")
    _say(f"schema is at version {version}")


@db.command()
@json_option
def status(as_json: bool) -> None:
    """Show the store's URL, dialect, schema version and pending migrations."""
    url = get_ctx().database_url

    async def _status() -> dict[str, Any]:
        # Only reads: a SQLite file that does not exist yet stays so (version 0).
        async with await open_store(url, create=False) as store:
            latest = store.migrations[-1].version if store.migrations else 0
            return {
                "url": store.display_url,
                "dialect": store.dialect,
                "version": await store.schema_version(),
                "latest": latest,
                "pending": [
                    {"version": m.version, "name": m.name} for m in await store.pending_migrations()
                ],
            }

    report = run(_status())
    if as_json:
        emit_json(report)
        return
    pending = ", ".join(f"{m['version']} {m['name']}" for m in report["pending"]) or "none"
    _say(f"url:      {report['url']}")
    _say(f"dialect:  {report['dialect']}")
    _say(f"version:  {report['version']} (latest {report['latest']})")
    _say(f"pending:  {pending}")


__all__ = ["db"]
