"""What every CLI command shares: the context object, JSON output, running coroutines."""

from __future__ import annotations

import asyncio
import math
import sys
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import click
from rich.console import Console

from hybridmesh.core.limits import DAY_SECONDS, MAX_COUNT, MAX_DEADLINE_MS, MAX_VERSION
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


class FiniteRange(click.FloatRange):
    """A number within a range, as :class:`click.FloatRange`, that also refuses ``nan``
    (which compares false with every bound, so a plain range lets it through)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number


#: Seconds an option waits or holds something: above 0, at most one day.
SECONDS = FiniteRange(0, DAY_SECONDS, min_open=True)
#: Seconds of grace: 0 to one day.
GRACE_SECONDS = FiniteRange(0, DAY_SECONDS)
#: Seconds to wait for an execution to end: above 0, at most 365 days.
WAIT_SECONDS = FiniteRange(0, MAX_DEADLINE_MS / 1000, min_open=True)
#: How many items to list or take: 1 to 1,000,000.
COUNT = click.IntRange(1, MAX_COUNT)
#: A definition's version.
VERSION = click.IntRange(1, MAX_VERSION)

__all__ = [
    "COUNT",
    "GRACE_SECONDS",
    "SECONDS",
    "VERSION",
    "WAIT_SECONDS",
    "CliContext",
    "FiniteRange",
    "console",
    "emit_json",
    "err_console",
    "get_ctx",
    "json_option",
    "run",
]
