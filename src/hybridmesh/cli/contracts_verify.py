"""``hybridmesh contracts verify`` and ``contracts check``: the committed Pact contracts
against running providers. Both exit 1 when an interaction fails and 2 on bad input."""

from __future__ import annotations

from pathlib import Path

import click
from rich.markup import escape

from hybridmesh.cli._common import console, emit_json, err_console, get_ctx, json_option, run
from hybridmesh.contracts.check import BROKEN, OK, CheckReport, check, registry_consumers
from hybridmesh.contracts.verify import (
    MESSAGE,
    Contract,
    ProviderReport,
    providers_of,
    read_contracts,
    read_events,
    verify_provider,
)
from hybridmesh.core.errors import ValidationError
from hybridmesh.registry import RegistryCatalog
from hybridmesh.registry.models import ServiceDefinition
from hybridmesh.store import open_ready_store

_dir_option = click.option(
    "--dir",
    "folder",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("contracts"),
    show_default=True,
    help="The folder of committed Pact V4 files.",
)
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


@click.command()
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
    contracts = read_contracts(folder)
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
        len(c.of_kind(MESSAGE)) for c in contracts if events is None and c.provider in providers
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
    contracts: list[Contract],
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


@click.command("check")
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
    contracts = read_contracts(folder)
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


__all__ = ["check_command", "verify"]
