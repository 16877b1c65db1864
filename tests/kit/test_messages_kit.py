"""Messages and events under the test kit (in-process, skipping clock): a parked recv is
woken by a send from another workflow, or by its timeout once the clock skips there.

The kit runs every queued message at once, the countdown to a recv's timeout included:
a message reaches a parked recv only when it is sent by something the kit runs first
(here a child workflow started before the recv)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from celery import Celery

from celery_durable import Durable, WorkflowStatusString
from celery_durable.testing import DurableTestKit

S = WorkflowStatusString
app = Celery("kit_messages", set_as_current=False)
durable = Durable(app)
runs: Counter[str] = Counter()


@durable.step()
def ship(decision: Any) -> str:
    runs["ship"] += 1
    return f"shipped after {decision}"


@durable.workflow()
def approval(timeout: float) -> Any:
    runs["approval"] += 1
    durable.set_event("status", "waiting")
    decision = durable.recv("approval", timeout_seconds=timeout)
    return None if decision is None else ship(decision)


@durable.workflow()
def approver(to: str) -> None:
    runs["approver"] += 1
    durable.send(to, "yes", topic="approval")


@durable.workflow()
def asks_for_approval() -> Any:
    runs["asks"] += 1
    durable.start_workflow(approver, durable.workflow_id)  # runs once this one parks
    return ship(durable.recv("approval", timeout_seconds=3600))


@durable.workflow()
def payment_page(order: str) -> str:
    runs["payment_page"] += 1
    durable.set_event("url", f"https://pay.example/{order}")
    return "done"


@durable.workflow()
def checkout(order: str) -> Any:
    runs["checkout"] += 1
    child = durable.start_workflow(payment_page, order)  # runs once this one parks
    return durable.get_event(child.workflow_id, "url", timeout_seconds=3600)


@pytest.fixture
def kit(durable_testkit: Callable[..., DurableTestKit]) -> DurableTestKit:
    runs.clear()
    return durable_testkit(durable)


def test_a_parked_recv_is_woken_by_the_send(kit: DurableTestKit) -> None:
    handle = durable.start_workflow(asks_for_approval)
    assert handle.get_result() == "shipped after yes"
    assert runs == {"asks": 2, "approver": 1, "ship": 1}  # its start, and the wake-up
    steps = [s.name for s in durable.list_workflow_steps(handle.workflow_id)]
    assert steps[1:] == ["durable.recv.deadline", "durable.recv", ship.name]


def test_a_parked_recv_times_out_at_its_deadline(kit: DurableTestKit) -> None:
    began = kit.clock.time()
    handle = durable.start_workflow(approval, 3600.0)
    assert handle.get_result() is None  # the kit skips the countdown to the deadline
    assert kit.clock.time() - began >= 3600
    assert runs == {"approval": 2}
    assert durable.get_event(handle.workflow_id, "status", timeout_seconds=0) == "waiting"


def test_a_parked_get_event_is_woken_when_the_event_is_set(kit: DurableTestKit) -> None:
    handle = durable.start_workflow(checkout, "o-9")
    assert handle.get_result() == "https://pay.example/o-9"
    assert runs == {"checkout": 2, "payment_page": 1}  # its start, and the wake-up
    names = [s.name for s in durable.list_workflow_steps(handle.workflow_id)]
    assert names[1:] == ["durable.get_event.deadline", "durable.get_event"]


def test_recv_and_set_event_need_a_workflow(kit: DurableTestKit) -> None:
    with pytest.raises(RuntimeError, match="only available in a workflow"):
        durable.recv("t", timeout_seconds=0)
    with pytest.raises(RuntimeError, match="only available in a workflow"):
        durable.set_event("k", 1)
    with pytest.raises(RuntimeError, match="only available in a workflow"):
        durable.patch("p")
