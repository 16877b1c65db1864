"""Durable chains under crashes and duplicate deliveries, with real `celery worker` processes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from celery import chain

from celery_durable import WorkflowStatusString as S
from celery_durable.integration.publisher import durable_headers
from tests.apps import chains
from tests.apps.chains import durable, effects
from tests.conftest import resume_after_crash, wait_for

APP = "tests.apps.chains"
RESULT_TIMEOUT = 30


def five_steps(x: int) -> Any:
    return durable.chain(chains.s1.s(x), chains.s2.s(), chains.s3.s(), chains.s4.s(), chains.s5.s())


def plain_three(x: int) -> Any:
    """A plain Celery chain of durable steps; returns the last link's AsyncResult."""
    return chain(chains.s1.s(x), chains.s2.s(), chains.s3.s()).apply_async()


def killed_while(doomed: Any, flags: Path, flag: str, start: Callable[[], str]) -> str:
    """Have the only worker SIGKILL itself at ``flag``, start a chain, wait for the kill."""
    (flags / flag).touch()
    workflow_id = start()
    assert doomed.wait_exit(timeout=60) == -9
    assert durable.get_workflow_status(workflow_id).status == S.PENDING  # type: ignore[union-attr]
    return workflow_id


def step_statuses(workflow_id: str) -> list[str]:
    return [s.status for s in durable.list_workflow_steps(workflow_id)]


def test_worker_killed_during_step3_resumes_from_step3(worker: Any, flags: Path) -> None:
    chains.setup()
    wid = killed_while(worker(APP), flags, "crash_in_s3", lambda: five_steps(7).start().workflow_id)
    assert effects(wid) == {"s1": 1, "s2": 1, "s3": 1}
    statuses = step_statuses(wid)
    assert statuses[:2] == ["SUCCESS", "SUCCESS"]
    assert statuses[2] != "SUCCESS"
    assert statuses[3:] == ["PENDING", "PENDING"]

    worker(APP)
    resume_after_crash(durable, wid)
    result = durable.retrieve_workflow(wid).get_result(timeout=RESULT_TIMEOUT)

    assert result == five_steps(7).start().get_result(timeout=RESULT_TIMEOUT)
    counts = effects(wid)
    assert counts["s3"] in (1, 2)  # in flight when the worker died: at least once, at most twice
    assert {k: v for k, v in counts.items() if k != "s3"} == {"s1": 1, "s2": 1, "s4": 1, "s5": 1}
    assert step_statuses(wid) == ["SUCCESS"] * 5
    status = durable.retrieve_workflow(wid).get_status()
    assert status.status == S.SUCCESS
    assert status.recovery_attempts == 1


def test_crash_between_step3_commit_and_step4_publish(worker: Any, flags: Path) -> None:
    chains.setup()
    wid = killed_while(
        worker(APP), flags, "after_step3_commit", lambda: five_steps(3).start().workflow_id
    )
    assert effects(wid) == {"s1": 1, "s2": 1, "s3": 1}
    assert step_statuses(wid) == ["SUCCESS", "SUCCESS", "SUCCESS", "PENDING", "PENDING"]

    worker(APP)
    result = durable.resume_workflow(wid).get_result(timeout=RESULT_TIMEOUT)

    assert result == five_steps(3).start().get_result(timeout=RESULT_TIMEOUT)
    assert effects(wid) == {"s1": 1, "s2": 1, "s3": 1, "s4": 1, "s5": 1}
    assert step_statuses(wid) == ["SUCCESS"] * 5


def redeliver_first_step(wid: str) -> None:
    """Send a slow->s2->s3 chain's first message again as Celery sent it: ids, headers, chain."""
    rows = durable.store.load_steps(wid)
    links = [
        sig.set(task_id=rows[i].task_id, headers=durable_headers(wid, i))
        for i, sig in ((2, chains.s3.s()), (1, chains.s2.s()))
    ]
    chains.app.send_task(
        chains.slow.name, [1], task_id=wid, root_id=wid,
        headers=durable_headers(wid, 0), chain=links,
    )  # fmt: skip


