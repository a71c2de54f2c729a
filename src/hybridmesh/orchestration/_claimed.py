"""What a worker makes of an execution it claimed: the :class:`Live` execution to drive, or,
when it can never run, its ending.

An execution can never run when the definition version it runs on cannot be read or
built (a version an older release stored that breaks today's rules, a stored body that is
no longer JSON, a version that is gone), or when its own stored state cannot be read or
does not fit that definition. Claiming it again would fail the same way at every lease, so
it ends ``failed`` at once, its reason naming the definition, the version and what is
wrong, and an item goes to the review queue in the same transaction, with what a person
needs to finish its work by hand: the input, and where each step stood.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from hybridmesh.core.errors import NotFoundError, Problem
from hybridmesh.core.serialization import loads
from hybridmesh.observability import get_logger
from hybridmesh.orchestration._driver import DriverContext, Live
from hybridmesh.orchestration._machine import ExecutionState, Machine, Record, Status
from hybridmesh.orchestration.catalog import DefinitionCatalog, UnrunnableDefinitionError
from hybridmesh.orchestration.plan import Kind, Plan
from hybridmesh.orchestration.recorders.base import Change, Save, history_rows

log = get_logger("hybridmesh.orchestration")

T = TypeVar("T")


class Unrunnable(Exception):
    """A claimed execution that can never run: ``reason`` says why in one line, naming its
    definition and version; ``problems`` lists each thing wrong."""

    def __init__(self, reason: str, problems: list[str]) -> None:
        super().__init__(reason)
        self.reason = reason
        self.problems = problems


def _what(row: dict[str, Any]) -> str:
    return f"{row['kind']} {row['name']!r} version {row['version']}"


def _listed(problem: Problem) -> str:
    return f"[{problem.field}] {problem.message}" if problem.field else problem.message


async def claimed_live(
    row: dict[str, Any], catalog: DefinitionCatalog, context: DriverContext
) -> Live:
    """The execution a claimed row holds, ready to drive. Raises :class:`Unrunnable` when
    it can never run, and anything else when it may run later (the store failed)."""
    try:
        kind = Kind(row["kind"])
    except ValueError:
        problem = f"{row['kind']!r} is neither a saga nor a workflow"
        raise Unrunnable(f"{_what(row)} cannot run: {problem}", [problem]) from None
    try:
        plan = await catalog.get(kind, row["name"], int(row["version"]))
    except UnrunnableDefinitionError as unreadable:
        raise Unrunnable(str(unreadable), [_listed(p) for p in unreadable.problems]) from None
    except NotFoundError as missing:
        raise Unrunnable(f"{_what(row)} cannot run: {missing}", [str(missing)]) from None
    # The row's own content, and what is built of it: neither reads better next time.
    state = _read(row, "state", _state_of)
    status = _read(row, "status", Status)
    data = _read(row, "input", loads)
    unfit = _unfit(plan, state)
    if unfit:
        raise Unrunnable(f"{_what(row)}: its stored state does not fit it: {unfit}", [unfit])
    try:
        machine = Machine(plan, status, state, attempts_of=context.runner.max_attempts)
    except Exception as error:
        problem = f"{type(error).__name__}: {error}"
        raise Unrunnable(f"{_what(row)} cannot run: {problem}", [problem]) from None
    return Live(
        row["id"],
        plan,
        data,
        machine,
        row["trace_context"],
        seq=int(row["history_seq"]),
        created=float(row["created_at"]),
        signals=bool(row["signals"]),
        recovered=True,
    )


def _read(row: dict[str, Any], column: str, reader: Callable[[Any], T]) -> T:
    """``reader`` applied to the row's ``column``; :class:`Unrunnable` when it fails."""
    try:
        return reader(row[column])
    except Exception as error:
        problem = f"{type(error).__name__}: {error}"
        raise Unrunnable(
            f"{_what(row)}: its stored {column} cannot be read: {problem}", [problem]
        ) from None


def _state_of(text: str) -> ExecutionState:
    return ExecutionState.from_dict(loads(text))


def _unfit(plan: Plan, state: ExecutionState) -> str | None:
    """What keeps ``state`` from being a state of ``plan``, if anything: the steps differ."""
    planned = [step.step_id for step in plan.steps]
    if sorted(planned) == sorted(state.steps):
        return None
    missing = sorted(set(planned) - set(state.steps))
    unknown = sorted(set(state.steps) - set(planned))
    parts = []
    if missing:
        parts.append(f"no state for step(s) {', '.join(missing)}")
    if unknown:
        parts.append(f"state for step(s) {', '.join(unknown)} it does not have")
    return "; ".join(parts)


