"""The bounds of every number users write, as constrained pydantic types.

Numbers come from definitions (timeouts, retries, backoffs, deadlines), service
definitions (resilience settings), batch targets, settings and CLI options. A value the code
cannot act on — ``.inf``, ``.nan``, a timeout of 10**23 ms, more attempts than anyone
waits for — is refused where it is read, naming its field, instead of failing later in
arithmetic, in JSON (64-bit integers only, no infinities) or in the database. The bounds
are generous:

- one attempt's timeout: 1 ms to one day (86,400,000 ms), :data:`TimeoutMs`;
- a backoff: 0 to one day, :data:`DelayMs`;
- a deadline (an execution, all attempts of a step, an event completion): 1 ms to 365
  days, :data:`DeadlineMs`;
- attempts of a step: 1 to 100, :data:`Attempts`; a backoff multiplier: 1 to 100,
  :data:`Multiplier`;
- a definition's version: 1 to 2**31 - 1, as the catalog's database column holds,
  :data:`Version`;
- durations in seconds (resilience settings, CLI options): above 0 (:data:`Seconds`) or
  from 0 (:data:`Delay`) to one day; retries after the first attempt: 0 to 99
  (:data:`Retries`);
- counts (calls in a window, bulkhead slots, a burst, records of a batch run): 1 to
  1,000,000 (:data:`Count`); a rate limit: above 0 to 1,000,000 calls a second
  (:data:`Rate`); a share of calls: above 0 to 1 (:data:`Ratio`);
- a TCP port: 0 (any free one) to 65535 (:data:`Port`).

Integers are strict where a file states them (definitions: ``3``, not ``"3"`` or ``3.0``);
the service definitions' resilience block keeps its lax reading. Out-of-range values raise
a pydantic error whose message is the house's (``must be at most 86400000 ms (one day)``);
:func:`describe` words any pydantic error that way.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import AfterValidator, StrictFloat, StrictInt
from pydantic_core import ErrorDetails, PydanticCustomError

#: One day, in milliseconds: the longest single attempt or backoff.
DAY_MS = 86_400_000
#: The longest deadline: an execution, all attempts of a step, an event completion.
MAX_DEADLINE_MS = 365 * DAY_MS
#: The most attempts a step (or retries + 1 a call) may make.
MAX_ATTEMPTS = 100
#: The largest backoff multiplier.
MAX_MULTIPLIER = 100.0
#: The largest definition version (the catalog stores versions as a database INTEGER).
MAX_VERSION = 2**31 - 1
#: One day, in seconds: the longest duration a service's resilience settings take.
DAY_SECONDS = 86_400.0
#: The largest count: calls in a window, slots of a bulkhead, records of a batch run.
MAX_COUNT = 1_000_000
#: The fastest rate limit, in calls per second.
MAX_RATE = 1_000_000.0


@dataclass(frozen=True, slots=True)
class Bound:
    """An inclusive range of numbers (``low`` itself excluded when ``low_open``), and what
    to say of a number outside it. Called on a value, it returns the value or raises the
    pydantic error pydantic reports at the value's field."""

    low: float
    high: float
    too_low: str
    too_high: str
    low_open: bool = False

    def problem(self, value: float) -> str | None:
        """What is wrong with ``value`` (None: nothing)."""
        if isinstance(value, float) and not math.isfinite(value):
            return "must be a finite number"
        if value < self.low or (self.low_open and value == self.low):
            return self.too_low
        if value > self.high:
            return self.too_high
        return None

    def __call__(self, value: Any) -> Any:
        problem = self.problem(value)
        if problem is not None:
            raise PydanticCustomError("out_of_range", problem)
        return value


def _ms(value: int) -> str:
    days = value // DAY_MS
    return f"{value} ms ({'one day' if days == 1 else f'{days} days'})"


TIMEOUT_MS = Bound(
    1, DAY_MS, "must be a positive number of milliseconds", f"must be at most {_ms(DAY_MS)}"
)
DELAY_MS = Bound(0, DAY_MS, "must not be negative", f"must be at most {_ms(DAY_MS)}")
DEADLINE_MS = Bound(
    1,
    MAX_DEADLINE_MS,
    "must be a positive number of milliseconds",
    f"must be at most {_ms(MAX_DEADLINE_MS)}",
)
ATTEMPTS = Bound(1, MAX_ATTEMPTS, "must be at least 1", f"must be at most {MAX_ATTEMPTS}")
MULTIPLIER = Bound(1, MAX_MULTIPLIER, "must be at least 1", f"must be at most {MAX_MULTIPLIER:g}")
VERSION = Bound(1, MAX_VERSION, "must be at least 1", f"must be at most {MAX_VERSION}")
SECONDS = Bound(
    0,
    DAY_SECONDS,
    "must be more than 0 seconds",
    f"must be at most {DAY_SECONDS:g} seconds (one day)",
    low_open=True,
)
DELAY = Bound(
    0, DAY_SECONDS, "must not be negative", f"must be at most {DAY_SECONDS:g} seconds (one day)"
)
RETRIES = Bound(0, MAX_ATTEMPTS - 1, "must not be negative", f"must be at most {MAX_ATTEMPTS - 1}")
COUNT = Bound(1, MAX_COUNT, "must be at least 1", f"must be at most {MAX_COUNT}")
RATE = Bound(
    0, MAX_RATE, "must be more than 0", f"must be at most {MAX_RATE:g} per second", low_open=True
)
RATIO = Bound(0, 1, "must be more than 0", "must be at most 1", low_open=True)
PORT = Bound(0, 65_535, "must not be negative", "must be at most 65535")

