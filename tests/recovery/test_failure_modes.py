"""Celery failure modes on real workers that once broke a guarantee: warm shutdown, hard
time limits, cancellation, resume of a running workflow, messages naming another task.

Timings (tests/apps/recovery_app.py): heartbeat 0.5 s, executor timeout 3 s, sweep every
1 s on beat, a message counts as lost after 3 s.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from celery_durable import SetWorkflowTimeout, WorkflowHandle
from celery_durable import WorkflowStatusString as S
from celery_durable.errors import (
    AwaitedWorkflowCancelled,
    AwaitedWorkflowMaxRecoveryAttemptsExceeded,
)
from celery_durable.integration.publisher import durable_headers
from celery_durable.types import ResumeOutcome
from tests.apps import recovery_app as ra
from tests.conftest import WorkerProcess, wait_for

from .helpers import APP, BeatProcess, lose_messages, session_queue, sink_queue

durable = ra.durable


def status_of(workflow_id: str) -> Any:
    status = durable.get_workflow_status(workflow_id)
    assert status is not None
    return status


def effects(workflow_id: str) -> dict[str, int]:
    return dict(ra.effect_counts([workflow_id])[workflow_id])


def test_warm_shutdown_keeps_its_running_steps_until_they_finish(
    worker: Callable[..., WorkerProcess], beat: Callable[[], BeatProcess]
) -> None:
    """Four workers each in a long step get SIGTERM, a spare worker is up and the sweep
    runs every second: no step runs twice, none is recovered while its worker drains."""
    busy_queues = [f"{session_queue()}-busy{i}" for i in range(4)]
    for queue in busy_queues:
        lose_messages(queue)
    busy = [worker(APP, concurrency=1, queues=q) for q in busy_queues]
    beat()
    handles: list[WorkflowHandle] = []
    for i, queue in enumerate(busy_queues):
        if i % 2:  # a code workflow, its steps inline
            result = ra.long_wf.apply_async((f"k{i}",), queue=queue)
            handles.append(durable.retrieve_workflow(result.id))
        else:  # a chain: the long step on the busy worker, the next one anywhere
            first = ra.long_step.s([]).set(queue=queue)
            handles.append(durable.chain(first, ra.advance.s()).start())
    ids = [h.workflow_id for h in handles]
    wait_for(lambda: all(effects(w).get("long") == 1 for w in ids), timeout=30)
    spare = worker(APP, concurrency=2, queues=",".join([session_queue(), *busy_queues]))

    for w in busy:
        w.terminate()
    results = [h.get_result(timeout=40) for h in handles]

    assert results == [[100, 1]] * 4
    for w in busy:
        assert w.wait_exit(timeout=30) == 0  # each drained its step, then exited
    assert [effects(w)["long"] for w in ids] == [1, 1, 1, 1]  # never run a second time
    assert [status_of(w).recovery_attempts for w in ids] == [0, 0, 0, 0]
    assert all("no longer owned" not in w.log() for w in [*busy, spare])


def test_steps_killed_by_a_hard_time_limit_are_recovered_without_beat(
    worker: Callable[..., WorkerProcess],
) -> None:
    """The pool process is SIGKILLed by Celery at the limit under a live worker: a crash of
    that step, recovered at once (an attempt counted); the second run is quick."""
    worker(APP, concurrency=1)
    chain_handle = durable.chain(ra.outlive_once.s([]), ra.advance.s()).start()
    code_handle = durable.start_workflow(ra.outlive_wf, "t")

    assert chain_handle.get_result(timeout=40) == [200, 1]
    assert code_handle.get_result(timeout=40) == [200]
    for handle in (chain_handle, code_handle):
        assert effects(handle.workflow_id)["outlive"] == 2
        assert status_of(handle.workflow_id).recovery_attempts == 1


def test_a_step_that_always_outlives_its_time_limit_is_dead_lettered(
    worker: Callable[..., WorkerProcess],
) -> None:
    worker(APP, concurrency=1)
    handle = durable.start_workflow(ra.always_outlives, "t")
    with pytest.raises(AwaitedWorkflowMaxRecoveryAttemptsExceeded):
        handle.get_result(timeout=40)
    assert effects(handle.workflow_id) == {"always": 2}  # first run + max_recovery_attempts=1
    assert status_of(handle.workflow_id).status == S.MAX_RECOVERY_ATTEMPTS_EXCEEDED


def test_a_workflow_cancelled_while_it_sleeps_starts_no_further_step(
    worker: Callable[..., WorkerProcess],
) -> None:
    worker(APP, concurrency=1)
    handle = durable.start_workflow(ra.nap_then_remind, "r", 3.0)
    wait_for(lambda: len(durable.list_workflow_steps(handle.workflow_id)) == 1, timeout=20)

    durable.cancel_workflow(handle.workflow_id)
    with pytest.raises(AwaitedWorkflowCancelled):
        handle.get_result(timeout=10)
    wait_for(lambda: status_of(handle.workflow_id).executor_id is None, timeout=10)

    time.sleep(3.0)  # past the end of the sleep: the reminder would have been sent by now
    assert "remind" not in effects(handle.workflow_id)
    assert status_of(handle.workflow_id).status == S.CANCELLED
    assert [s.name for s in durable.list_workflow_steps(handle.workflow_id)] == ["durable.sleep"]


def test_a_chain_never_starts_a_step_after_its_deadline_without_beat(
    worker: Callable[..., WorkerProcess],
) -> None:
    worker(APP, concurrency=1)
    with SetWorkflowTimeout(1.0):
        handle = durable.chain(ra.slow_advance.s([]), ra.advance.s(), ra.advance.s()).start()

    with pytest.raises(AwaitedWorkflowCancelled):
        handle.get_result(timeout=20)
    time.sleep(1.0)
    assert effects(handle.workflow_id) == {"slow": 1}  # started before the deadline only
    steps = durable.list_workflow_steps(handle.workflow_id)
    assert [s.status for s in steps] == ["SUCCESS", "PENDING", "PENDING"]


@pytest.mark.parametrize("kind", ["workflow", "chain"])
def test_resume_leaves_a_workflow_a_live_worker_runs_alone(
    worker: Callable[..., WorkerProcess], kind: str
) -> None:
    worker(APP, concurrency=2)
    if kind == "workflow":
        handle = durable.start_workflow(ra.long_wf, "r")
    else:
        handle = durable.chain(ra.long_step.s([]), ra.advance.s()).start()
    wid = handle.workflow_id
    wait_for(lambda: effects(wid).get("long") == 1, timeout=20)

    assert durable.resume(wid) == ResumeOutcome.RUNNING
    assert durable.resume_workflow(wid).get_result(timeout=30) == [100, 1]
    assert effects(wid) == {"long": 1, "s1": 1}
    assert status_of(wid).recovery_attempts == 0
    assert durable.resume(wid) == ResumeOutcome.FINISHED


def test_a_message_naming_another_workflow_never_runs_on_its_record(
    worker: Callable[..., WorkerProcess],
) -> None:
    w = worker(APP, concurrency=1)
    wf_a = ra.quick.apply_async(("a",), queue=sink_queue())  # recorded, never picked up
    chain_a = durable.chain(ra.advance.s([]).set(queue=sink_queue())).start()

    # wf_b's message under wf_a's id; a step's message as chain_a's step 0; a step sent
    # plainly under a code workflow's id (it would record a chain of one there)
    durable.app.send_task(ra.nap_then_remind.name, ["b", 0.0], task_id=wf_a.id)
    durable.app.send_task(
        ra.remind.name, ["b"], task_id=chain_a.workflow_id,
        headers=durable_headers(chain_a.workflow_id, 0),
    )  # fmt: skip
    durable.app.send_task(ra.remind.name, ["c"], task_id=wf_a.id)

    wait_for(lambda: w.log().count("refused a message") >= 3, timeout=20)
    time.sleep(1.0)
    assert effects(wf_a.id) == {}
    assert effects(chain_a.workflow_id) == {}
    for wid in (wf_a.id, chain_a.workflow_id):
        status = status_of(wid)
        assert (status.status, status.output, status.error) == (S.ENQUEUED, None, None)
    assert [s.status for s in durable.list_workflow_steps(chain_a.workflow_id)] == ["PENDING"]


def test_a_deadline_cancels_a_sleeping_workflow_on_time_without_beat(
    worker: Callable[..., WorkerProcess],
) -> None:
    worker(APP, concurrency=1)
    with SetWorkflowTimeout(1.5):
        handle = durable.start_workflow(ra.nap_then_remind, "d", 4.0)
    started = time.monotonic()
    wait_for(lambda: status_of(handle.workflow_id).status == S.CANCELLED, timeout=10, interval=0.05)
    assert time.monotonic() - started < 2.5
    time.sleep(3.0)  # past the end of the sleep
    assert "remind" not in effects(handle.workflow_id)


def test_a_deadline_in_a_step_body_cancels_and_records_nothing(
    worker: Callable[..., WorkerProcess],
) -> None:
    """The body (2 s) is not killed, but the workflow is CANCELLED at its deadline (1 s),
    the body's output is not recorded and no further step starts."""
    worker(APP, concurrency=1)
    with SetWorkflowTimeout(1.0):
        handle = durable.start_workflow(ra.slow_then_advance, "d")
    started = time.monotonic()
    wait_for(lambda: status_of(handle.workflow_id).status == S.CANCELLED, timeout=10, interval=0.05)
    assert time.monotonic() - started < 2.0  # before the body ends
    wait_for(lambda: status_of(handle.workflow_id).executor_id is None, timeout=10)
    assert effects(handle.workflow_id) == {"slow": 1}
    assert durable.list_workflow_steps(handle.workflow_id) == []
