"""``hybridmesh flags``: feature flags in the state store.

``apply`` stores the flags of a YAML file (or folder), ``set`` creates or changes one flag
from options (variants, default, a percentage rollout, on/off), ``list``/``show`` read
them, ``evaluate`` shows what a context gets, ``delete`` removes one. Every process's
``FlagClient`` sees a change within a second.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.markup import escape
from rich.table import Table

from hybridmesh.cli._common import console, emit_json, err_console, get_ctx, json_option, run
from hybridmesh.core.errors import Problem, ValidationError
from hybridmesh.flags.evaluation import Evaluation
from hybridmesh.flags.files import LoadedFlag, load_flags
from hybridmesh.flags.model import TARGETING_KEY
from hybridmesh.flags.store import FlagStore
from hybridmesh.flags.summary import evaluation_dict, flag_change, flag_summary
from hybridmesh.store import open_ready_store

T = TypeVar("T")


async def _with_flags(action: Callable[[FlagStore], Awaitable[T]], *, create: bool = True) -> T:
    # Commands that only read (create=False) write nothing: a missing database reads as
    # empty, an out-of-date one asks for `hybridmesh db upgrade`.
    async with await open_ready_store(get_ctx().database_url, create=create) as store:
        return await action(FlagStore(store))


def _problems(problems: list[Problem]) -> None:
    for p in problems:
        err_console.print(str(p), style="red", markup=False, highlight=False, soft_wrap=True)


def _problem_dict(p: Problem) -> dict[str, Any]:
    return {"file": p.file, "line": p.line, "field": p.field, "message": p.message}


def _loaded(path: Path, as_json: bool = False) -> list[LoadedFlag]:
    try:
        return load_flags(path)
    except ValidationError as invalid:
        if as_json:
            emit_json({"valid": False, "errors": [_problem_dict(p) for p in invalid.problems]})
        else:
            _problems(invalid.problems)
        raise SystemExit(2) from None


def _json_or_text(text: str) -> Any:
    """A value typed on the command line: JSON when it parses (``true``, ``25``,
    ``{"a": 1}``, ``"quoted"``), else the text itself."""
    from hybridmesh.core.serialization import loads

    try:
        return loads(text)
    except ValueError:
        return text


def _pairs(values: tuple[str, ...], option: str) -> list[tuple[str, str]]:
    pairs = []
    for value in values:
        name, sep, rest = value.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"{value!r}: write NAME=VALUE", param_hint=option)
        pairs.append((name, rest))
    return pairs


@click.group()
def flags() -> None:
    """Feature flags: apply YAML, set, list, show, evaluate, delete."""


_path = click.argument("path", type=click.Path(exists=True, path_type=Path), metavar="FILE")


@flags.command("validate")
@_path
@json_option
def flags_validate(path: Path, as_json: bool) -> None:
    """Check a flags file (or folder) without touching the store; exits 2 naming
    file:line and field when it is invalid."""
    loaded = _loaded(path, as_json)
    if as_json:
        emit_json({"valid": True, "flags": [item.flag.key for item in loaded]})
    else:
        console.print(f"[green]valid[/green]: {len(loaded)} flag(s)", highlight=False)


@flags.command("apply")
@_path
@click.option("--prune", is_flag=True, help="Delete stored flags that FILE does not define.")
@json_option
def flags_apply(path: Path, prune: bool, as_json: bool) -> None:
    """Store the flags of FILE (a file or a folder): new ones are created, changed ones
    replaced. Every process sees them within a second. Exits 2 when FILE is invalid."""
    loaded = _loaded(path)
    result = run(_with_flags(lambda s: s.apply(loaded, prune=prune, source=str(path))))
    if as_json:
        emit_json(result.to_dict())
        return
    for what, keys in result.to_dict().items():
        for key in keys:
            console.print(f"{what:9} {escape(key)}", highlight=False)


@flags.command("list")
@json_option
def flags_list(as_json: bool) -> None:
    """The stored flags."""
    stored = run(_with_flags(lambda s: s.list(), create=False))
    rows = [flag_summary(s) for s in stored]
    if as_json:
        emit_json(rows)
        return
    table = Table()
    # The key whole, however narrow the terminal: the other columns wrap instead.
    widest = max((len(row["key"]) for row in rows), default=4)
    table.add_column("flag", no_wrap=True, min_width=widest)
    for title in ("state", "type", "default", "variants", "rules", "rollout", "version"):
        table.add_column(title)
    for row in rows:
        rollout = row["rollout"]
        table.add_row(
            escape(row["key"]),
            "on" if row["enabled"] else "[yellow]off[/yellow]",
            row["type"],
            escape(row["default_variant"]),
            escape(", ".join(row["variants"])),
            str(row["rules"]),
            escape(", ".join(f"{k} {v:g}%" for k, v in rollout.items())) if rollout else "",
            str(row["version"]),
        )
    console.print(table)


@flags.command("show")
@click.argument("key")
@json_option
def flags_show(key: str, as_json: bool) -> None:
    """One flag, as stored (exits 1 when there is none)."""
    stored = run(_with_flags(lambda s: s.get(key), create=False))
    if as_json:
        emit_json({**flag_summary(stored), "definition": stored.flag.definition()})
        return
    import yaml

    state = "enabled" if stored.flag.enabled else "disabled"
    console.print(
        f"[bold]{escape(key)}[/bold] ({state}, version {stored.version}, "
        f"revision {stored.revision})",
        highlight=False,
    )
    text = yaml.safe_dump(stored.flag.definition(), sort_keys=False, allow_unicode=True)
    console.print(text, markup=False, highlight=False)


@flags.command("set")
@click.argument("key")
@click.option("--description", default=None, help="What the flag is for.")
@click.option(
    "--variant",
    "variants",
    multiple=True,
    metavar="NAME=VALUE",
    help="Add or replace a variant (repeatable). VALUE is JSON when it parses (true, 25, "
    '{"a":1}), else text.',
)
@click.option("--default", "default_variant", default=None, metavar="NAME", help="Default variant.")
@click.option(
    "--percent",
    "percents",
    multiple=True,
    metavar="NAME=PERCENT",
    help="Roll out by percentage (repeatable, 0 to 100 in 0.01 steps): everyone the earlier "
    "rules leave is split so; the default variant takes the rest. Replaces the flag's last "
    "rule when that is already such a split, else is added after its rules.",
)
@click.option("--clear-targeting", is_flag=True, help="Remove every targeting rule first.")
@click.option("--enable/--disable", "enabled", default=None, help="Turn the flag on or off.")
@json_option
def flags_set(
    key: str,
    description: str | None,
    variants: tuple[str, ...],
    default_variant: str | None,
    percents: tuple[str, ...],
    clear_targeting: bool,
    enabled: bool | None,
    as_json: bool,
) -> None:
    """Create flag KEY or change it. A new flag needs --variant (at least one) and
    --default. Exits 2 when the result is not a valid flag.

    \b
    hybridmesh flags set new-checkout --variant on=true --variant off=false \\
        --default off --percent on=25
    """
    given_variants = {name: _json_or_text(value) for name, value in _pairs(variants, "--variant")}
    shares = [(name, _percent(value)) for name, value in _pairs(percents, "--percent")]

    change = flag_change(
        key,
        variants=given_variants,
        default_variant=default_variant,
        description=description,
        enabled=enabled,
        shares=shares,
        clear_targeting=clear_targeting,
    )

    try:
        stored = run(_with_flags(lambda s: s.update(key, change, source="cli")))
    except ValidationError as invalid:
        _problems(invalid.problems)
        raise SystemExit(2) from None
    if as_json:
        emit_json({**flag_summary(stored), "definition": stored.flag.definition()})
        return
    summary = flag_summary(stored)
    rollout = summary["rollout"]
    state = "enabled" if summary["enabled"] else "disabled"
    line = f"{escape(key)}: {state}, default {escape(summary['default_variant'])}"
    if rollout:
        line += ", rollout " + ", ".join(f"{escape(k)} {v:g}%" for k, v in rollout.items())
    console.print(f"{line} (version {stored.version})", highlight=False)


def _percent(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        value = Decimal("nan")
    if not value.is_finite() or not 0 <= value <= 100 or value != round(value, 2):
        raise click.BadParameter(
            f"{text!r}: a percent is 0 to 100, in steps of 0.01", param_hint="--percent"
        )
    return value


@flags.command("evaluate")
@click.argument("key")
@click.option(
    "--context",
    "-c",
    "context",
    multiple=True,
    metavar="NAME=VALUE",
    help="A context attribute (repeatable). VALUE is JSON when it parses (30, true), else text.",
)
@click.option("--targeting-key", default=None, help=f"Who is evaluated (the {TARGETING_KEY}).")
@click.option(
    "--default",
    "default",
    default=None,
    metavar="VALUE",
    help="What an error serves (JSON when it parses); its type must be the flag's.",
)
@json_option
def flags_evaluate(
    key: str,
    context: tuple[str, ...],
    targeting_key: str | None,
    default: str | None,
    as_json: bool,
) -> None:
    """What flag KEY serves in a context, and why. Exits 1 when there is no such flag."""
    from hybridmesh.flags.client import FlagClient

    attributes = {name: _json_or_text(value) for name, value in _pairs(context, "--context")}
    if targeting_key is not None:
        if not targeting_key:
            raise click.BadParameter("must not be empty", param_hint="--targeting-key")
        attributes[TARGETING_KEY] = targeting_key
    stored = run(_with_flags(lambda s: s.get(key), create=False))
    client = FlagClient.from_flags([stored.flag])
    found = client.evaluate(key, attributes, None if default is None else _json_or_text(default))
    if as_json:
        emit_json(evaluation_dict(found))
    else:
        _print_evaluation(found)
    if found.error_code is not None and found.error_code != "TARGETING_KEY_MISSING":
        raise SystemExit(2)  # the default given is of another type than the flag's


def _print_evaluation(found: Evaluation) -> None:
    from hybridmesh.core.serialization import dumps

    why = found.reason if found.error_code is None else f"{found.reason}: {found.error_code}"
    variant = f"variant {found.variant}, " if found.variant is not None else ""
    console.print(
        f"{escape(found.flag_key)} = {escape(dumps(found.value))} ({escape(variant)}{why})",
        highlight=False,
        soft_wrap=True,
    )
    if found.error_message:
        err_console.print(found.error_message, style="yellow", markup=False, highlight=False)


@flags.command("delete")
@click.argument("key")
@json_option
def flags_delete(key: str, as_json: bool) -> None:
    """Delete flag KEY (exits 1 when there is none). Code asking for it gets its default."""
    deleted = run(_with_flags(lambda s: s.delete(key)))
    if as_json:
        emit_json({"flag": key, "deleted": deleted})
    if not deleted:
        err_console.print(f"error: no flag {key!r}", highlight=False, markup=False)
        raise SystemExit(1)
    if not as_json:
        console.print(f"deleted {escape(key)}", highlight=False)


__all__ = ["flags"]