# Strict: definitions are read without coercion (a "3" or a 3.0 is not a whole number).
TimeoutMs = Annotated[StrictInt, AfterValidator(TIMEOUT_MS)]
DelayMs = Annotated[StrictInt, AfterValidator(DELAY_MS)]
DeadlineMs = Annotated[StrictInt, AfterValidator(DEADLINE_MS)]
Attempts = Annotated[StrictInt, AfterValidator(ATTEMPTS)]
# A whole number is a number here: ``multiplier: 2`` reads as 2.0.
Multiplier = Annotated[StrictFloat, AfterValidator(MULTIPLIER)]
Version = Annotated[StrictInt, AfterValidator(VERSION)]

# Lax, as the models that use them read the rest of their fields.
Seconds = Annotated[float, AfterValidator(SECONDS)]
Delay = Annotated[float, AfterValidator(DELAY)]
Retries = Annotated[int, AfterValidator(RETRIES)]
Count = Annotated[int, AfterValidator(COUNT)]
Rate = Annotated[float, AfterValidator(RATE)]
Ratio = Annotated[float, AfterValidator(RATIO)]
Port = Annotated[int, AfterValidator(PORT)]


#: What a value of the wrong type must be, by pydantic's error type.
_MUST_BE = {
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "int_type": "must be a whole number",
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "finite_number": "must be a finite number",
    "string_type": "must be a string",
    "tuple_type": "must be a list",
    "list_type": "must be a list",
    "dict_type": "must be a mapping",
    "mapping_type": "must be a mapping",
    "dataclass_type": "must be a mapping",
    "missing": "required field is missing",
}


#: The longest regular expression users may write (a route's match, a flag's condition).
MAX_PATTERN = 1024


def check_pattern(value: str) -> str:
    """``value`` when it is a regular expression of at most :data:`MAX_PATTERN`
    characters; :class:`ValueError` (for pydantic) otherwise."""
    if len(value) > MAX_PATTERN:
        raise ValueError(f"a pattern may have at most {MAX_PATTERN} characters")
    try:
        re.compile(value)
    except re.error as error:
        raise ValueError(f"is not a regular expression: {error}") from None
    return value


def describe(error: ErrorDetails) -> str:
    """One pydantic error as the house words it: ``must be a whole number``, or the
    message a validator gave (without pydantic's ``Value error,`` prefix)."""
    if error["loc"] and error["loc"][-1] == "[key]" and error["type"].endswith("_type"):
        return f"a key must be a string, not {error['input']!r}: quote it"
    return _MUST_BE.get(error["type"]) or str(error["msg"]).removeprefix("Value error, ")


def location(error: ErrorDetails) -> tuple[int | str, ...]:
    """Where a pydantic error is, as the data nests: its ``loc``, where a mapping's key
    that is wrong is the place itself (as text, as YAML locations name keys), without the
    ``[key]`` pydantic adds after it."""
    loc = error["loc"]
    return tuple(
        str(part) if loc[index + 1 : index + 2] == ("[key]",) else part
        for index, part in enumerate(loc)
        if part != "[key]"
    )


def dotted(error: ErrorDetails) -> str:
    """:func:`location` as a field suffix: ``.retry.multiplier``, ``.items[0]``."""
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in location(error))


__all__ = [
    "ATTEMPTS",
    "COUNT",
    "DAY_MS",
    "DAY_SECONDS",
    "DEADLINE_MS",
    "DELAY",
    "DELAY_MS",
    "MAX_ATTEMPTS",
    "MAX_COUNT",
    "MAX_DEADLINE_MS",
    "MAX_MULTIPLIER",
    "MAX_PATTERN",
    "MAX_RATE",
    "MAX_VERSION",
    "MULTIPLIER",
    "PORT",
    "RATE",
    "RATIO",
    "RETRIES",
    "SECONDS",
    "TIMEOUT_MS",
    "VERSION",
    "Attempts",
    "Bound",
    "Count",
    "DeadlineMs",
    "Delay",
    "DelayMs",
    "Multiplier",
    "Port",
    "Rate",
    "Ratio",
    "Retries",
    "Seconds",
    "TimeoutMs",
    "Version",
    "check_pattern",
    "describe",
    "dotted",
    "location",
]
