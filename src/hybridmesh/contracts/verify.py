"""Verifying committed Pact V4 contracts against running providers.

HTTP interactions (``Synchronous/HTTP``) are replayed against the provider by pact-python's
``Verifier`` (the Pact FFI, offline: no broker). Its per-interaction results are turned into
:class:`InteractionResult` rows whose mismatches name the field path, so a renamed field
reads ``$.user_id: missing`` rather than a wall of text.

Message interactions (``Asynchronous/Messages``) are CloudEvents. They are checked here, not
by the FFI: the verifier is handed the events the producer really published (as
``hybridmesh events tail --json`` prints them), takes the latest of the interaction's type
from that producer, and applies the interaction's V4 matching rules to its data.

A provider is checked for reachability with a short timeout first, so that a provider that
is down fails at once with its name and URL instead of after the FFI's request timeouts.
When a provider answers ``/_pact/provider-states`` (any status but 404), the FFI posts each
interaction's provider state there before replaying it.

The contract files are read by :mod:`~hybridmesh.contracts.pact`, the one model of a Pact
file, so a malformed file is refused here as everywhere else, naming its file, line and
field.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from hybridmesh.contracts.pact import (
    HTTP_INTERACTION,
    MESSAGE_INTERACTION,
    HttpInteraction,
    Matcher,
    MessageInteraction,
    Pact,
    RuleGroup,
    read_pacts,
)
from hybridmesh.core.errors import Problem, ValidationError

#: Where a provider sets up a named provider state, when it offers to.
STATE_PATH = "/_pact/provider-states"
#: Seconds the reachability check waits for a provider's first answer.
REACH_TIMEOUT = 2.0
#: Milliseconds the FFI waits for each replayed request.
REQUEST_TIMEOUT_MS = 5000


@dataclass(frozen=True)
class Mismatch:
    """One difference between what a consumer expects and what the provider did."""

    path: str
    message: str
    expected: Any = None
    actual: Any = None

    def __str__(self) -> str:
        text = f"{self.path}: {self.message}"
        if self.expected is not None or self.actual is not None:
            text += f" (expected {_short(self.expected)}, got {_short(self.actual)})"
        return text


@dataclass
class InteractionResult:
    consumer: str
    provider: str
    description: str
    kind: str
    ok: bool
    mismatches: list[Mismatch] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "consumer": self.consumer,
            "provider": self.provider,
            "interaction": self.description,
            "kind": self.kind,
            "ok": self.ok,
            "mismatches": [
                {"path": m.path, "message": m.message, "expected": m.expected, "actual": m.actual}
                for m in self.mismatches
            ],
        }


class ProviderUnreachableError(Exception):
    """The provider did not answer the reachability check."""


# --- the interactions verified --------------------------------------------------------------


def http_interactions(pact: Pact) -> list[HttpInteraction]:
    """The interactions of ``pact`` that pact-python's verifier replays."""
    return [i for i in pact.interactions if isinstance(i, HttpInteraction)]


def message_interactions(pact: Pact) -> list[MessageInteraction]:
    """The interactions of ``pact`` that are matched against published events."""
    return [i for i in pact.interactions if isinstance(i, MessageInteraction)]


def read_contract_folder(folder: Path) -> list[Pact]:
    """The pacts in ``folder``; unlike :func:`read_pacts`, a folder that is not there is bad
    input here, since verifying nothing would pass for verifying everything."""
    if not folder.is_dir():
        raise ValidationError(f"{folder}: no such folder of contracts")
    return read_pacts(folder)


# --- HTTP: pact-python's verifier ----------------------------------------------------------


async def ensure_reachable(provider: str, url: str, wait: float = REACH_TIMEOUT) -> None:
    """Raise :class:`ProviderUnreachableError` unless ``url`` answers within ``wait`` s."""
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=wait)) as http,
            http.get(url, allow_redirects=False),
        ):
            return
    except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as error:
        reason = type(error).__name__ if isinstance(error, TimeoutError) else str(error)
        raise ProviderUnreachableError(
            f"provider {provider} at {url} is unreachable ({reason or 'no answer'})"
        ) from None


