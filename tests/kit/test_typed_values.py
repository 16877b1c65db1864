"""Arguments validated in the caller (pydantic), and annotated values (models, dataclasses,
datetimes, decimals, UUIDs, enums) kept as their types through the JSON store."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from enum import Enum
from uuid import UUID, uuid4

import pytest
from celery import Celery
from pydantic import BaseModel, ValidationError

from celery_durable import Durable, pydantic_args_validator
from celery_durable.testing import DurableTestKit

app = Celery("kit_typed", set_as_current=False)
durable = Durable(app)
seen: list[object] = []


class Tier(Enum):
    GOLD = "gold"
    BASIC = "basic"


class Order(BaseModel):
    order_id: UUID
    total: Decimal
    placed: datetime
    tier: Tier


@dataclass
class Receipt:
    order_id: UUID
    charged: Decimal
    at: datetime


@durable.step()
def charge(order: Order) -> Receipt:
    seen.append(order)
    return Receipt(order.order_id, order.total, order.placed)


@durable.workflow(validate_args=True)
def checkout(order: Order, quantity: int) -> Receipt:
    seen.append(order)
    receipt = charge(order)
    seen.append(receipt)
    return receipt


@durable.workflow()
@pydantic_args_validator
def count_items(count: int, label: str = "items") -> str:
    return f"{count} {label}"


@pytest.fixture
def kit(durable_testkit: Callable[..., DurableTestKit]) -> DurableTestKit:
    seen.clear()
    return durable_testkit(durable)


def an_order() -> Order:
    return Order(order_id=uuid4(), total=Decimal("19.90"), placed=datetime.now(UTC), tier=Tier.GOLD)


def test_models_and_dataclasses_round_trip_as_themselves(kit: DurableTestKit) -> None:
    order = an_order()
    handle = durable.start_workflow(checkout, order, 2)
    receipt = handle.get_result()
    assert receipt == Receipt(order.order_id, order.total, order.placed)
    assert seen[0] == order and isinstance(seen[0], Order)  # on the worker, a model again
    assert isinstance(durable.retrieve_workflow(handle.workflow_id).get_result(), Receipt)
    status = durable.get_workflow_status(handle.workflow_id)
    assert status is not None and status.input["args"][0]["tier"] == "gold"  # stored as JSON


def test_a_replayed_step_returns_its_type_not_a_dict(kit: DurableTestKit) -> None:
    with kit.crash_after(charge):
        handle = durable.start_workflow(checkout, an_order(), 1)
    seen.clear()
    kit.recover()
    assert isinstance(handle.get_result(), Receipt)
    assert isinstance(seen[-1], Receipt)  # the recorded step's output, in its type
    assert not any(isinstance(s, dict) for s in seen)


def test_invalid_arguments_raise_in_the_caller_and_leave_nothing(kit: DurableTestKit) -> None:
    before = len(durable.list_workflows(limit=None))
    with pytest.raises(ValidationError):
        durable.start_workflow(checkout, {"order_id": "not-a-uuid"}, "two")
    with pytest.raises(ValidationError):
        durable.start_workflow(count_items, "not-a-number")
    with pytest.raises(ValidationError):
        checkout({"total": "x"}, 1)  # a direct call too
    assert len(durable.list_workflows(limit=None)) == before
    assert kit.run() == 0  # and nothing was sent


def test_valid_arguments_are_coerced(kit: DurableTestKit) -> None:
    raw = {"order_id": str(uuid4()), "total": "5.00", "placed": "2026-01-02T03:04:05Z"}
    handle = durable.start_workflow(checkout, {**raw, "tier": "basic"}, "3")
    assert handle.get_result().charged == Decimal("5.00")
    assert durable.start_workflow(count_items, "7").get_result() == "7 items"
    assert count_items(4, label="boxes") == "4 boxes"