async def end_unrunnable(
    context: DriverContext, row: dict[str, Any], unrunnable: Unrunnable
) -> None:
    """End the claimed execution ``row`` ``failed`` for ``unrunnable``: its ending record
    and event, and an item in the review queue, in one write, while this worker holds the
    lease. An execution that has ended already (claimed again for a signal that came as it
    ended) only has its signals consumed and is let go."""
    execution_id = row["id"]
    consumed = await _signals(context, row)
    if _status(row) in _ENDED:
        await _let_go(context, row, consumed)
        return
    now = context.now()
    reason = unrunnable.reason
    state = _state(row)
    if state is None:
        # What a view of the execution can read; the stored text goes to the review item.
        state = ExecutionState({})
    state.failure = reason
    ending = Record("execution.failed", data={"reason": reason})
    seq = int(row["history_seq"])
    save = Save(
        execution_id,
        Status.FAILED.value,
        state.to_json(),
        reason,
        seq + 1,
        now,
        now,
        True,
        None,
        context.worker_id,
    )
    change = Change(save, history_rows(execution_id, seq, [ending], now), consumed=consumed)
    event = None
    kind = _kind(row)
    if kind is not None:
        definition = (kind, str(row["name"]), int(row["version"]))
        event = context.writer.event(
            definition, execution_id, row["trace_context"], "failed", {"reason": reason}
        )
        if event is not None:
            event.attach(change)
    if context.review is not None:
        _, statements = context.review.filing(
            "workflow" if kind is Kind.WORKFLOW else "saga",
            reason,
            _review_payload(row, unrunnable),
            origin_ref=execution_id,
        )
        change.rows += statements
    if await context.writer.submit(change) is None:
        log.warning("execution %s: lease lost; another worker has it", execution_id)
        return
    if event is not None:
        context.writer.published(event)
    log.error("execution %s ended failed, for review: %s", execution_id, reason)


async def let_go(context: DriverContext, row: dict[str, Any], wake: float) -> None:
    """Release the claimed execution ``row`` as it is, due again at ``wake``."""
    await _let_go(context, row, [], wake)


async def _let_go(
    context: DriverContext, row: dict[str, Any], consumed: list[str], wake: float | None = None
) -> None:
    """Release ``row`` with its stored status, state and ending unchanged, consuming the
    signals ``consumed``; due at ``wake`` (None: when a signal comes)."""
    save = Save(
        row["id"],
        str(row["status"]),
        str(row["state"]),
        row["error"],
        int(row["history_seq"]),
        context.now(),
        row["ended_at"],
        True,
        wake,
        context.worker_id,
    )
    await context.writer.submit(Change(save, [], consumed=consumed))


async def _signals(context: DriverContext, row: dict[str, Any]) -> list[str]:
    """The ids of the signals waiting for ``row``: nothing applies them, ever."""
    if not row["signals"]:
        return []
    return [signal["id"] for signal in await context.recorder.signals(row["id"])]


_ENDED = frozenset(status for status in Status if status.terminal)


def _status(row: dict[str, Any]) -> Status | None:
    try:
        return Status(row["status"])
    except ValueError:
        return None


def _kind(row: dict[str, Any]) -> Kind | None:
    try:
        return Kind(row["kind"])
    except ValueError:
        return None


def _state(row: dict[str, Any]) -> ExecutionState | None:
    try:
        return _state_of(row["state"])
    except Exception:
        return None


def _review_payload(row: dict[str, Any], unrunnable: Unrunnable) -> dict[str, Any]:
    """What a person needs to finish the execution's work by hand: its input, and where
    each step stood (which ones completed, which compensations ran), or the stored state
    as it is when it cannot be read."""
    payload: dict[str, Any] = {
        "execution_id": row["id"],
        "kind": row["kind"],
        "definition": row["name"],
        "version": int(row["version"]),
        "status": row["status"],
        "problems": unrunnable.problems,
    }
    try:
        payload["input"] = loads(row["input"])
    except ValueError:
        payload["stored_input"] = str(row["input"])
    state = _state(row)
    if state is None:
        payload["stored_state"] = str(row["state"])
    else:
        if state.failure is not None:
            payload["failure"] = state.failure  # why it was compensating, say
        payload["steps"] = {
            step_id: {"status": s.status.value, "compensation": s.comp.value}
            for step_id, s in state.steps.items()
        }
    return payload


__all__ = ["Unrunnable", "claimed_live", "end_unrunnable", "let_go"]
