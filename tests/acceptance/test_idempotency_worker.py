"""Idempotent workflow ids on a real worker: one execution per id, whatever starts it."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from celery_durable import SetWorkflowID, WorkflowHandle
from celery_durable import WorkflowStatusString as S
from celery_durable.errors import ConflictingWorkflowError
from tests.apps import payments as p
from tests.conftest import WorkerProcess, wait_for

APP = "tests.apps.payments"


@pytest.fixture(autouse=True)
def _tables() -> None:
    p.setup()


def deliveries(proc: WorkerProcess, workflow_id: str) -> int:
    """How many messages for ``workflow_id`` the worker received (its INFO log line)."""
    return proc.log().count(f"[{workflow_id}] received")


def start_with_id(workflow_id: str, *args: Any) -> WorkflowHandle:
    with SetWorkflowID(workflow_id):
        return p.durable.start_workflow(p.pay, *args)


def test_set_workflow_id_starts_one_execution(worker: Any) -> None:
    worker(APP)
    wid = p.new_id("pay")
    first = start_with_id(wid, "o-1", 10.0)
    again = start_with_id(wid, "o-1", 99.0)  # other inputs: still the first workflow
    result = first.get_result(timeout=30)
    late = start_with_id(wid, "o-1", 7.0)  # after it ended

    assert result["receipt"].startswith("receipt-o-1-10.0-")
    assert [h.workflow_id for h in (first, again, late)] == [wid] * 3
    assert again.get_result(timeout=30) == late.get_result(timeout=30) == result
    assert p.effects(wid) == {"issue_receipt": 1}
    status = p.durable.get_workflow_status(wid)
    assert status is not None and status.input == {"args": ["o-1", 10.0], "kwargs": {}}

    # two threads racing to start the same id
    raced = p.new_id("pay")
    barrier = threading.Barrier(2)
    handles: list[WorkflowHandle] = []

    def race(amount: float) -> None:
        barrier.wait()
        handles.append(start_with_id(raced, "o-2", amount))

    threads = [threading.Thread(target=race, args=(a,)) for a in (1.0, 2.0)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    results = [h.get_result(timeout=30) for h in handles]
    assert len(results) == 2 and results[0] == results[1]
    assert p.effects(raced) == {"issue_receipt": 1}


def test_apply_async_task_id_runs_once_and_other_workflows_conflict(worker: Any) -> None:
    worker(APP)
    wid = p.new_id("pay")
    first = p.pay.apply_async(("o-3", 5.0), task_id=wid)
    second = p.pay.apply_async(("o-3", 6.0), task_id=wid)
    assert first.id == second.id == wid

    result = p.durable.retrieve_workflow(wid).get_result(timeout=30)
    assert result["receipt"].startswith("receipt-o-3-5.0-")
    assert p.pay.apply_async(("o-3", 7.0), task_id=wid).id == wid
    assert p.durable.retrieve_workflow(wid).get_result(timeout=30) == result
    assert p.effects(wid) == {"issue_receipt": 1}

    with pytest.raises(ConflictingWorkflowError, match="refund"), SetWorkflowID(wid):
        p.durable.start_workflow(p.refund, "o-3", 5.0)
    with pytest.raises(ConflictingWorkflowError):
        p.refund.apply_async(("o-3", 5.0), task_id=wid)
    status = p.durable.get_workflow_status(wid)
    assert status is not None
    assert (status.name, status.status, status.output) == (
        "tests.apps.payments.pay",
        S.SUCCESS,
        result,
    )
    assert p.effects(wid) == {"issue_receipt": 1}


def test_duplicate_message_runs_the_step_body_once(worker: Any) -> None:
    proc = worker(APP, concurrency=2)
    handle = p.durable.start_workflow(p.capture, "o-4")
    wid = handle.workflow_id
    wait_for(lambda: p.effects(wid), timeout=30)  # the first delivery is inside the 1 s step

    p.durable.publish_existing(wid)
    wait_for(lambda: deliveries(proc, wid) == 2, timeout=10)
    assert handle.get_status().status == S.PENDING  # the duplicate came while the step ran

    assert handle.get_result(timeout=30) == "captured-o-4"
    assert handle.get_status().status == S.SUCCESS
    (step,) = p.durable.list_workflow_steps(wid)
    assert (step.status, step.attempts, step.output) == ("SUCCESS", 1, "captured-o-4")
    assert p.effects(wid) == {"slow_capture": 1}
    assert proc.alive
