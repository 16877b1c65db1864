"""Durable workflows called directly (run in this process) on Postgres and SQLite."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from celery_durable import (
    AwaitedWorkflowCancelled,
    ConflictingWorkflowError,
    Durable,
    MaxStepRetriesExceeded,
    NonDeterministicWorkflowError,
    NonExistentWorkflow,
    SerializationError,
    SetWorkflowTimeout,
    WorkflowCancelledError,
    WorkflowTimeoutError,
    step_retries_exhausted,
    step_retrying,
)
from celery_durable import WorkflowStatusString as S
from tests.unit.helpers import (
    Attempts,
    CardDeclined,
    Counter,
    Crash,
    Declined,
    call_as,
    crash_then_reenqueue,
    run_in_threads,
    step,
    uid,
    workflow,
)

NAP = 0.4  # seconds a workflow sleeps durably


# retries ---------------------------------------------------------------------
def test_step_status_counts_attempts_from_zero(durable: Durable) -> None:
    body = Attempts(durable, failures=2)
    flaky = step(durable, body, retries=3, interval_seconds=0.01)
    wf = workflow(durable, lambda: [durable.step_status, flaky()])
    assert wf() == [None, "ok at attempt 2"]
    assert [s.current_attempt for s in body.statuses] == [0, 1, 2]
    assert {(s.step_id, s.max_attempts) for s in body.statuses} == {(0, 4)}
    assert durable.step_status is None


def test_gaps_between_attempts_follow_the_backoff(durable: Durable) -> None:
    body = Attempts(durable, failures=2)
    flaky = step(durable, body, retries=2, interval_seconds=0.1, backoff_rate=2.0)
    assert workflow(durable, flaky)() == "ok at attempt 2"
    gaps = [b - a for a, b in zip(body.times, body.times[1:], strict=False)]
    for gap, expected in zip(gaps, [0.1, 0.2], strict=True):
        assert expected * 0.9 <= gap <= expected + 0.25, gaps


def test_last_failure_raises_max_step_retries_exceeded_with_every_error(durable: Durable) -> None:
    body = Attempts(durable, failures=99)
    flaky = step(durable, body, retries=2, interval_seconds=0.01)
    caught: list[MaxStepRetriesExceeded] = []

    def run() -> int:
        try:
            flaky()
        except MaxStepRetriesExceeded as exc:
            caught.append(exc)
            return exc.max_retries
        return -1

    wid = uid("id")
    assert call_as(wid, workflow(durable, run)) == 2
    assert len(body.times) == 3
    messages = [f"attempt {i} failed" for i in range(3)]
    [exc] = caught
    assert [(type(e), str(e)) for e in exc.errors] == [(ValueError, m) for m in messages]
    [info] = durable.list_workflow_steps(wid)
    assert info.status == "ERROR"
    assert [(type(e), str(e)) for e in info.errors] == [(ValueError, m) for m in messages]
    assert isinstance(info.error, MaxStepRetriesExceeded) and info.error.max_retries == 2


def test_dont_retry_on_error_runs_once_and_is_raised_unwrapped(durable: Durable) -> None:
    body = Attempts(durable, failures=99, exc_type=CardDeclined)
    charge = step(durable, body, retries=3, interval_seconds=0.01, dont_retry_on=(Declined,))
    wid = uid("id")
    with pytest.raises(CardDeclined, match="attempt 0 failed"):
        call_as(wid, workflow(durable, charge))
    assert len(body.times) == 1
    with pytest.raises(CardDeclined, match="attempt 0 failed"):
        durable.retrieve_workflow(wid).get_result(timeout=5)


# replay ----------------------------------------------------------------------
def test_finished_workflow_called_again_runs_no_step(durable: Durable) -> None:
    first, second, outer = Counter("a"), Counter("b"), Counter()
    step_a, step_b = step(durable, first), step(durable, second)

    def run(x: int) -> dict[str, Any]:
        outer()
        return {"a": step_a(), "b": step_b(), "x": x, "id": durable.workflow_id}

    wf, wid = workflow(durable, run), uid("id")
    result = call_as(wid, wf, 7)
    assert result == {"a": "a", "b": "b", "x": 7, "id": wid}
    assert call_as(wid, wf, 7) == result
    assert (first.calls, second.calls, outer.calls) == (1, 1, 1)
    assert durable.retrieve_workflow(wid).get_result(timeout=5) == result


def test_resumed_workflow_reruns_only_incomplete_steps(durable: Durable) -> None:
    first, second, crashes = Counter("a"), Counter("b"), [Crash()]
    step_a, step_b = step(durable, first), step(durable, second)

    def run() -> list[str]:
        a = step_a()
        if crashes:
            raise crashes.pop()
        return [a, step_b()]

    wf, wid = workflow(durable, run), uid("id")
    crash_then_reenqueue(durable, wid, wf)
    assert call_as(wid, wf) == ["a", "b"]
    assert (first.calls, second.calls) == (1, 1)
    status = durable.get_workflow_status(wid)
    assert status is not None and (status.status, status.recovery_attempts) == (S.SUCCESS, 0)


def test_workflow_that_raises_ends_error_and_get_result_reraises(durable: Durable) -> None:
    def run() -> None:
        raise Declined("order 9 declined")

    wid = uid("id")
    with pytest.raises(Declined, match="order 9 declined"):
        call_as(wid, workflow(durable, run))
    handle = durable.retrieve_workflow(wid)
    assert handle.get_status().status == S.ERROR
    with pytest.raises(Declined, match=r"^order 9 declined$"):
        handle.get_result(timeout=5)


def test_replay_calling_another_step_is_non_deterministic(
    durable: Durable, make_durable: Callable[[str], Durable], any_url: str
) -> None:
    name, wid = uid("tests.wf"), uid("id")
    old_step = step(durable, Counter("old"))

    def old_code() -> None:
        old_step()
        raise Crash()

    crash_then_reenqueue(durable, wid, workflow(durable, old_code, name=name))
    deployed = make_durable(any_url)  # new code, same workflow name, same database
    new_step = step(deployed, Counter("new"))
    with pytest.raises(NonDeterministicWorkflowError) as info:
        call_as(wid, workflow(deployed, lambda: new_step(), name=name))
    error = info.value
    assert (error.workflow_id, error.step_id) == (wid, 0)
    assert (error.recorded, error.called) == (old_step.name, new_step.name)
    assert deployed.get_workflow_status(wid).status == S.ERROR  # type: ignore[union-attr]


def test_durable_sleep_records_wake_up_time_and_is_not_slept_again(durable: Durable) -> None:
    crashes = [Crash()]

    def run() -> str:
        durable.sleep(NAP)
        if crashes:
            raise crashes.pop()
        return "awake"

    wf, wid = workflow(durable, run), uid("id")
    before = time.time()
    crash_then_reenqueue(durable, wid, wf)
    after = time.time()
    assert after - before >= NAP
    [sleep] = durable.list_workflow_steps(wid)
    assert sleep.name == "durable.sleep" and sleep.status == "SUCCESS"
    assert before + NAP <= sleep.output <= after
    started = time.monotonic()
    assert call_as(wid, wf) == "awake"
    assert time.monotonic() - started < NAP  # the recorded wake-up time has passed


# starting, ids and handles ---------------------------------------------------
def test_concurrent_starts_with_the_same_id_run_once(durable: Durable) -> None:
    runs, barrier = Counter(), threading.Barrier(2, timeout=10)

    def run() -> str:
        runs()
        time.sleep(0.3)
        return "once"

    wf, wid = workflow(durable, run), uid("id")

    def start() -> Any:
        barrier.wait()
        return call_as(wid, wf)

    assert run_in_threads([start, start]) == ["once", "once"]
    assert runs.calls == 1


def test_other_workflow_under_an_existing_id_conflicts(durable: Durable) -> None:
    wid, other = uid("id"), Counter()
    first = workflow(durable, Counter("first"))
    call_as(wid, first)
    second = workflow(durable, other)
    with pytest.raises(ConflictingWorkflowError) as info:
        call_as(wid, second)
    assert (info.value.existing_name, info.value.requested_name) == (first.name, second.name)
    assert other.calls == 0


@pytest.mark.parametrize("argument", [{1, 2}, object()], ids=["set", "object"])
def test_unserializable_argument_fails_before_anything_is_written(
    durable: Durable, argument: Any
) -> None:
    body, wid = Counter(), uid("id")
    with pytest.raises(SerializationError):
        call_as(wid, workflow(durable, body), argument)
    assert body.calls == 0
    assert durable.store.get_workflow(wid) is None


def test_get_result_times_out_while_workflow_stays_enqueued(durable: Durable) -> None:
    handle = durable.start_workflow(workflow(durable, Counter()))
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        handle.get_result(timeout=0.3)
    assert 0.3 <= time.monotonic() - started < 2
    assert handle.get_status().status == S.ENQUEUED


def test_retrieving_an_unknown_workflow_raises(durable: Durable) -> None:
    with pytest.raises(NonExistentWorkflow):
        durable.retrieve_workflow(uid("missing"))
    assert durable.get_workflow_status(uid("missing")) is None


@pytest.mark.parametrize("step_after", [True, False], ids=["step-after", "last-step"])
def test_workflow_past_its_timeout_ends_cancelled(durable: Durable, step_after: bool) -> None:
    slow, after = step(durable, lambda: time.sleep(0.4)), Counter()
    after_step = step(durable, after)

    def run() -> str:
        slow()
        if step_after:
            after_step()
        return "too late"

    wid = uid("id")
    with SetWorkflowTimeout(0.1), pytest.raises((WorkflowTimeoutError, AwaitedWorkflowCancelled)):
        call_as(wid, workflow(durable, run))
    assert after.calls == 0
    handle = durable.retrieve_workflow(wid)
    assert handle.get_status().status == S.CANCELLED
    with pytest.raises(AwaitedWorkflowCancelled):
        handle.get_result(timeout=5)


def test_a_direct_call_interrupted_by_ctrl_c_gives_its_workflow_up(durable: Durable) -> None:
    """KeyboardInterrupt in a process that keeps running: the run releases the workflow,
    and a second direct call with the same id finishes it from its first incomplete step."""
    first, interrupts = Counter("a"), [KeyboardInterrupt()]
    step_a = step(durable, first)

    def second_body() -> str:
        if interrupts:
            raise interrupts.pop()
        return "b"

    step_b = step(durable, second_body)
    wf, wid = workflow(durable, lambda: [step_a(), step_b()]), uid("id")
    with pytest.raises(KeyboardInterrupt):
        call_as(wid, wf)
    status = durable.get_workflow_status(wid)
    assert status is not None and (status.status, status.executor_id) == (S.ENQUEUED, None)

    assert call_as(wid, wf) == ["a", "b"]
    assert first.calls == 1
    assert [s.status for s in durable.list_workflow_steps(wid)] == ["SUCCESS", "SUCCESS"]


def test_a_timeout_cuts_a_durable_sleep_short(durable: Durable) -> None:
    after = Counter()
    after_step = step(durable, after)

    def run() -> None:
        durable.sleep(4.0)
        after_step()

    started = time.monotonic()
    with SetWorkflowTimeout(1.0), pytest.raises(WorkflowTimeoutError):
        call_as(uid("id"), workflow(durable, run))
    assert time.monotonic() - started < 2.0
    assert after.calls == 0


def test_a_workflow_cancelled_from_another_thread_stops_sleeping(durable: Durable) -> None:
    after = Counter()
    after_step = step(durable, after)
    wid = uid("id")

    def run() -> None:
        durable.sleep(5.0)
        after_step()

    def cancel_soon() -> None:
        time.sleep(0.5)
        durable.cancel_workflow(wid)

    canceller = threading.Thread(target=cancel_soon)
    canceller.start()
    started = time.monotonic()
    with pytest.raises(WorkflowCancelledError):
        call_as(wid, workflow(durable, run))
    canceller.join()
    assert time.monotonic() - started < 2.5
    assert after.calls == 0
    status = durable.get_workflow_status(wid)
    assert status is not None and (status.status, status.executor_id) == (S.CANCELLED, None)


def test_workflow_steps_send_retry_signals_with_the_failed_attempt(durable: Durable) -> None:
    seen: list[tuple[str, int]] = []

    def retrying(sender: Any = None, **kwargs: Any) -> None:
        seen.append(("retrying", kwargs["attempt"]))

    def exhausted(sender: Any = None, **kwargs: Any) -> None:
        seen.append(("exhausted", kwargs["attempt"]))
        assert isinstance(kwargs["exc"], MaxStepRetriesExceeded)

    flaky = step(durable, Attempts(durable, failures=2), retries=2, interval_seconds=0.0)
    doomed = step(durable, Attempts(durable, failures=9), retries=1, interval_seconds=0.0)
    step_retrying.connect(retrying, weak=False)
    step_retries_exhausted.connect(exhausted, weak=False)
    try:
        assert call_as(uid("id"), workflow(durable, lambda: flaky())) == "ok at attempt 2"
        assert seen == [("retrying", 0), ("retrying", 1)]
        seen.clear()
        with pytest.raises(MaxStepRetriesExceeded):
            call_as(uid("id"), workflow(durable, lambda: doomed()))
        assert seen == [("retrying", 0), ("exhausted", 1)]
    finally:
        step_retrying.disconnect(retrying)
        step_retries_exhausted.disconnect(exhausted)
