"""The one rule for the names people give things: services, sagas, workflows, their steps,
consumer groups and batch targets.

A name travels far: it is a primary key and an index entry in SQLite and PostgreSQL (whose
B-tree entries hold at most about 2,700 bytes), one token of a NATS subject and part of a
JetStream consumer name (no dots, spaces or wildcards), Backstage's ``metadata.name`` (at
most 63 characters), a Prometheus label, a part of a file name in the batch exchange folder
and of a URL. The rule is a DNS label (RFC 1123), which every one of them accepts:

    1 to 63 characters: lower-case letters a-z, digits 0-9 and '-'; it starts with a
    letter and does not end with '-'.

Every place that takes a name checks it with :func:`check_name` (or the :data:`Name` type in
pydantic models), so the message always states the whole rule and says what broke it.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator

#: The longest name: Backstage's limit for ``metadata.name``, and a DNS label's.
MAX_NAME_LENGTH = 63

#: The rule, as every message about a bad name states it.
NAME_RULE = (
    f"1 to {MAX_NAME_LENGTH} characters: lower-case letters a-z, digits 0-9 and '-', "
    "starting with a letter and not ending with '-'"
)

_NAME = re.compile(rf"[a-z](?:[a-z0-9-]{{0,{MAX_NAME_LENGTH - 2}}}[a-z0-9])?")
_ALLOWED = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-")
_SHOWN = 40  # characters of a bad name quoted in a message, so it stays one short line


def is_name(value: str) -> bool:
    """Whether ``value`` follows the name rule."""
    return _NAME.fullmatch(value) is not None


def name_problem(value: str) -> str | None:
    """Why ``value`` is not a name (a whole sentence that states the rule), or None."""
    if is_name(value):
        return None
    return f"{quoted(value)} is not a valid name: {_reason(value)}; a name is {NAME_RULE}"


def check_name(value: str) -> str:
    """``value`` when it is a name; else ``ValueError`` saying why and stating the rule."""
    problem = name_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


#: A ``str`` field of a pydantic model that must be a name.
Name = Annotated[str, AfterValidator(check_name)]


#: A serverless function's name, which is looser than a name (it may hold '_' and '.', as
#: function names on the usual platforms do): 1 to 128 lower-case letters, digits, '-', '_'
#: and '.', starting with a letter or a digit.
FUNCTION_NAME = re.compile(r"[a-z0-9][a-z0-9\-_.]{0,127}")
FUNCTION_NAME_RULE = (
    "use 1 to 128 lower-case letters, digits, '-', '_' or '.', starting with a letter or digit"
)


def function_name_problem(value: str) -> str | None:
    """Why ``value`` cannot name a function (a sentence that states the rule), or None."""
    if isinstance(value, str) and FUNCTION_NAME.fullmatch(value):
        return None
    return f"function name {quoted(value) if isinstance(value, str) else repr(value)}: " + (
        FUNCTION_NAME_RULE
    )


def _reason(value: str) -> str:
    if not value:
        return "it is empty"
    if len(value) > MAX_NAME_LENGTH:
        return f"it has {len(value)} characters, more than {MAX_NAME_LENGTH}"
    bad = next((c for c in value if c not in _ALLOWED), None)
    if bad is not None:
        hint = " (use lower case)" if bad.isupper() else ""
        return f"it contains {bad!r}{hint}"
    if not value[0].isalpha():
        return f"it starts with {value[0]!r}, not a letter"
    return "it ends with '-'"


def quoted(value: str) -> str:
    """``value`` quoted for a message, cut short when it is long."""
    if len(value) <= _SHOWN:
        return repr(value)
    return f"{value[:_SHOWN]!r}…"


__all__ = [
    "FUNCTION_NAME",
    "FUNCTION_NAME_RULE",
    "MAX_NAME_LENGTH",
    "NAME_RULE",
    "Name",
    "check_name",
    "function_name_problem",
    "is_name",
    "name_problem",
    "quoted",
]
