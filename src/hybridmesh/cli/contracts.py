"""``hybridmesh contracts``: Pact V4 contracts recorded from real traffic.

``record`` runs a command (a service, a worker, a test suite, a load script) with recording
on, for a while; ``list`` and ``show`` read a folder of contract files; ``diff`` compares a
new recording with the committed folder, for CI and for review; ``verify`` replays the
committed contracts against running providers and ``check`` says which consumers a new
version of a service breaks (both exit 1 when an interaction fails, 2 on bad input).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from hybridmesh.cli._common import console, emit_json, err_console, get_ctx, json_option, run
from hybridmesh.contracts.check import BROKEN, OK, CheckReport, check, registry_consumers
from hybridmesh.contracts.diff import ADDED, REMOVED, InteractionChange, diff_folders
from hybridmesh.contracts.pact import (
    HttpInteraction,
    MessageInteraction,
    Pact,
    pact_file_name,
    read_pact,
    read_pacts,
)
from hybridmesh.contracts.verify import (
    ProviderReport,
    message_interactions,
    providers_of,
    read_contract_folder,
    read_events,
    verify_provider,
)
from hybridmesh.core.errors import ValidationError
from hybridmesh.registry import RegistryCatalog
from hybridmesh.registry.models import ServiceDefinition
from hybridmesh.store import open_ready_store

#: The committed contracts, by default.
DEFAULT_DIR = "contracts"
#: Where ``record`` writes, by default: a recording is reviewed (``diff``) before it is
#: committed, so it does not go straight into the committed folder.
DEFAULT_RECORD_DIR = ".hybridmesh/contracts"
#: Seconds a recorded command gets to stop after SIGTERM before it is killed.
STOP_GRACE_SECONDS = 10.0

_dir_option = click.option(
    "--dir",
    "folder",
    type=click.Path(path_type=Path, file_okay=False),
    default=DEFAULT_DIR,
    show_default=True,
    help="Folder of contract files.",
)


@click.group()
def contracts() -> None:
    """Pact V4 contracts between services, recorded from the traffic the hybrid client,
    the gateway and the event bus carry (see docs/contracts.md)."""


# ------------------------------------------------------------------------------ list / show


def _counts(pact: Pact) -> tuple[int, int]:
    http = sum(isinstance(i, HttpInteraction) for i in pact.interactions)
    return http, len(pact.interactions) - http


def _name(pact: Pact) -> str:
    """The file's name as it is on disk (a file written by hand may be named otherwise
    than ``<consumer>-<provider>.json``)."""
    return pact.path.name if pact.path is not None else pact.file_name


@contracts.command("list")
@_dir_option
@json_option
def list_contracts(folder: Path, as_json: bool) -> None:
    """The contract files in a folder: consumer, provider and their interactions."""
    pacts = read_pacts(folder)
    if as_json:
        emit_json(
            [
                {
                    "file": _name(p),
                    "consumer": p.consumer,
                    "provider": p.provider,
                    "http": _counts(p)[0],
                    "messages": _counts(p)[1],
                    "interactions": [i.identity for i in p.interactions],
                }
                for p in pacts
            ]
        )
        return
    if not pacts:
        console.print(f"no contracts in {escape(str(folder))}", highlight=False, soft_wrap=True)
        return
    table = Table("file", "consumer", "provider", "http", "messages")
    for p in pacts:
        http, messages = _counts(p)
        table.add_row(_name(p), p.consumer, p.provider, str(http), str(messages))
    console.print(table)


@contracts.command("show")
@click.argument("names", nargs=-1, required=True, metavar="FILE | CONSUMER PROVIDER")
@_dir_option
@json_option
def show_contract(names: tuple[str, ...], folder: Path, as_json: bool) -> None:
    """One contract file's interactions: a file's path, or a consumer and a provider whose
    file is in --dir."""
    if len(names) == 1:
        path = Path(names[0])
    elif len(names) == 2:
        path = folder / pact_file_name(*names)
    else:
        raise click.UsageError("give a contract file, or a consumer and a provider")
    if not path.is_file():
        raise click.BadParameter(f"no contract file {str(path)!r}", param_hint="FILE")
    pact = read_pact(path)
    if as_json:
        emit_json(pact.to_json())
        return
    console.print(
        f"[bold]{escape(pact.consumer)}[/bold] -> [bold]{escape(pact.provider)}[/bold] "
        f"({escape(str(path))})",
        highlight=False,
        soft_wrap=True,
    )
    for interaction in pact.interactions:
        states = ", ".join(s.name for s in interaction.provider_states) or "(none named)"
        console.print(
            f"\n[bold]{escape(interaction.description)}[/bold]", highlight=False, soft_wrap=True
        )
        console.print(
            f"  identity: {escape(interaction.identity)}", highlight=False, soft_wrap=True
        )
        console.print(f"  provider states: {escape(states)}", highlight=False, soft_wrap=True)
        for line in _summary(interaction):
            console.print(f"  {escape(line)}", highlight=False, soft_wrap=True)


def _summary(interaction: HttpInteraction | MessageInteraction) -> list[str]:
    """What a person checks first: the request line, the status, the generalised fields."""
    lines: list[str] = []
    if isinstance(interaction, HttpInteraction):
        request, response = interaction.request, interaction.response
        query = "&".join(f"{k}={v}" for k, vs in request.query.items() for v in vs)
        lines.append(f"request: {request.method} {request.path}" + (f"?{query}" if query else ""))
        lines.append(f"response: {response.status}")
        rules = [("request", request.matching_rules), ("response", response.matching_rules)]
    else:
        lines.append(f"event type: {interaction.event_type or '-'}")
        rules = [("message", interaction.matching_rules)]
    for side, found in rules:
        for category, groups in found.items():
            for where, group in groups.items():
                matchers = ", ".join(m.match for m in group.matchers)
                lines.append(f"matcher: {side} {category} {where or ''} -> {matchers}".rstrip())
    return lines


# ------------------------------------------------------------------------------ diff


@contracts.command("diff")
@_dir_option
@click.option(
    "--new",
    "recorded",
    type=click.Path(path_type=Path, file_okay=False),
    default=DEFAULT_RECORD_DIR,
    show_default=True,
    help="Folder of the new recording.",
)
@json_option
def diff_contracts(folder: Path, recorded: Path, as_json: bool) -> None:
    """Compare a new recording (--new) with the committed contracts (--dir): the
    interactions added, removed and changed, with the fields that differ.

    Exit status: 0 when they are the same, 1 when they differ, 2 when a file is malformed.
    """
    if not recorded.is_dir():
        raise click.BadParameter(f"no folder {str(recorded)!r}", param_hint="--new")
    changes = diff_folders(folder, recorded)
    if as_json:
        emit_json({"same": not changes, "changes": [c.to_json() for c in changes]})
    elif not changes:
        console.print(
            f"no differences between {escape(str(folder))} and {escape(str(recorded))}",
            highlight=False,
            soft_wrap=True,
        )
    else:
        _print_changes(changes)
    if changes:
        raise SystemExit(1)


def _print_changes(changes: list[InteractionChange]) -> None:
    current = None
    for change in changes:
        if change.file != current:
            current = change.file
            console.print(
                f"[bold]{escape(change.file)}[/bold] "
                f"({escape(change.consumer)} -> {escape(change.provider)})",
                highlight=False,
                soft_wrap=True,
            )
        mark = {ADDED: "+", REMOVED: "-"}.get(change.change, "~")
        line = f"  {mark} {change.interaction}: {change.change}"
        if change.fields:
            line += ": " + ", ".join(change.fields)
        console.print(escape(line), highlight=False, soft_wrap=True)
    added = sum(c.change == ADDED for c in changes)
    removed = sum(c.change == REMOVED for c in changes)
    console.print(
        f"{added} added, {removed} removed, {len(changes) - added - removed} changed",
        highlight=False,
        soft_wrap=True,
    )


# ------------------------------------------------------------------------------ verify / check


_events_option = click.option(
    "--events",
    "events_file",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    help="CloudEvents the producers published, one JSON object a line "
    "(`hybridmesh events tail --json`): message contracts are checked against them.",
)


def _base_urls(pairs: tuple[str, ...]) -> dict[str, str]:
    urls = {}
    for pair in pairs:
        name, sep, url = pair.partition("=")
        if not sep or not name or not url.startswith(("http://", "https://")):
            raise click.BadParameter(
                f"{pair!r} is not NAME=http(s)://HOST:PORT", param_hint="--base-url"
            )
        urls[name] = url
    return urls


async def _registry() -> list[ServiceDefinition]:
    async with await open_ready_store(get_ctx().database_url, create=False) as store:
        return await RegistryCatalog(store).list()


@contracts.command()
@_dir_option
@click.option("--provider", default=None, help="Verify only this provider's contracts.")
@click.option(
    "--base-url",
    "base_urls",
    multiple=True,
    metavar="NAME=URL",
    help="Where a provider runs (repeatable); otherwise its base_url in the registry.",
)
@_events_option
@json_option
def verify(
    folder: Path,
    provider: str | None,
    base_urls: tuple[str, ...],
    events_file: Path | None,
    as_json: bool,
) -> None:
    """Replay the contracts under --dir against their running providers (HTTP, with
    pact-python's verifier) and match message contracts against published events."""
    urls = _base_urls(base_urls)
    contracts = read_contract_folder(folder)
    events = read_events(events_file) if events_file is not None else None
    providers = providers_of(contracts)
    if provider is not None:
        if provider not in providers:
            raise ValidationError(f"no contract under {folder} has provider {provider!r}")
        providers = [provider]
    missing = [p for p in providers if p not in urls]
    if missing:
        known = {d.name: d.base_url for d in run(_registry())}
        unknown = [p for p in missing if p not in known]
        if unknown:
            raise ValidationError(
                f"unknown provider {', '.join(unknown)}: give --base-url NAME=URL or load "
                "it into the registry"
            )
        urls.update({p: known[p] for p in missing})
    reports = run(_verify_all(providers, urls, contracts, events))
    unchecked = sum(
        len(message_interactions(c))
        for c in contracts
        if events is None and c.provider in providers
    )
    if unchecked:
        err_console.print(
            f"{unchecked} message interaction(s) not checked: give --events FILE with the "
            "events the producers published",
            highlight=False,
            soft_wrap=True,
        )
    if as_json:
        emit_json({"ok": all(r.ok for r in reports), "providers": [r.to_dict() for r in reports]})
    else:
        for report in reports:
            _print_provider(report)
    if not all(r.ok for r in reports):
        raise SystemExit(1)


async def _verify_all(
    providers: list[str],
    urls: dict[str, str],
    contracts: list[Pact],
    events: list[dict[str, object]] | None,
) -> list[ProviderReport]:
    return [await verify_provider(p, urls[p], contracts, events) for p in providers]


def _print_provider(report: ProviderReport) -> None:
    console.print(f"[bold]{escape(report.provider)}[/bold] at {escape(report.url or '-')}")
    if report.error:
        console.print(
            f"  [red]FAILED[/red] {escape(report.error)}", highlight=False, soft_wrap=True
        )
    for r in report.results:
        mark = "[green]OK    [/green]" if r.ok else "[red]FAILED[/red]"
        console.print(
            f"  {mark} {escape(r.consumer)}: {escape(r.description)} ({r.kind})", highlight=False
        )
        for m in r.mismatches:
            console.print(f"         {escape(str(m))}", highlight=False, soft_wrap=True)


@contracts.command("check")
@click.argument("service")
@_dir_option
@click.option(
    "--base-url", "url", default=None, help="Where the new version runs (default: registry)."
)
@_events_option
@json_option
def check_command(
    service: str, folder: Path, url: str | None, events_file: Path | None, as_json: bool
) -> None:
    """Which consumers' committed contracts the new version of SERVICE breaks; exit 1 when
    one is broken."""
    if url is not None and not url.startswith(("http://", "https://")):
        raise click.BadParameter(f"{url!r} is not an http(s) URL", param_hint="--base-url")
    contracts = read_contract_folder(folder)
    definitions = run(_registry())
    known = {d.name: d.base_url for d in definitions}
    if not any(c.provider == service for c in contracts) and service not in known:
        raise ValidationError(f"unknown service {service!r}: no contract or registry entry")
    url = url or known.get(service)
    events = read_events(events_file) if events_file is not None else None
    report = run(check(service, url, contracts, registry_consumers(service, definitions), events))
    if as_json:
        emit_json(report.to_dict())
    else:
        _print_check(report)
    if not report.ok:
        raise SystemExit(1)


def _print_check(report: CheckReport) -> None:
    console.print(f"[bold]{escape(report.service)}[/bold] at {escape(report.url or '-')}")
    if report.error:
        console.print(f"  [red]{escape(report.error)}[/red]", highlight=False, soft_wrap=True)
    colours = {OK: "green", BROKEN: "red"}
    for verdict in report.consumers:
        colour = colours.get(verdict.status, "yellow")
        console.print(
            f"  [{colour}]{verdict.status:<9}[/{colour}] {escape(verdict.consumer)}",
            highlight=False,
            soft_wrap=True,
        )
        for failure in verdict.failures:
            console.print(
                f"            {escape(failure.description)}", highlight=False, soft_wrap=True
            )
            for m in failure.mismatches:
                console.print(f"              {escape(str(m))}", highlight=False, soft_wrap=True)


# ------------------------------------------------------------------------------ record


def _duration(_: click.Context, param: click.Parameter, value: str) -> float:
    from hybridmesh.gateway.stats import parse_duration

    try:
        seconds = parse_duration(value)
    except ValueError as error:
        raise click.BadParameter(str(error), param=param) from None
    if seconds > 86_400:
        raise click.BadParameter("at most one day (24h)", param=param)
    return seconds


@contracts.command(
    "record", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False}
)
@click.option(
    "--service",
    "services",
    multiple=True,
    help="Record only interactions with this service as consumer or provider (repeatable; "
    "default: every interaction).",
)
@click.option(
    "--duration",
    default="60s",
    show_default=True,
    callback=_duration,
    help="How long to record (90, 30s, 5m, 1h); the command is then stopped with SIGTERM.",
)
@click.option(
    "--dir",
    "folder",
    type=click.Path(path_type=Path, file_okay=False),
    default=DEFAULT_RECORD_DIR,
    show_default=True,
    help="Folder the contract files are recorded into.",
)
@click.option(
    "--rules",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    help="YAML file of field rules (default: contracts.yaml in --dir, if there).",
)
@click.option(
    "--fresh",
    is_flag=True,
    help="Remove the contract files already in --dir first, so the folder holds only "
    "what this recording sees.",
)
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def record(
    services: tuple[str, ...],
    duration: float,
    folder: Path,
    rules: Path | None,
    fresh: bool,
    command: tuple[str, ...],
) -> None:
    """Run COMMAND with contract recording on, for --duration.

    COMMAND is any hybridmesh process, or a program that uses the library: its hybrid
    client, its gateway and its bus record what they carry into --dir
    (HYBRIDMESH_CONTRACTS_RECORD is set for it). Write it after `--`:

        hybridmesh contracts record --service order-service --duration 60s -- \\
            hybridmesh worker

    The command ends on its own or is stopped with SIGTERM when the time is up (SIGKILL
    10 s later). Exit status: 0 when it ended or was stopped, 1 when it failed on its own,
    2 for bad options.
    """
    if fresh and folder.is_dir():
        for old in folder.glob("*.json"):
            old.unlink()
    folder.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "HYBRIDMESH_CONTRACTS_RECORD": str(folder)}
    env.pop("HYBRIDMESH_CONTRACTS_RECORD_SERVICES", None)
    if services:
        env["HYBRIDMESH_CONTRACTS_RECORD_SERVICES"] = ",".join(services)
    if rules is not None:
        env["HYBRIDMESH_CONTRACTS_RULES"] = str(rules)
    try:
        child = subprocess.Popen(list(command), env=env)
    except OSError as error:
        raise click.BadParameter(
            f"cannot run {command[0]!r}: {error}", param_hint="COMMAND"
        ) from None
    code, stopped = _run_for(child, duration)
    pacts = read_pacts(folder)
    total = sum(len(p.interactions) for p in pacts)
    err_console.print(
        f"recorded {total} interaction(s) in {len(pacts)} file(s) in {escape(str(folder))}",
        highlight=False,
        soft_wrap=True,
    )
    if not stopped and code != 0:
        err_console.print(f"[red]error:[/red] the command exited with status {code}")
        raise SystemExit(1)


def _run_for(child: subprocess.Popen[Any], seconds: float) -> tuple[int, bool]:
    """Wait for ``child`` up to ``seconds``, then stop it; its exit code, and whether this
    stopped it. Interrupted (Ctrl-C), the child is stopped the same way."""
    try:
        return child.wait(timeout=seconds), False
    except subprocess.TimeoutExpired:
        pass
    except KeyboardInterrupt:
        pass
    child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    try:
        return child.wait(timeout=max(deadline - time.monotonic(), 0.1)), True
    except subprocess.TimeoutExpired:
        child.kill()
        return child.wait(), True


__all__ = ["contracts"]