async def offers_states(url: str) -> bool:
    """Whether the provider has a provider-state set-up endpoint (it is not a 404)."""
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=REACH_TIMEOUT)) as http,
            http.get(url.rstrip("/") + STATE_PATH) as resp,
        ):
            return resp.status != 404
    except (aiohttp.ClientError, TimeoutError, OSError):
        return False


async def verify_http(
    provider: str, url: str, contracts: Sequence[Pact]
) -> list[InteractionResult]:
    """Replay every HTTP interaction of ``contracts`` against ``url`` with pact-python."""
    wanted = [c for c in contracts if c.provider == provider and http_interactions(c)]
    if not wanted:
        return []
    await ensure_reachable(provider, url)
    state_url = url.rstrip("/") + STATE_PATH if await offers_states(url) else None
    with tempfile.TemporaryDirectory(prefix="hybridmesh-pact-") as tmp:
        for n, contract in enumerate(wanted):
            # Only the HTTP interactions: the messages are matched here, not by the FFI.
            only_http = Pact(
                contract.consumer,
                contract.provider,
                [*http_interactions(contract)],
                contract.metadata,
            )
            (Path(tmp) / f"{n}.json").write_text(json.dumps(only_http.to_json()), encoding="utf-8")
        results = await asyncio.to_thread(_run_verifier, provider, url, Path(tmp), state_url)
    return [
        _http_result(provider, contract, interaction, results)
        for contract in wanted
        for interaction in http_interactions(contract)
    ]


def _run_verifier(
    provider: str, url: str, folder: Path, state_url: str | None
) -> list[dict[str, Any]]:
    os.environ.setdefault("PACT_DO_NOT_TRACK", "true")  # verifying stays offline
    from pact import Verifier  # the FFI loads only when a verification runs

    host = urlsplit(url).hostname
    verifier = (
        Verifier(provider, host=host).add_transport(url=url).set_request_timeout(REQUEST_TIMEOUT_MS)
    )
    for path in sorted(folder.glob("*.json")):
        verifier.add_source(path)
    if state_url is not None:
        verifier.state_handler(state_url, body=True)
    # A failure raises; the results below say which interactions failed and why.
    with _quiet_stdout(), suppress(RuntimeError):
        verifier.verify()
    found: list[dict[str, Any]] = verifier.results.get("interactionResults", [])
    return found


@contextmanager
def _quiet_stdout() -> Iterator[None]:
    """The FFI prints its own report on file descriptor 1; this command prints its own
    (and ``--json`` must stay one document), so that report goes to /dev/null."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def _http_result(
    provider: str,
    contract: Pact,
    interaction: HttpInteraction,
    results: list[dict[str, Any]],
) -> InteractionResult:
    row = next(
        (
            r
            for r in results
            if r.get("consumer") == contract.consumer
            and r.get("description") == interaction.description
        ),
        None,
    )
    result = InteractionResult(
        contract.consumer, provider, interaction.description, HTTP_INTERACTION, False
    )
    if row is None:
        result.mismatches.append(Mismatch("$", "the verifier did not replay this interaction"))
    elif row.get("result") == "OK":
        result.ok = True
    else:
        result.mismatches.extend(_mismatches(row.get("mismatch") or {}))
    return result


def _mismatches(found: Mapping[str, Any]) -> list[Mismatch]:
    """The FFI's mismatches, each with the field path it concerns."""
    if found.get("type") == "error":
        return [Mismatch("$", str(found.get("message", "the request failed")))]
    out = []
    for m in found.get("mismatches", []):
        kind = m.get("type")
        if kind == "StatusMismatch":
            out.append(Mismatch("status", "wrong status", m.get("expected"), m.get("actual")))
        elif kind == "HeaderMismatch":
            out.append(Mismatch(f"header {m.get('key')}", str(m.get("mismatch", "differs"))))
        else:
            out.extend(_body_mismatches(m))
    return out


