"""The flags of one process: all of them in memory, evaluated without I/O, kept current.

::

    flags = FlagClient(store)          # an upgraded Store (SQLite or PostgreSQL)
    await flags.start()                # loads every flag, then watches for changes
    if flags.boolean("new-checkout", {"targetingKey": user.id, "plan": user.plan}, False):
        ...
    await flags.close()

:meth:`FlagClient.start` loads every flag and compiles it
(:mod:`hybridmesh.flags.evaluation`); a background task then reads the store's flag
revision every :data:`POLL_SECONDS`, and on PostgreSQL also listens for
``NOTIFY hybridmesh_flags``, reloading (only the flags whose version moved) when the
revision changes, so a change made anywhere reaches every process within a second. A
reload replaces the whole table of flags in one assignment: an evaluation sees the old
table or the new, never half of each, from any thread. When the store is away the client
keeps serving what it has and says so in the log.

Evaluations never raise and never wait: an unknown flag gives the caller's default with
``FLAG_NOT_FOUND``, a default of another kind than the flag's values gives it back with
``TYPE_MISMATCH``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import Any, Self

from hybridmesh.flags.evaluation import (
    KIND_OF_TYPE,
    CompiledFlag,
    Evaluation,
    not_found,
    type_mismatch,
)
from hybridmesh.flags.model import Flag, Kind, kind_of
from hybridmesh.flags.store import CHANNEL, FlagStore, StoredFlag
from hybridmesh.observability import get_logger
from hybridmesh.store import Store

log = get_logger("hybridmesh.flags")

#: Seconds between reads of the revision (a change is seen within this, or at once on
#: PostgreSQL through LISTEN).
POLL_SECONDS = 0.5

_EMPTY: Mapping[str, Any] = {}

#: What a change listener is told: the keys of the flags created, changed or deleted.
ChangeListener = Callable[[frozenset[str]], None]


class FlagClient:
    """Every flag of a store, in memory; see the module's documentation."""

    def __init__(
        self, store: Store | FlagStore | None, *, poll_seconds: float = POLL_SECONDS
    ) -> None:
        self.flag_store = (
            store if isinstance(store, FlagStore) or store is None else FlagStore(store)
        )
        self.poll_seconds = poll_seconds
        self.revision = -1
        self._flags: dict[str, CompiledFlag] = {}
        self._versions: dict[str, int] = {}
        self._listeners: list[ChangeListener] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._listener: Any = None

    @classmethod
    def from_flags(cls, flags: Iterable[Flag]) -> FlagClient:
        """A client over fixed flags, with no store (tests, one-off evaluations)."""
        client = cls(None)
        client._flags = {flag.key: CompiledFlag(flag) for flag in flags}
        client.revision = 0
        return client

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """Whether the flags were loaded (:meth:`start` or :meth:`from_flags`)."""
        return self.revision >= 0

    async def start(self) -> Self:
        """Load every flag and start watching the store for changes."""
        if self.flag_store is None:
            return self
        await self.reload()
        await self._listen()
        self._task = asyncio.create_task(self._run(), name="flags:watch")
        return self

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._listener is not None:
            with contextlib.suppress(Exception):
                await self._listener.close()
            self._listener = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def on_change(self, listener: ChangeListener) -> Callable[[], None]:
        """Call ``listener`` with the keys that changed after each reload that changed
        some; returns what removes it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    async def reload(self) -> None:
        """Read the flags whose version moved since the last load, if the revision did."""
        assert self.flag_store is not None
        revision, rows = await self.flag_store.snapshot(self._versions)
        if revision == self.revision:
            return
        table: dict[str, CompiledFlag] = {}
        for key, row in rows.items():
            if isinstance(row, StoredFlag):
                table[key] = CompiledFlag(row.flag)
            else:  # unchanged: keep what was compiled
                table[key] = self._flags[key]
        versions = {
            key: row.version if isinstance(row, StoredFlag) else row for key, row in rows.items()
        }
        changed = frozenset(
            key
            for key in versions.keys() | self._versions.keys()
            if versions.get(key) != self._versions.get(key)
        )
        self._flags, self._versions, self.revision = table, versions, revision
        if changed:
            for listener in list(self._listeners):
                try:
                    listener(changed)
                except Exception:
                    log.exception("flags: a change listener failed")

    async def _listen(self) -> None:
        assert self.flag_store is not None
        store = self.flag_store.store
        if store.dialect != "postgresql":
            return
        import asyncpg

        try:
            self._listener = await asyncpg.connect(store.url)
            await self._listener.add_listener(CHANNEL, lambda *_: self._wake.set())
        except Exception as error:  # polling still finds every change
            log.warning("flags: cannot LISTEN for flag changes (%s); polling", error)
            self._listener = None

    async def _run(self) -> None:
        assert self.flag_store is not None
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_seconds)
            self._wake.clear()
            try:
                if await self.flag_store.revision() != self.revision:
                    await self.reload()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # the store is away: keep serving what we have
                log.warning("flags: reading flag changes failed: %s", error)

    # -- reading ---------------------------------------------------------------------------

    def flags(self) -> dict[str, Flag]:
        """The flags as loaded, by key."""
        return {key: compiled.flag for key, compiled in self._flags.items()}

    def evaluate(
        self,
        key: str,
        context: Mapping[str, Any] | None = None,
        default: Any = None,
        *,
        targeting_key: str | None = None,
    ) -> Evaluation:
        """Flag ``key`` in ``context`` (attribute -> value; the targeting key is
        ``targetingKey``, or ``targeting_key`` when given). ``default`` is what an error
        serves; when it is not None its kind (boolean, string, number, object) must be the
        flag's. Never raises, never waits."""
        flag = self._flags.get(key)
        if flag is None:
            return not_found(key, default)
        if default is not None:
            kind = KIND_OF_TYPE.get(default.__class__) or kind_of(default)
            if kind is not flag.kind and kind != flag.kind:
                return type_mismatch(flag, default)
        return flag.evaluate(_EMPTY if context is None else context, targeting_key)

    def evaluate_kind(
        self,
        key: str,
        kind: Kind,
        context: Mapping[str, Any] | None,
        default: Any,
        targeting_key: str | None = None,
    ) -> Evaluation:
        """:meth:`evaluate` for a flag that must serve ``kind`` whatever the default."""
        flag = self._flags.get(key)
        if flag is None:
            return not_found(key, default)
        if flag.kind != kind:
            return type_mismatch(flag, default, kind)
        return flag.evaluate(_EMPTY if context is None else context, targeting_key)

    def boolean(
        self,
        key: str,
        context: Mapping[str, Any] | None = None,
        default: bool = False,
        *,
        targeting_key: str | None = None,
    ) -> bool:
        """The boolean flag ``key``'s value (``default`` on any error)."""
        value = self.evaluate_kind(key, "boolean", context, default, targeting_key).value
        return bool(value)

    def string(
        self,
        key: str,
        context: Mapping[str, Any] | None = None,
        default: str = "",
        *,
        targeting_key: str | None = None,
    ) -> str:
        """The string flag ``key``'s value (``default`` on any error)."""
        return str(self.evaluate_kind(key, "string", context, default, targeting_key).value)

    def number(
        self,
        key: str,
        context: Mapping[str, Any] | None = None,
        default: float = 0,
        *,
        targeting_key: str | None = None,
    ) -> float:
        """The number flag ``key``'s value (``default`` on any error)."""
        value: float = self.evaluate_kind(key, "number", context, default, targeting_key).value
        return value

    def object(
        self,
        key: str,
        context: Mapping[str, Any] | None = None,
        default: Any = None,
        *,
        targeting_key: str | None = None,
    ) -> Any:
        """The object flag ``key``'s value, a copy of its own (``default`` on any error)."""
        return self.evaluate_kind(key, "object", context, default, targeting_key).value


__all__ = ["POLL_SECONDS", "ChangeListener", "FlagClient"]
