"""What every CLI command shares: the context object, JSON output, running coroutines."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import click
from rich.console import Console

from hybridmesh.core.serialization import dumps
from hybridmesh.core.settings import Settings, get_settings

T = TypeVar("T")

console = Console()
err_console = Console(stderr=True)


@dataclass
class CliContext:
    """Carried in ``click.Context.obj``: the settings every command reads."""

    settings: Settings

    @property
    def database_url(self) -> str:
        return self.settings.database_url


def get_ctx() -> CliContext:
    """The current command's :class:`CliContext`."""
    ctx = click.get_current_context()
    obj = ctx.find_object(CliContext)
    if obj is None:  # a subcommand invoked without the root group, as in some tests
        obj = CliContext(get_settings())
        ctx.obj = obj
    return obj


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from a synchronous click command."""
    return asyncio.run(coro)


def emit_json(value: Any) -> None:
    """Print ``value`` as one JSON document on stdout."""
    sys.stdout.write(dumps(value) + "\n")


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")

__all__ = ["CliContext", "console", "emit_json", "err_console", "get_ctx", "json_option", "run"]
