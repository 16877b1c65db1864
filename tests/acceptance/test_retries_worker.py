"""Step retries on a real worker: attempts, backoff gaps, stored errors, long waits."""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import pytest

from celery_durable import WorkflowStatusString as S
from celery_durable.errors import MaxStepRetriesExceeded
from tests.apps import payments as p
from tests.conftest import wait_for

APP = "tests.apps.payments"
# a gap may be longer than the backoff by the time one attempt takes (two small inserts)
LATE_TOLERANCE = 0.25


@pytest.fixture(autouse=True)
def _tables() -> None:
    p.setup()


def test_step_fails_twice_then_succeeds_with_backoff(worker: Any) -> None:
    worker(APP)
    handle = p.durable.start_workflow(p.charge_with_retries, 2)

    assert handle.get_result(timeout=30) == [2, 4]
    assert handle.get_status().status == S.SUCCESS
    seen = p.attempts(handle.workflow_id)
    assert [(a, m) for a, m, _ in seen] == [(0, 4), (1, 4), (2, 4)]
    gaps = [later[2] - earlier[2] for earlier, later in pairwise(seen)]
    for k, gap in enumerate(gaps):
        expected = 0.2 * 2.0**k
        assert expected - 0.01 <= gap <= expected + LATE_TOLERANCE, (k, gaps)
    assert p.effects(handle.workflow_id) == {"flaky_charge": 3}

    (step,) = p.durable.list_workflow_steps(handle.workflow_id)
    assert step.name == "tests.apps.payments.flaky_charge"
    assert step.status == "SUCCESS"
    assert step.attempts == 3
    assert step.output == [2, 4]
    assert [(type(e), str(e)) for e in step.errors] == [
        (ConnectionError, "gateway timeout 0"),
        (ConnectionError, "gateway timeout 1"),
    ]


def test_exhausted_retries_raise_max_step_retries_exceeded(worker: Any) -> None:
    worker(APP)
    caught = p.durable.start_workflow(p.charge_until_exhausted, "4242")
    uncaught = p.durable.start_workflow(p.charge_uncaught, "1111")
    declined = [f"card 4242 declined on attempt {n}" for n in range(3)]

    assert caught.get_result(timeout=30) == {
        "step": "tests.apps.payments.declined_charge",
        "max_retries": 2,
        "errors": [["CardDeclined", message] for message in declined],
    }
    assert p.effects(caught.workflow_id) == {"declined_charge": 3}
    (step,) = p.durable.list_workflow_steps(caught.workflow_id)
    assert step.attempts == 3
    assert [(type(e), str(e)) for e in step.errors] == [(p.CardDeclined, m) for m in declined]

    # not caught: the workflow ends ERROR and the handle raises the same exception, rebuilt
    with pytest.raises(MaxStepRetriesExceeded) as info:
        uncaught.get_result(timeout=30)
    assert uncaught.get_status().status == S.ERROR
    assert info.value.max_retries == 2
    assert [(type(e), str(e)) for e in info.value.errors] == [
        (p.CardDeclined, f"card 1111 declined on attempt {n}") for n in range(3)
    ]


def test_dont_retry_on_error_runs_once_and_is_raised_unwrapped(worker: Any) -> None:
    worker(APP)
    handle = p.durable.start_workflow(p.charge_once, "5555")

    with pytest.raises(p.CardDeclined, match=r"^card 5555 declined$"):
        handle.get_result(timeout=30)
    assert handle.get_status().status == S.ERROR
    assert p.effects(handle.workflow_id) == {"strict_charge": 1}
    assert [(a, m) for a, m, _ in p.attempts(handle.workflow_id)] == [(0, 4)]
    (step,) = p.durable.list_workflow_steps(handle.workflow_id)
    assert step.status == "ERROR"
    assert step.attempts == 1
    assert isinstance(step.error, p.CardDeclined)


def test_long_retry_wait_frees_the_worker_slot(worker: Any) -> None:
    assert p.durable.settings.max_inline_retry_wait == 0.5
    worker(APP, concurrency=1)
    slow = p.durable.start_workflow(p.charge_after_pause, "slow")
    wait_for(lambda: p.attempts(slow.workflow_id), timeout=30)
    quick = p.durable.start_workflow(p.pay, "quick", 1.0)

    assert quick.get_result(timeout=30)["order"] == "quick"
    assert slow.get_result(timeout=30) == "charged-slow"

    (first, _m0, first_at), (second, _m1, retry_at) = p.attempts(slow.workflow_id)
    assert (first, second) == (0, 1)
    assert retry_at - first_at >= 1.5 - 0.01
    quick_done = quick.get_status().completed_at
    assert quick_done is not None
    # the only pool process ran the quick workflow while the slow one waited for its retry
    assert first_at < quick_done.timestamp() < retry_at
    (slow_step,) = p.durable.list_workflow_steps(slow.workflow_id)
    assert slow_step.attempts == 2
    assert slow_step.completed_at is not None and slow_step.completed_at > quick_done
    assert [str(e) for e in slow_step.errors] == ["gateway busy"]
    assert p.effects(slow.workflow_id) == {"patient_charge": 2}


def test_duplicate_message_during_long_retry_wait_does_not_retry_early(worker: Any) -> None:
    worker(APP, concurrency=2)
    handle = p.durable.start_workflow(p.charge_after_pause, "dup")
    wid = handle.workflow_id

    def waiting_to_retry() -> bool:  # attempt 0 failed and the run gave its slot back
        return bool(p.attempts(wid)) and handle.get_status().status == S.ENQUEUED

    wait_for(waiting_to_retry, timeout=30)

    p.durable.publish_existing(wid)  # e.g. a sweep or a broker redelivery during the wait

    assert handle.get_result(timeout=30) == "charged-dup"
    (_first, _m0, first_at), (_second, _m1, retry_at) = p.attempts(wid)
    assert retry_at - first_at >= 1.5 - 0.01, "the retry ran before its interval had passed"
    assert p.effects(wid) == {"patient_charge": 2}
