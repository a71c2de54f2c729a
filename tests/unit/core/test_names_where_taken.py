"""Every place that takes a name from its user applies the one name rule: consumer groups,
idempotent consumers, function trigger groups and batch targets (services, sagas, workflows
and steps are covered with their loaders)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hybridmesh.batch import BatchTarget
from hybridmesh.batch.ledger import check_record
from hybridmesh.core.errors import ValidationError
from hybridmesh.core.names import NAME_RULE, is_name
from hybridmesh.events import CloudEvent, EventBus, IdempotentConsumer
from hybridmesh.events.backends.memory import MemoryEventBackend
from hybridmesh.functions.triggers import trigger_group
from hybridmesh.store import open_store


async def _ignore(event: CloudEvent) -> None:
    return None


@pytest.mark.parametrize("group", ["Mailers", "mail.ers", "g" * 64, "", "mailer-"])
def test_a_consumer_group_follows_the_name_rule(group: str) -> None:
    bus = EventBus(MemoryEventBackend())
    with pytest.raises(ValidationError) as raised:
        bus.subscribe("user.*", _ignore, group=group)
    (problem,) = raised.value.problems
    assert problem.field == "group"
    assert problem.message.startswith("consumer group ")
    assert NAME_RULE in problem.message
    assert bus.subscriptions == {}
    assert bus.subscribe("user.*", _ignore, group="g" * 63).spec.name == "g" * 63


async def test_an_idempotent_consumer_name_follows_the_name_rule() -> None:
    async with await open_store("sqlite:///:memory:") as store:
        with pytest.raises(ValidationError, match=r"consumer 'Ledger' is not a valid name"):
            IdempotentConsumer(store, "Ledger")
        assert IdempotentConsumer(store, "ledger").name == "ledger"


@settings(max_examples=200, deadline=None)
@given(function=st.text(min_size=1, max_size=200), pattern=st.text(min_size=1, max_size=200))
def test_the_default_trigger_group_is_always_a_name_and_the_same_in_every_process(
    function: str, pattern: str
) -> None:
    group = trigger_group(function, pattern)
    assert is_name(group)
    assert group.startswith("function-")
    assert trigger_group(function, pattern) == group
    assert trigger_group(function + "x", pattern) != group


@pytest.mark.parametrize("target", ["ERP", "legacy.erp", "e" * 64])
def test_a_batch_target_is_a_service_name(target: str) -> None:
    with pytest.raises(ValidationError) as raised:
        BatchTarget(target)
    assert [p.field for p in raised.value.problems] == ["target"]
    assert NAME_RULE in raised.value.problems[0].message
    with pytest.raises(ValidationError) as raised:
        check_record(target, "orders", {}, None)
    assert [p.field for p in raised.value.problems] == ["target"]
    assert BatchTarget("e" * 63).target == "e" * 63
