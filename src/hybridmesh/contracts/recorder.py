"""Recording contracts from real traffic.

The hybrid client and the gateway hand each HTTP exchange they carry to a
:class:`ContractRecorder`; the event bus hands it each event a consumer group handles. The
recorder keeps one interaction per kind of exchange, so a minute of traffic gives a handful
of interactions, not thousands:

- HTTP: per consumer and provider, one per method, path (ids generalised: ``/users/{id}``)
  and status;
- events: per consumer group and producing service, one per event type.

The first exchange of each kind is written at once into ``<consumer>-<provider>.json`` in
the recording folder, its volatile values generalised by :mod:`hybridmesh.contracts.rules`;
later ones of the same kind cost a set lookup. Writing at once, rather than at exit, means a
process that is stopped keeps what it recorded. Several processes may record into the same
folder: each file is read, merged and replaced under a lock.

Recording is turned on by ``HYBRIDMESH_CONTRACTS_RECORD=DIR`` (see
:func:`recorder_from_settings`), or by ``hybridmesh contracts record``, which runs a command
with that setting.
"""

from __future__ import annotations

import base64
import fcntl
import os
import re
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import orjson

from hybridmesh.contracts.pact import (
    Body,
    HttpInteraction,
    HttpRequest,
    HttpResponse,
    Interaction,
    Matcher,
    MatchingRules,
    MessageInteraction,
    Pact,
    ProviderState,
    RuleGroup,
    pact_file_name,
    path_regex,
    path_template,
    read_pact,
    write_pact,
)
from hybridmesh.contracts.rules import RULES_FILE, FieldRules, datetime_format, load_field_rules
from hybridmesh.core.errors import InvalidSettingError, Problem, ValidationError
from hybridmesh.core.settings import env_name
from hybridmesh.observability import get_logger

if TYPE_CHECKING:
    from hybridmesh.core.settings import Settings
    from hybridmesh.events.envelope import CloudEvent

log = get_logger("hybridmesh.contracts")

#: The request header that names the provider state an interaction needs.
PROVIDER_STATE_HEADER = "x-provider-state"
#: Request headers kept in a contract (lower case); the others (credentials, trace and
#: request ids, hop-by-hop headers) are not part of what a provider promises.
KEPT_REQUEST_HEADERS = ("content-type", "accept", "idempotency-key")
#: Response headers kept in a contract.
KEPT_RESPONSE_HEADERS = ("content-type",)
#: Header values that change with every call: kept, matched by type.
_VOLATILE_HEADERS = frozenset({"idempotency-key"})
#: CloudEvent attributes that change with every event.
_VOLATILE_ATTRIBUTES = frozenset({"id", "traceparent", "tracestate"})
#: Kinds of interaction recorded per consumer and provider, at most.
MAX_INTERACTIONS_PER_PAIR = 200
_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def party_name(text: str) -> str:
    """A consumer's or provider's name fit for a file name: ``/user-service`` (a CloudEvent
    source) → ``user-service``."""
    cleaned = _NAME_UNSAFE.sub("-", text.strip().strip("/")).strip("-")
    return cleaned or "unknown"


