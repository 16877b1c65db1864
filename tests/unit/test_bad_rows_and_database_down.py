"""Bad input loses nothing: a database that is down, corrupted rows."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import pytest
import redis
from celery import Celery
from sqlalchemy import text

from celery_durable import Durable, SetWorkflowID
from celery_durable import WorkflowStatusString as S
from celery_durable.errors import CorruptedRowError, DatabaseUnavailableError
from celery_durable.runtime.workflows import StartRequest, execute, record_start
from tests.unit.helpers import uid

CLOSED_PORT_URL = "postgresql://postgres@127.0.0.1:1/nowhere"


def test_database_down_at_start_raises_clearly_and_publishes_nothing() -> None:
    broker = os.environ.get("DURABLE_TEST_BROKER", "redis://127.0.0.1:6379/0")
    queue = uid("down-queue")
    app = Celery(uid("down"), broker=broker)
    app.conf.task_default_queue = queue
    durable = Durable(app, database_url=CLOSED_PORT_URL, db_retry_timeout=1.0)

    @durable.workflow(name=uid("wf"))
    def wf(x: int) -> int:
        return x

    started = time.monotonic()
    with pytest.raises(DatabaseUnavailableError, match="unavailable"):
        wf.delay(1)
    assert 0.5 < time.monotonic() - started < 20  # retried with backoff, then gave up
    assert redis.Redis.from_url(broker).llen(queue) == 0  # nothing was published


def test_corrupted_inputs_end_the_workflow_error_instead_of_failing_every_delivery(
    make_durable: Callable[[str], Durable], db_url: str
) -> None:
    durable = make_durable(db_url)
    name = uid("wf")

    @durable.workflow(name=name)
    def wf(x: int) -> int:
        return x

    wid = uid("corrupt")
    record_start(durable.runtime, StartRequest(wid, name, (1,)))
    with durable.store.engine.begin() as conn:
        conn.execute(
            text("UPDATE durable_workflows SET inputs = :bad WHERE workflow_id = :w"),
            {"bad": "{not json", "w": wid},
        )
    outcome = execute(durable.runtime, wid, name, wf.run, can_suspend=True)
    assert outcome.state == "error"
    assert isinstance(outcome.error, CorruptedRowError)
    status = durable.get_workflow_status(wid)
    assert status is not None and status.status == S.ERROR
    assert isinstance(status.error, CorruptedRowError)
    # a second delivery does nothing: the workflow has ended
    assert execute(durable.runtime, wid, name, wf.run, can_suspend=True).state == "skipped"


def test_corrupted_output_raises_a_clear_error_on_await(
    make_durable: Callable[[str], Durable], db_url: str
) -> None:
    durable = make_durable(db_url)

    @durable.workflow(name=uid("wf"))
    def wf() -> str:
        return "fine"

    wid = uid("out")
    with SetWorkflowID(wid):
        assert wf() == "fine"
    with durable.store.engine.begin() as conn:
        conn.execute(
            text("UPDATE durable_workflows SET output = :bad WHERE workflow_id = :w"),
            {"bad": "{truncated", "w": wid},
        )
    with pytest.raises(CorruptedRowError, match="cannot be decoded"):
        durable.retrieve_workflow(wid).get_result(timeout=5)
    listed = durable.list_workflows(workflow_ids=[wid])  # listing still works
    assert [w.workflow_id for w in listed] == [wid]
