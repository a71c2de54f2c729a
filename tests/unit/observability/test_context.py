from __future__ import annotations

import asyncio

import pytest

from hybridmesh.observability import (
    RequestContext,
    bind_context,
    current_context,
    current_request_id,
)


def test_nothing_bound_gives_an_empty_context() -> None:
    assert current_request_id() is None
    assert current_context() == RequestContext()
    assert dict(current_context().extra) == {}


def test_bind_context_sets_fields_and_restores_them_on_exit() -> None:
    with bind_context(request_id="r-1", source_service="orders") as bound:
        assert bound == current_context()
        assert current_request_id() == "r-1"
        assert current_context().source_service == "orders"
    assert current_request_id() is None
    assert current_context().source_service is None


def test_nested_bindings_inherit_unset_fields_and_restore_in_order() -> None:
    with bind_context(request_id="outer", source_service="orders", tenant="acme"):
        with bind_context(request_id="inner", step="charge"):
            context = current_context()
            assert context.request_id == "inner"
            assert context.source_service == "orders"
            assert dict(context.extra) == {"tenant": "acme", "step": "charge"}
        context = current_context()
        assert context.request_id == "outer"
        assert dict(context.extra) == {"tenant": "acme"}
    assert current_context() == RequestContext()


def test_binding_is_restored_when_the_block_raises() -> None:
    with pytest.raises(RuntimeError), bind_context(request_id="doomed"):
        raise RuntimeError("boom")
    assert current_request_id() is None


def test_extra_fields_cannot_be_changed_through_the_context() -> None:
    with bind_context(tenant="acme"):
        extra = current_context().extra
        with pytest.raises(TypeError):
            extra["tenant"] = "other"  # type: ignore[index]


async def test_tasks_inherit_the_context_they_are_created_in() -> None:
    async def read() -> str | None:
        await asyncio.sleep(0)
        return current_request_id()

    with bind_context(request_id="parent"):
        task = asyncio.create_task(read())
    # The binding has ended, but the task copied the context at creation.
    assert current_request_id() is None
    assert await task == "parent"


async def test_concurrent_tasks_keep_their_own_bindings() -> None:
    async def handle(request_id: str) -> list[str | None]:
        seen: list[str | None] = []
        with bind_context(request_id=request_id):
            for _ in range(3):
                await asyncio.sleep(0)
                seen.append(current_request_id())
        seen.append(current_request_id())
        return seen

    with bind_context(request_id="parent"):
        first, second = await asyncio.gather(handle("a"), handle("b"))
        assert current_request_id() == "parent"
    assert first == ["a", "a", "a", "parent"]
    assert second == ["b", "b", "b", "parent"]
