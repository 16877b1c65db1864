"""Bad input: unserializable arguments fail at start; an unknown workflow name ends ERROR."""

from __future__ import annotations

import os
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
import redis
from pydantic import ValidationError

from celery_durable import SetWorkflowID, UnknownWorkflowError
from celery_durable import WorkflowStatusString as S
from celery_durable.errors import SerializationError
from celery_durable.runtime.workflows import StartRequest, record_start
from tests.apps import payments as p

APP = "tests.apps.payments"
UNKNOWN = "tests.apps.nowhere.unknown_wf"

STARTS: dict[str, Callable[[Any], object]] = {
    "workflow.delay(set)": lambda bad: p.pay.delay({"a", "b"}, 1.0),
    "workflow.apply_async(object)": lambda bad: p.pay.apply_async(("o", bad)),
    "start_workflow(object)": lambda bad: p.durable.start_workflow(p.pay, "o", amount=bad),
    "step.delay(object)": lambda bad: p.issue_receipt.delay(bad, 1.0),
}


def queue_length() -> int:
    client = redis.Redis.from_url(p.app.conf.broker_url)
    try:
        return int(client.llen(os.environ["DURABLE_TEST_QUEUE"]))
    finally:
        client.close()


def workflow_count() -> int:
    return len(p.durable.list_workflows(limit=None))


@pytest.mark.parametrize("how", sorted(STARTS))
def test_unserializable_input_fails_at_start_leaving_nothing(how: str) -> None:
    # no worker runs here: a message that was published would still be in the queue
    wid = p.new_id("bad")
    rows, queued = workflow_count(), queue_length()

    with pytest.raises(SerializationError), SetWorkflowID(wid):
        STARTS[how](object())

    assert p.durable.get_workflow_status(wid) is None
    assert workflow_count() == rows
    assert queue_length() == queued


@pytest.mark.parametrize(
    "arguments",
    [({"number": "x", "amount": "1"}, 2), ({"number": 1, "amount": "1"}, "two"), ()],
    ids=["bad-model", "bad-int", "missing"],
)
def test_invalid_arguments_raise_in_the_caller_leaving_nothing(arguments: Any) -> None:
    rows, queued = workflow_count(), queue_length()
    with pytest.raises((ValidationError, TypeError)):
        p.durable.start_workflow(p.invoice_copies, *arguments)
    assert workflow_count() == rows
    assert queue_length() == queued


def test_a_model_argument_and_result_cross_the_worker_as_models(worker: Any) -> None:
    worker(APP)
    handle = p.durable.start_workflow(
        p.invoice_copies, p.Invoice(number=7, amount=Decimal("2.50")), "3"
    )
    result = handle.get_result(timeout=30)
    assert result == p.Invoice(number=7, amount=Decimal("7.50"))
    assert isinstance(result, p.Invoice) and isinstance(result.amount, Decimal)


def test_unknown_workflow_name_ends_error_and_worker_stays_up(worker: Any) -> None:
    p.setup()
    proc = worker(APP)
    wid = p.new_id("unknown")
    record_start(p.durable.runtime, StartRequest(wid, UNKNOWN, ("o-9", 3.0)))

    p.app.send_task(UNKNOWN, ("o-9", 3.0), task_id=wid, headers={"durable_workflow": wid})

    handle = p.durable.retrieve_workflow(wid)
    with pytest.raises(UnknownWorkflowError, match=UNKNOWN):
        handle.get_result(timeout=30)
    status = handle.get_status()
    assert status.status == S.ERROR
    assert UNKNOWN in str(status.error)

    # the worker is alive and still serving, and the message was not redelivered
    after = p.durable.start_workflow(p.pay, "o-10", 4.0)
    assert after.get_result(timeout=30)["order"] == "o-10"
    assert proc.alive
    assert proc.log().count("Received unregistered task") == 1
    assert p.durable.get_workflow_status(wid).status == S.ERROR  # type: ignore[union-attr]
