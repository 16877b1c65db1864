"""Child workflows, run in-process by the test kit: started and awaited as recorded steps
of their parent, woken by their end, never started twice across a crash."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import pytest
from celery import Celery

from celery_durable import (
    AwaitedWorkflowCancelled,
    Durable,
    SetWorkflowID,
    SetWorkflowTimeout,
    WorkflowStatusString,
)
from celery_durable.testing import DurableTestKit

S = WorkflowStatusString
app = Celery("kit_children", set_as_current=False)
durable = Durable(app)
runs: Counter[str] = Counter()


class OutOfStock(Exception):
    def __init__(self, sku: str, wanted: int) -> None:
        self.sku, self.wanted = sku, wanted
        super().__init__(f"{sku}: {wanted} wanted")


@durable.step()
def reserve(sku: str, n: int) -> str:
    runs[f"reserve:{sku}"] += 1
    if n > 5:
        raise OutOfStock(sku, n)
    return f"{sku}x{n}"


@durable.workflow()
def child(sku: str, n: int) -> str:
    runs["child"] += 1
    return reserve(sku, n)  # type: ignore[no-any-return]


@durable.workflow()
def parent(items: list[list[object]]) -> list[str]:
    runs["parent"] += 1
    handles = [durable.start_workflow(child, sku, n) for sku, n in items]
    return durable.gather(handles)  # type: ignore[no-any-return]


@durable.workflow()
def one_child(sku: str) -> dict[str, object]:
    runs["one_child"] += 1
    handle = durable.start_workflow(child, sku, 1)
    try:
        return {"child": handle.workflow_id, "result": handle.get_result()}
    except OutOfStock as exc:
        return {"child": handle.workflow_id, "missing": exc.sku}


@durable.workflow()
def catches(sku: str, n: int) -> dict[str, object]:
    try:
        return {"ok": durable.start_workflow(child, sku, n).get_result()}
    except OutOfStock as exc:  # the child's error, with its attributes
        return {"sku": exc.sku, "wanted": exc.wanted}
    except AwaitedWorkflowCancelled as exc:
        return {"cancelled": exc.workflow_id}


@pytest.fixture
def kit(durable_testkit: Callable[..., DurableTestKit]) -> DurableTestKit:
    runs.clear()
    return durable_testkit(durable)


def test_a_child_gets_a_recorded_id_and_its_result_reaches_the_parent(kit: DurableTestKit) -> None:
    with SetWorkflowID("order-1"):
        handle = durable.start_workflow(one_child, "sku-a")
    assert handle.get_result() == {"child": "order-1-0", "result": "sku-ax1"}
    steps = durable.list_workflow_steps("order-1")
    assert (steps[0].name, steps[0].output) == (f"durable.start:{child.name}", "order-1-0")
    assert steps[1].name == "durable.get_result"
    kids = durable.list_workflows(parent_workflow_id="order-1")
    assert [(k.workflow_id, k.status, k.parent_workflow_id) for k in kids] == [
        ("order-1-0", S.SUCCESS, "order-1")
    ]
    # the parent gave its slot back while the child ran, and ran twice: start, wake-up
    assert runs == {"one_child": 2, "child": 1, "reserve:sku-a": 1}


def test_a_crash_after_the_start_never_starts_a_second_child(kit: DurableTestKit) -> None:
    with kit.crash_after(f"durable.start:{child.name}"):
        handle = durable.start_workflow(one_child, "sku-b")
    kit.recover()
    result = handle.get_result()
    assert result["result"] == "sku-bx1"
    assert len(durable.list_workflows(parent_workflow_id=handle.workflow_id)) == 1
    assert runs["child"] == 1 and runs["reserve:sku-b"] == 1


def test_gather_returns_results_in_order_with_one_suspension(kit: DurableTestKit) -> None:
    items = [[f"sku-{i}", i % 5 + 1] for i in range(20)]
    handle = durable.start_workflow(parent, items)
    assert handle.get_result() == [f"sku-{i}x{i % 5 + 1}" for i in range(20)]
    assert runs["child"] == 20
    assert runs["parent"] == 2  # its start, and one wake-up when the last child ended


def test_a_childs_error_reaches_the_parent_with_its_attributes(kit: DurableTestKit) -> None:
    handle = durable.start_workflow(catches, "sku-c", 9)
    assert handle.get_result() == {"sku": "sku-c", "wanted": 9}
    failing = durable.start_workflow(parent, [["a", 1], ["b", 7], ["c", 8]])
    with pytest.raises(OutOfStock) as info:  # the first error in order, after all ended
        failing.get_result()
    assert info.value.sku == "b"
    assert runs["reserve:c"] == 1


def test_a_cancelled_child_is_awaited_cancelled(kit: DurableTestKit) -> None:
    with kit.hold(child):  # the child's message waits: no worker took it yet
        handle = durable.start_workflow(catches, "sku-d", 1)
        assert handle.get_status().status == S.ENQUEUED  # waiting for its child, slot freed
        [kid] = durable.list_workflows(parent_workflow_id=handle.workflow_id)
        durable.cancel_workflow(kid.workflow_id)  # wakes the parent
        assert handle.get_result() == {"cancelled": kid.workflow_id}
    assert runs["child"] == 0  # released after the cancel: the child never ran


def test_children_inherit_the_parents_deadline(kit: DurableTestKit) -> None:
    with SetWorkflowTimeout(60.0):
        handle = durable.start_workflow(one_child, "sku-e")
    handle.get_result()
    [kid] = durable.list_workflows(parent_workflow_id=handle.workflow_id)
    parent_deadline = handle.get_status().deadline
    assert kid.deadline is not None and kid.deadline == parent_deadline
