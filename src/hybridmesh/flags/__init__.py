"""Feature flags for branch-by-abstraction migrations: stored, evaluated in process, live.

Flags live in the state store (SQLite, or PostgreSQL when scaled) and are written from
YAML files or the CLI (:mod:`hybridmesh.flags.store`). Each process holds every flag in a
:class:`FlagClient`, which evaluates without I/O and picks up a change made anywhere
within a second (:mod:`hybridmesh.flags.client`). A flag serves one of its variants by
ordered targeting rules on the evaluation context, and a fractional rule splits users by a
hash of their targeting key as flagd does (:mod:`hybridmesh.flags.evaluation`). OpenFeature
code uses :class:`hybridmesh.flags.provider.HybridmeshProvider`. See docs/flags.md.
"""

from hybridmesh.flags.client import FlagClient
from hybridmesh.flags.evaluation import Evaluation, compile_flag
from hybridmesh.flags.files import LoadedFlag, load_flags, parse_flags
from hybridmesh.flags.model import Condition, Flag, Rule, Split
from hybridmesh.flags.store import ApplyResult, FlagStore, StoredFlag

__all__ = [
    "ApplyResult",
    "Condition",
    "Evaluation",
    "Flag",
    "FlagClient",
    "FlagStore",
    "LoadedFlag",
    "Rule",
    "Split",
    "StoredFlag",
    "compile_flag",
    "load_flags",
    "parse_flags",
]