def test_duplicate_message_for_a_running_step_runs_it_once(worker: Any) -> None:
    chains.setup()
    w = worker(APP, concurrency=4)
    slow_chain = durable.chain(chains.slow.s(1), chains.s2.s(), chains.s3.s())
    redelivered = slow_chain.start()
    republished = slow_chain.start()
    ids = [redelivered.workflow_id, republished.workflow_id]
    wait_for(lambda: all(effects(i)["slow"] == 1 for i in ids), timeout=10, interval=0.02)

    redeliver_first_step(ids[0])  # a duplicate of the message (Redis redelivery)
    assert durable.republish.open_step(ids[1])  # what resume and the sweep send

    results = [redelivered.get_result(timeout=RESULT_TIMEOUT)]
    results.append(republished.get_result(timeout=RESULT_TIMEOUT))
    assert results[0] == results[1]
    assert len(results[0]) == 3 and results[0][0] == 1
    for wid in ids:
        assert effects(wid) == {"slow": 1, "s2": 1, "s3": 1}, wid
        assert w.log().count(f"slow[{wid}] received") == 2, wid  # the duplicate did arrive
        assert durable.get_workflow_status(wid).status == S.SUCCESS  # type: ignore[union-attr]


def test_plain_celery_chain_is_durable(worker: Any, flags: Path) -> None:
    chains.setup()
    first = worker(APP)
    res = plain_three(5)
    expected = res.get(timeout=RESULT_TIMEOUT)  # Celery's own result still works
    root = res.parent.parent.id

    assert root in {w.workflow_id for w in durable.list_workflows(limit=1000)}
    assert durable.retrieve_workflow(root).get_result(timeout=RESULT_TIMEOUT) == expected
    steps = durable.list_workflow_steps(root)
    assert [(s.name, s.status) for s in steps] == [
        (chains.s1.name, "SUCCESS"),
        (chains.s2.name, "SUCCESS"),
        (chains.s3.name, "SUCCESS"),
    ]
    assert steps[-1].output == expected
    assert effects(root) == {"s1": 1, "s2": 1, "s3": 1}

    wid = killed_while(first, flags, "crash_in_s2", lambda: plain_three(5).parent.parent.id)
    assert effects(wid) == {"s1": 1, "s2": 1}
    worker(APP)
    resume_after_crash(durable, wid)
    assert durable.retrieve_workflow(wid).get_result(timeout=RESULT_TIMEOUT) == expected
    counts = effects(wid)
    assert counts["s2"] in (1, 2)
    assert (counts["s1"], counts["s3"]) == (1, 1)
    # DESIGN section 5: retrieve_workflow also accepts the id of the result apply_async returned
    assert durable.retrieve_workflow(res.id).workflow_id == root


def test_transaction_steps_in_a_chain_commit_once(worker: Any) -> None:
    """Each transaction step's lease, body and checkpoint are one transaction: its rows
    land once; a duplicate delivery while it runs waits for it and runs nothing; a failed
    attempt's rows are rolled back, and its retry commits."""
    chains.setup()
    w = worker(APP, concurrency=4)
    booked = durable.chain(chains.s1.s(1), chains.book.s(), chains.s2.s()).start()
    slow = durable.chain(chains.slow_book.s([7]), chains.s2.s()).start()
    flaky = durable.chain(chains.flaky_book.s([3]), chains.s2.s()).start()
    wait_for(lambda: effects(slow.workflow_id)["slow_book"] == 1, timeout=20, interval=0.02)
    rows = durable.store.load_steps(slow.workflow_id)
    next_link = chains.s2.s().set(
        task_id=rows[1].task_id, headers=durable_headers(slow.workflow_id, 1)
    )
    chains.app.send_task(  # a duplicate of the running step's message (a redelivery)
        chains.slow_book.name, [[7]], task_id=rows[0].task_id, root_id=slow.workflow_id,
        headers=durable_headers(slow.workflow_id, 0),
        chain=[next_link],
    )  # fmt: skip

    for handle in (booked, slow, flaky):
        handle.get_result(timeout=RESULT_TIMEOUT)
    assert (effects(booked.workflow_id)["book"], chains.bookings(booked.workflow_id)) == (1, 1)
    assert w.log().count(f"slow_book[{rows[0].task_id}] received") == 2  # the duplicate came
    assert (effects(slow.workflow_id)["slow_book"], chains.bookings(slow.workflow_id)) == (1, 1)
    assert effects(flaky.workflow_id)["flaky_book"] == 2  # the failed attempt ran its body
    assert chains.bookings(flaky.workflow_id) == 1  # ... and its rows were rolled back
    [step, _] = durable.list_workflow_steps(flaky.workflow_id)
    assert (step.attempts, [type(e) for e in step.errors]) == (2, [ConnectionError])