class ContractRecorder:
    """Writes the interactions it is shown into Pact V4 files in ``folder``.

    ``rules``: the user's field rules (by default ``folder/contracts.yaml``, if it exists).
    ``services``: when given, only interactions with one of them as consumer or provider
    are kept.
    """

    def __init__(
        self,
        folder: Path | str,
        *,
        rules: FieldRules | None = None,
        services: frozenset[str] | None = None,
    ) -> None:
        self.folder = Path(folder)
        self.rules = rules if rules is not None else load_field_rules(self.folder / RULES_FILE)
        self.services = services or None
        self._seen: set[tuple[str, ...]] = set()
        #: Kinds seen per (consumer, provider): capped, see MAX_INTERACTIONS_PER_PAIR.
        self._per_pair: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()
        #: How many interactions this recorder added to files.
        self.written = 0

    # -- HTTP

    def record_http(
        self,
        *,
        consumer: str,
        provider: str,
        method: str,
        path: str,
        query: Mapping[str, str] | str | None,
        request_headers: Mapping[str, str],
        request_body: Any,
        status: int,
        response_headers: Mapping[str, str],
        response_body: Any,
    ) -> bool:
        """Record one HTTP exchange; True when it was a new kind of interaction.

        Bodies are parsed JSON values, or ``bytes`` as they went over the wire (read as JSON
        when their content type says so); None for no body.
        """
        method = method.upper()
        template = path_template(path)
        key = ("http", consumer, provider, method, template, str(status))
        if key in self._seen or not self._new_kind(key, consumer, provider):
            return False
        request_headers = _lower(request_headers)
        response_headers = _lower(response_headers)
        services = (consumer, provider)
        request = HttpRequest(method, path, _query(query))
        request.body = _body(request_body, request_headers.get("content-type"))
        if request.body is None:  # a content type without a content says nothing
            request_headers.pop("content-type", None)
        request.headers, header_rules = _kept(request_headers, KEPT_REQUEST_HEADERS)
        rules: MatchingRules = {}
        if template != path:
            rules["path"] = {"": RuleGroup((Matcher("regex", {"regex": path_regex(template)}),))}
        if header_rules:
            rules["header"] = header_rules
        if request.body is not None and not request.body.encoded:
            body_rules = self.rules.generalise(request.body.content, services)
            if body_rules:
                rules["body"] = body_rules
        request.matching_rules = rules
        response = HttpResponse(status)
        response.headers, _ = _kept(response_headers, KEPT_RESPONSE_HEADERS)
        response.body = _body(response_body, response_headers.get("content-type"))
        if response.body is not None and not response.body.encoded:
            body_rules = self.rules.generalise(response.body.content, services)
            if body_rules:
                response.matching_rules = {"body": body_rules}
        state = request_headers.get(PROVIDER_STATE_HEADER, "").strip()
        interaction = HttpInteraction(
            f"{method} {template} returns {status}",
            request,
            response,
            [ProviderState(state)] if state else [],
        )
        return self._add(consumer, provider, interaction)

    # -- events

    def record_event(self, group: str, event: CloudEvent) -> bool:
        """Record an event that consumer group ``group`` handles; True when its type is new
        for the group and the producer."""
        provider = party_name(event.source)
        key = ("event", group, provider, event.type)
        if key in self._seen or not self._new_kind(key, group, provider):
            return False
        attributes = event.to_dict()
        attributes.pop("data", None)
        attributes.pop("data_base64", None)
        content_type = event.datacontenttype or "application/json"
        contents = _body(event.data, content_type) if event.data is not None else None
        if contents is not None and contents.content_type is None:
            contents.content_type = content_type
        rules: MatchingRules = {}
        if contents is not None and not contents.encoded:
            body_rules = self.rules.generalise(contents.content, (group, provider))
            if body_rules:
                rules["body"] = body_rules
        metadata_rules = _attribute_rules(attributes)
        if metadata_rules:
            rules["metadata"] = metadata_rules
        interaction = MessageInteraction(
            f"a {event.type} event from {provider}",
            contents,
            attributes,
            rules,
        )
        return self._add(group, provider, interaction)

    # -- files

    def _new_kind(self, key: tuple[str, ...], consumer: str, provider: str) -> bool:
        """Whether to record a kind of exchange not seen yet: one of the services asked
        for, and not past the pair's cap (paths whose variable parts are not ids, such as
        ``/users/by-email/ada@example.com``, would otherwise add one interaction per
        value)."""
        self._seen.add(key)
        if self.services is not None and not (
            consumer in self.services or provider in self.services
        ):
            return False
        count = self._per_pair.get((consumer, provider), 0)
        if count >= MAX_INTERACTIONS_PER_PAIR:
            if count == MAX_INTERACTIONS_PER_PAIR:
                log.warning(
                    "contracts: %s -> %s has %d kinds of interaction; recording no more",
                    consumer,
                    provider,
                    count,
                )
                self._per_pair[(consumer, provider)] = count + 1
            return False
        self._per_pair[(consumer, provider)] = count + 1
        return True

    def _add(self, consumer: str, provider: str, interaction: Interaction) -> bool:
        """Merge ``interaction`` into the pair's file, unless the file has one of its kind
        already (recorded by another process, or committed and edited by a person)."""
        consumer, provider = party_name(consumer), party_name(provider)
        try:
            with self._locked():
                path = self.folder / pact_file_name(consumer, provider)
                pact = read_pact(path) if path.exists() else Pact(consumer, provider)
                if pact.find(interaction.identity) is not None:
                    return False
                pact.interactions.append(interaction)
                pact.interactions.sort(key=lambda i: i.identity)
                pact.metadata.setdefault("hybridmesh", {"recorded": True})
                write_pact(pact, self.folder)
        except ValidationError as refused:
            log.error("contracts: not recording into a malformed file: %s", refused.reason)
            return False
        except OSError as error:
            log.error("contracts: cannot write into %s: %s", self.folder, error)
            return False
        self.written += 1
        log.info("contracts: recorded %s (%s -> %s)", interaction.identity, consumer, provider)
        return True

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """This process's threads one at a time, and other processes through a lock on
        the folder itself: a lock file inside it would be one more file for Pact tools,
        which read every file of a folder they are given."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with self._lock:
            handle = os.open(self.folder, os.O_RDONLY)
            try:
                fcntl.flock(handle, fcntl.LOCK_EX)
                yield
            finally:
                os.close(handle)  # closing releases the lock


def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def _query(query: Mapping[str, str] | str | None) -> dict[str, list[str]]:
    if not query:
        return {}
    if isinstance(query, str):
        return {k: v for k, v in parse_qs(query, keep_blank_values=True).items()}
    return {k: [str(v)] for k, v in query.items()}


def _kept(
    headers: Mapping[str, str], names: tuple[str, ...]
) -> tuple[dict[str, list[str]], dict[str, RuleGroup]]:
    """The headers a contract keeps, spelled as HTTP usually writes them, and a ``type``
    rule for each whose value changes with every call."""
    kept: dict[str, list[str]] = {}
    rules: dict[str, RuleGroup] = {}
    for name in names:
        value = headers.get(name)
        if value is None:
            continue
        spelled = "-".join(part.capitalize() for part in name.split("-"))
        kept[spelled] = [value]
        if name in _VOLATILE_HEADERS:
            rules[spelled] = RuleGroup((Matcher("type"),))
    return kept, rules


def _body(value: Any, content_type: str | None) -> Body | None:
    """A body for the contract: JSON as its value, text as text, other bytes base64."""
    if value is None or value == b"":
        return None
    is_json = content_type is None or "json" in content_type.lower()
    if isinstance(value, bytes | bytearray):
        raw = bytes(value)
        if is_json:
            try:
                return Body(orjson.loads(raw), content_type or "application/json")
            except orjson.JSONDecodeError:
                pass
        try:
            return Body(raw.decode("utf-8"), content_type or "text/plain")
        except UnicodeDecodeError:
            return Body(
                base64.b64encode(raw).decode("ascii"),
                content_type or "application/octet-stream",
                "base64",
            )
    if is_json:
        return Body(value, content_type or "application/json")
    return Body(str(value), content_type)


def _attribute_rules(attributes: Mapping[str, Any]) -> dict[str, RuleGroup]:
    """Matchers for the CloudEvent attributes that change with every event."""
    rules: dict[str, RuleGroup] = {}
    for name, value in attributes.items():
        if name in _VOLATILE_ATTRIBUTES:
            rules[name] = RuleGroup((Matcher("type"),))
        elif name == "time" and isinstance(value, str):
            fmt = datetime_format(value)
            if fmt is not None:
                rules[name] = RuleGroup((Matcher("datetime", {"format": fmt}),))
    return rules


# ------------------------------------------------------------------------------ settings

_RECORDERS: dict[tuple[str, frozenset[str], str], ContractRecorder] = {}
_RECORDERS_LOCK = threading.Lock()


def recorder_from_settings(settings: Settings) -> ContractRecorder | None:
    """The process's recorder for ``HYBRIDMESH_CONTRACTS_RECORD``, or None when recording
    is off. One recorder per folder in a process: the client, the gateway and the bus of
    one process share it, and what one recorded the others need not look at again."""
    folder = settings.contracts_record
    if not folder:
        return None
    services = frozenset(
        s.strip() for s in (settings.contracts_record_services or "").split(",") if s.strip()
    )
    rules_file = settings.contracts_rules
    if rules_file and not Path(rules_file).is_file():
        raise InvalidSettingError(
            [Problem(f"no rules file {rules_file!r}", field=env_name("contracts_rules"))]
        )
    key = (str(Path(folder).resolve()), services, rules_file or "")
    with _RECORDERS_LOCK:
        found = _RECORDERS.get(key)
        if found is None:
            rules = load_field_rules(rules_file) if rules_file else None
            found = ContractRecorder(folder, rules=rules, services=services or None)
            _RECORDERS[key] = found
        return found


__all__ = [
    "KEPT_REQUEST_HEADERS",
    "KEPT_RESPONSE_HEADERS",
    "MAX_INTERACTIONS_PER_PAIR",
    "PROVIDER_STATE_HEADER",
    "ContractRecorder",
    "party_name",
    "recorder_from_settings",
]
