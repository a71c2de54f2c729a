"""Pact V4 contracts between services, recorded from the traffic hybridmesh carries.

:mod:`~hybridmesh.contracts.pact` reads and writes the files, :mod:`~.rules` says which
recorded values are generalised by matchers, :mod:`~.recorder` records the hybrid client's
and the gateway's HTTP exchanges and the events the bus hands to consumer groups, and
:mod:`~.diff` compares a recording with the committed files; :mod:`~.verify` checks
providers against them and :mod:`~.check` says which consumers a new version breaks. See
docs/contracts.md.
"""

from __future__ import annotations

from hybridmesh.contracts.diff import InteractionChange, diff_folders, diff_pacts
from hybridmesh.contracts.pact import (
    HTTP_INTERACTION,
    MESSAGE_INTERACTION,
    PACT_SPECIFICATION,
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
    dumps_pact,
    pact_file_name,
    parse_pact,
    path_regex,
    path_template,
    read_pact,
    read_pacts,
    write_pact,
)
from hybridmesh.contracts.recorder import ContractRecorder, recorder_from_settings
from hybridmesh.contracts.rules import FieldRules, load_field_rules

__all__ = [
    "HTTP_INTERACTION",
    "MESSAGE_INTERACTION",
    "PACT_SPECIFICATION",
    "Body",
    "ContractRecorder",
    "FieldRules",
    "HttpInteraction",
    "HttpRequest",
    "HttpResponse",
    "Interaction",
    "InteractionChange",
    "Matcher",
    "MatchingRules",
    "MessageInteraction",
    "Pact",
    "ProviderState",
    "RuleGroup",
    "diff_folders",
    "diff_pacts",
    "dumps_pact",
    "load_field_rules",
    "pact_file_name",
    "parse_pact",
    "path_regex",
    "path_template",
    "read_pact",
    "read_pacts",
    "recorder_from_settings",
    "write_pact",
]