_MISSING = re.compile(r"missing the following keys: (.+)$")


def _body_mismatches(m: Mapping[str, Any]) -> list[Mismatch]:
    path = str(m.get("path") or "$")
    message = str(m.get("mismatch") or m.get("type") or "differs")
    missing = _MISSING.search(message)
    if missing:  # one row per missing field, each named by its path
        return [
            Mismatch(f"{path}.{key.strip()}", "missing from the provider's answer")
            for key in missing.group(1).split(",")
        ]
    return [Mismatch(path, message, _json_or(m.get("expected")), _json_or(m.get("actual")))]


def _json_or(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


# --- messages: V4 matching rules on published CloudEvents -----------------------------------


def verify_messages(
    provider: str, contracts: Sequence[Pact], events: Sequence[Mapping[str, Any]]
) -> list[InteractionResult]:
    """Check each message interaction of ``provider`` against the latest published event of
    its type (CloudEvents as dicts); a type never published fails."""
    out = []
    for contract in contracts:
        if contract.provider != provider:
            continue
        for interaction in message_interactions(contract):
            result = InteractionResult(
                contract.consumer, provider, interaction.description, MESSAGE_INTERACTION, False
            )
            # A message whose metadata names no CloudEvent type is named by its description.
            event_type = interaction.event_type or interaction.description
            event = _latest(events, event_type, provider)
            if event is None:
                result.mismatches.append(
                    Mismatch("$", f"no {event_type} event from {provider} was published")
                )
            else:
                rules = interaction.matching_rules.get("body", {})
                expected = interaction.contents.content if interaction.contents else None
                result.mismatches = match(expected, event.get("data"), rules)
                result.ok = not result.mismatches
            out.append(result)
    return out


def _latest(
    events: Sequence[Mapping[str, Any]], event_type: str, provider: str
) -> Mapping[str, Any] | None:
    found = [
        event
        for event in events
        if event.get("type") == event_type
        and str(event.get("source", "")).strip("/").split("/")[0] == provider
    ]
    return found[-1] if found else None


def match(
    expected: Any, actual: Any, rules: Mapping[str, RuleGroup], path: str = "$"
) -> list[Mismatch]:
    """Where ``actual`` breaks ``expected`` under V4 body ``rules`` (JSONPath → rule group);
    extra keys in ``actual`` are allowed, as Pact allows them in bodies."""
    group = _rules_at(rules, path)
    matchers = group.matchers if group is not None else ()
    if matchers:
        found = [m for rule in matchers if (m := _apply(rule, expected, actual, path))]
        if group is not None and group.combine == "OR" and len(found) < len(matchers):
            found = []  # in an OR group, one matcher that holds is enough
        if found or not isinstance(expected, dict | list):
            return found[:1]
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [Mismatch(path, "expected an object", expected, actual)]
        out = []
        for key, value in expected.items():
            if key not in actual:
                out.append(Mismatch(f"{path}.{key}", "missing from the provider's message"))
            else:
                out.extend(match(value, actual[key], rules, f"{path}.{key}"))
        return out
    if isinstance(expected, list):
        if not isinstance(actual, list):
            return [Mismatch(path, "expected a list", expected, actual)]
        if matchers:  # min/max type: each element like the first expected one
            template = expected[0] if expected else None
            return [
                m
                for i, item in enumerate(actual)
                for m in match(template, item, rules, f"{path}[{i}]")
            ]
        if len(actual) != len(expected):
            return [Mismatch(path, "wrong number of items", len(expected), len(actual))]
        return [
            m
            for i, pair in enumerate(zip(expected, actual, strict=True))
            for m in match(*pair, rules, f"{path}[{i}]")
        ]
    if expected != actual:
        return [Mismatch(path, "differs", expected, actual)]
    return []


def _rules_at(rules: Mapping[str, RuleGroup], path: str) -> RuleGroup | None:
    generic = re.sub(r"\[\d+\]", "[*]", path)
    for key in (path, generic):
        if key in rules:
            return rules[key]
    return None


_TYPES: dict[str, tuple[type, ...]] = {
    "integer": (int,),
    "decimal": (float,),
    "number": (int, float),
    "boolean": (bool,),
}


def _apply(matcher: Matcher, expected: Any, actual: Any, path: str) -> Mismatch | None:
    kind, rule = matcher.match, matcher.options
    if kind == "type":
        same = type(expected) is type(actual) or (
            isinstance(expected, int | float) and isinstance(actual, int | float)
        )
        if not same:
            return Mismatch(path, "wrong type", type(expected).__name__, type(actual).__name__)
        n = len(actual) if isinstance(actual, list) else None
        if n is not None and "min" in rule and n < int(rule["min"]):
            return Mismatch(path, f"fewer than {rule['min']} items", rule["min"], n)
        if n is not None and "max" in rule and n > int(rule["max"]):
            return Mismatch(path, f"more than {rule['max']} items", rule["max"], n)
        return None
    if kind == "regex":
        if not isinstance(actual, str) or not re.fullmatch(str(rule["regex"]), actual):
            return Mismatch(path, f"does not match /{rule['regex']}/", expected, actual)
        return None
    if kind == "include":
        if not isinstance(actual, str) or str(rule["value"]) not in actual:
            return Mismatch(path, f"does not include {rule['value']!r}", expected, actual)
        return None
    if kind in _TYPES:
        wanted = _TYPES[str(kind)]
        if (isinstance(actual, bool) and bool not in wanted) or not isinstance(actual, wanted):
            return Mismatch(
                path, f"not {'an' if kind == 'integer' else 'a'} {kind}", expected, actual
            )
        return None
    if kind in ("datetime", "timestamp", "date", "time"):
        return (
            None if isinstance(actual, str) else Mismatch(path, f"not a {kind}", expected, actual)
        )
    if expected != actual:  # "equality", and rules this reader does not know
        return Mismatch(path, "differs", expected, actual)
    return None


def read_events(path: Path) -> list[dict[str, Any]]:
    """Published CloudEvents, one JSON object a line (``hybridmesh events tail --json``)."""
    events = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            event = json.loads(line)
        except json.JSONDecodeError as bad:
            raise ValidationError([Problem(bad.msg, file=str(path), line=n)]) from None
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            raise ValidationError([Problem("not a CloudEvent", file=str(path), line=n)])
        events.append(event)
    return events


def providers_of(contracts: Iterable[Pact]) -> list[str]:
    return sorted({c.provider for c in contracts})


@dataclass
class ProviderReport:
    """One provider's verification: its interactions' results, or why none could run."""

    provider: str
    url: str | None
    results: list[InteractionResult] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and all(r.ok for r in self.results)

    def to_dict(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "url": self.url,
            "ok": self.ok,
            "error": self.error,
            "interactions": [r.to_dict() for r in self.results],
        }


async def verify_provider(
    provider: str,
    url: str | None,
    contracts: Sequence[Pact],
    events: Sequence[Mapping[str, Any]] | None = None,
) -> ProviderReport:
    """Verify every interaction whose provider is ``provider``: HTTP ones against ``url``,
    message ones against ``events`` (skipped when no events were given)."""
    report = ProviderReport(provider, url)
    if url is not None:
        try:
            report.results.extend(await verify_http(provider, url, contracts))
        except ProviderUnreachableError as down:
            report.error = str(down)
    if events is not None:
        report.results.extend(verify_messages(provider, contracts, events))
    return report


__all__ = [
    "InteractionResult",
    "Mismatch",
    "ProviderReport",
    "ProviderUnreachableError",
    "ensure_reachable",
    "http_interactions",
    "match",
    "message_interactions",
    "providers_of",
    "read_contract_folder",
    "read_events",
    "verify_http",
    "verify_messages",
    "verify_provider",
]
