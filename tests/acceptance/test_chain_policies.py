"""Durable chains: retry timing and exhaustion, errbacks, queues, and inputs JSON cannot carry."""

from __future__ import annotations

import itertools
import os
import time
import uuid
from typing import Any

import pytest
import redis
from celery import chain

from celery_durable import WorkflowStatusString as S
from celery_durable.errors import MaxStepRetriesExceeded, SerializationError
from tests.apps import chains
from tests.apps.chains import Declined, attempt_times, durable, effects
from tests.conftest import wait_for

APP = "tests.apps.chains"
RESULT_TIMEOUT = 30


def test_retries_wait_by_policy_without_holding_a_worker_slot(worker: Any) -> None:
    chains.setup()
    worker(APP, concurrency=1)
    handle = durable.chain(chains.flaky.s(4, 2), chains.s2.s()).start()
    assert handle.get_result(timeout=RESULT_TIMEOUT)[:2] == [4, 2]
    wid = handle.workflow_id
    flaky_step, _ = durable.list_workflow_steps(wid)
    assert (flaky_step.status, flaky_step.attempts) == ("SUCCESS", 3)
    assert [(type(e), str(e)) for e in flaky_step.errors] == [
        (ConnectionError, "flaky failure 0"),
        (ConnectionError, "flaky failure 1"),
    ]
    times = attempt_times(wid, "flaky")
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert len(gaps) == 2
    for gap, delay in zip(gaps, [0.2, 0.4], strict=True):
        assert delay - 0.02 <= gap <= delay + 0.35, gaps
    # step_retrying (sent by the worker) reports the attempt that failed
    assert effects(wid) == {"flaky": 3, "s2": 1, "retrying:0": 1, "retrying:1": 1}

    # a 2 s retry wait on a one-slot worker: another chain runs meanwhile
    waiting = durable.chain(chains.flaky_slow.s(1), chains.s2.s()).start()
    wait_for(lambda: durable.list_workflow_steps(waiting.workflow_id)[0].errors, timeout=10)
    quick = durable.chain(chains.s1.s(2), chains.s2.s()).start()
    quick.get_result(timeout=RESULT_TIMEOUT)
    waiting.get_result(timeout=RESULT_TIMEOUT)
    first, retry = attempt_times(waiting.workflow_id, "flaky_slow")
    assert retry - first >= 2.0 - 0.02
    quick_done = quick.get_status().completed_at
    assert quick_done is not None
    assert quick_done.timestamp() < retry


def test_exhausted_retries_end_the_chain_and_call_the_errback_once(worker: Any) -> None:
    chains.setup()
    worker(APP)
    wid = str(uuid.uuid4())
    c = chain(chains.s1.s(1).set(task_id=wid), chains.always_fails.s(), chains.s2.s())
    c.link_error(chains.errback.si(wid))
    c.apply_async()

    handle = durable.retrieve_workflow(wid)
    with pytest.raises(MaxStepRetriesExceeded) as info:
        handle.get_result(timeout=RESULT_TIMEOUT)
    assert info.value.max_retries == 2
    assert [(type(e), str(e)) for e in info.value.errors] == [
        (ValueError, "declined 0"),
        (ValueError, "declined 1"),
        (ValueError, "declined 2"),
    ]
    assert handle.get_status().status == S.ERROR
    steps = durable.list_workflow_steps(wid)
    assert [s.status for s in steps] == ["SUCCESS", "ERROR", "PENDING"]
    assert steps[1].attempts == 3
    wait_for(lambda: effects(wid)["eb"] >= 1, timeout=10)
    time.sleep(0.5)  # a second errback call would have arrived by now
    assert effects(wid) == {  # s2 never ran
        "s1": 1,
        "always_fails": 3,
        "eb": 1,
        "retrying:0": 1,
        "retrying:1": 1,
        "exhausted:2": 1,
    }

    declined = durable.chain(chains.s1.s(1), chains.declines.s(), chains.s2.s()).start()
    with pytest.raises(Declined, match=r"card declined after \[1, 11\]"):
        declined.get_result(timeout=RESULT_TIMEOUT)
    assert declined.get_status().status == S.ERROR
    assert effects(declined.workflow_id) == {"s1": 1, "declines": 1, "exhausted:0": 1}
    assert durable.list_workflow_steps(declined.workflow_id)[1].attempts == 1


def test_steps_routed_to_two_queues_run_on_their_own_workers(worker: Any) -> None:
    chains.setup()
    base = os.environ["DURABLE_TEST_QUEUE"]
    qa, qb = f"{base}-a", f"{base}-b"
    wa = worker(APP, queues=qa)
    wb = worker(APP, queues=qb)
    hop = chains.hop
    handle = durable.chain(
        hop.s([]).set(queue=qa),
        hop.s().set(queue=qb),
        hop.s().set(queue=qa),
        hop.s().set(queue=qb),
    ).start()
    nodes = handle.get_result(timeout=RESULT_TIMEOUT)
    assert [n.split("@")[0] for n in nodes] == [wa.name, wb.name, wa.name, wb.name]
    assert handle.get_status().status == S.SUCCESS


def queued_messages() -> int:
    """Messages waiting in the test queue (all its priority lists), read from Redis."""
    client = redis.Redis.from_url(chains.app.conf.broker_url)
    queue = os.environ["DURABLE_TEST_QUEUE"]
    try:
        return sum(client.llen(key) for key in client.keys(f"{queue}*"))
    finally:
        client.close()


def _start_durable(first: Any, *rest: Any) -> Any:
    return lambda wid: durable.chain(first, *rest).start(workflow_id=wid)


def _start_plain(first: Any, *rest: Any) -> Any:
    return lambda wid: chain(first.clone().set(task_id=wid), *rest).apply_async()


@pytest.mark.parametrize(
    "start",
    [
        _start_durable(chains.s1.s({1, 2}), chains.s2.s()),
        _start_durable(chains.s1.s(1), chains.tag.s(object())),
        _start_plain(chains.s1.s({1, 2}), chains.s2.s()),
        _start_plain(chains.s1.s(1), chains.tag.s(object())),
    ],
    ids=["durable-first-link", "durable-later-link", "plain-first-link", "plain-later-link"],
)
def test_unserializable_inputs_fail_at_start_and_leave_nothing(start: Any) -> None:
    """No worker runs here: anything published would stay in the queue."""
    workflows_before = len(durable.list_workflows(limit=10_000))
    messages_before = queued_messages()
    wid = f"bad-{uuid.uuid4().hex[:8]}"
    with pytest.raises(SerializationError):
        start(wid)
    assert durable.get_workflow_status(wid) is None
    assert durable.list_workflow_steps(wid) == []
    assert len(durable.list_workflows(limit=10_000)) == workflows_before
    assert queued_messages() == messages_before
