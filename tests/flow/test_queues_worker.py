"""Durable queues on real workers (three `celery worker -c 4` sharing the queues), with
timestamps written from inside the workflows, at issue 13's figures: 60 workflows of
0.5 s in a concurrency=3 queue, 20 starts under a (5, 2.0) limiter."""

from __future__ import annotations

import time
import uuid

import pytest
from sqlalchemy import text

from celery_durable import DuplicateWorkflowError, SetEnqueueOptions
from tests.apps.flow_app import durable, prio, q3, rate, timed
from tests.conftest import WorkerProcess, wait_for
from tests.flow.conftest import max_overlap, runs, sweep_until_finished

pytestmark = pytest.mark.usefixtures("shared_workers")


def finished(ids: list[str]) -> bool:
    return all((durable.get_workflow_status(i) or _none()).status == "SUCCESS" for i in ids)


def _none() -> object:
    class Missing:
        status = None

    return Missing()


def test_concurrency_is_global_across_workers_and_slots_are_refilled() -> None:
    """60 workflows of 0.5 s: never more than 3 at once over 12 pool processes; the run
    takes at most 1.5 x the ideal 60 x 0.5 / 3 s (issue 13's bound: a freed slot is
    refilled at once, not by polling)."""
    key = f"c3-{uuid.uuid4().hex[:6]}-"
    handles = [durable.start_workflow(timed, f"{key}{i}", 0.5, queue=q3) for i in range(60)]
    assert durable.list_workflows(queue=q3.name, status="ENQUEUED", limit=None)
    wait_for(lambda: finished([h.workflow_id for h in handles]), timeout=60)
    seen = runs(key)
    assert len(seen) == 60 and all(end is not None for *_, end in seen)
    assert max_overlap([(s, e) for *_, s, e in seen if e is not None]) == 3
    assert len({w for _, _, w, _, _ in seen}) > 1  # spread over workers, still 3 in all
    total = max(e for *_, e in seen if e is not None) - min(s for *_, s, _ in seen)
    ideal = 60 * 0.5 / 3
    assert total <= 1.5 * ideal, f"{total:.2f}s for an ideal of {ideal:.2f}s"


def test_worker_concurrency_bounds_each_worker() -> None:
    """worker_concurrency=1 on three workers of -c 4: one at a time per worker, three in
    all (issue 13 asks two workers; the shared three show the same bound)."""
    from tests.apps.flow_app import per_worker

    key = f"wc1-{uuid.uuid4().hex[:6]}-"
    handles = [durable.start_workflow(timed, f"{key}{i}", 0.3, queue=per_worker)
               for i in range(9)]  # fmt: skip
    wait_for(lambda: finished([h.workflow_id for h in handles]), timeout=30)
    seen = runs(key)
    assert len(seen) == 9
    workers = {w for _, _, w, _, _ in seen}
    for worker in workers:
        mine = [(s, e) for _, _, w, s, e in seen if w == worker and e is not None]
        assert max_overlap(mine) == 1, worker
    assert len(workers) >= 2
    assert max_overlap([(s, e) for *_, s, e in seen if e is not None]) in (2, 3)


def test_limiter_bounds_starts_per_window() -> None:
    """20 starts under limiter=(5, 2.0): at most 5 in any 2 s window."""
    key = f"rate-{uuid.uuid4().hex[:6]}-"
    ids = [durable.start_workflow(timed, f"{key}{i}", 0.0, queue=rate.name) for i in range(20)]
    wait_for(lambda: finished([h.workflow_id for h in ids]), timeout=40)
    with durable.store.engine.connect() as conn:
        admitted = sorted(
            ms / 1000
            for (ms,) in conn.execute(
                text("SELECT admitted_at_ms FROM durable_queue_entries WHERE queue = :q"),
                {"q": rate.name},
            )
            if ms is not None
        )
    starts = [s for *_, s, _ in runs(key)]
    assert len(starts) == 20

    def most_in_window(times: list[float], width: float) -> int:
        return max(sum(1 for u in times if t <= u < t + width) for t in times)

    assert most_in_window(admitted, 2.0) <= 5
    # starts follow admissions by a publish and a worker's pick-up, whose delays vary by
    # a few hundred ms on a loaded machine: a window that much narrower than the period
    assert most_in_window(starts, 1.7) <= 5
    assert starts[-1] - starts[0] >= 5.9  # 20 starts at 5 per 2 s take three more windows


def test_priorities_run_high_before_the_remaining_low() -> None:
    key = f"prio-{uuid.uuid4().hex[:6]}-"
    blocker = durable.start_workflow(timed, f"{key}blocker", 0.6, queue=prio)
    wait_for(lambda: runs(key), timeout=10)
    low = [durable.start_workflow(timed, f"{key}low{i}", 0.02, queue=prio, priority=5)
           for i in range(5)]  # fmt: skip
    with SetEnqueueOptions(priority=1):
        high = [timed.apply_async((f"{key}high{i}", 0.02), queue=prio.name) for i in range(3)]
    wait_for(lambda: finished([blocker.workflow_id] + [h.workflow_id for h in low]), timeout=20)
    wait_for(lambda: finished([h.id for h in high]), timeout=20)
    order = [k.removeprefix(key) for _, k, *_ in runs(key)]
    assert order == ["blocker", "high0", "high1", "high2", "low0", "low1", "low2", "low3", "low4"]


def test_deduplication_id_while_active_then_free() -> None:
    key = f"dedup-{uuid.uuid4().hex[:6]}-"
    dedup = f"order-{uuid.uuid4().hex[:6]}"
    first = durable.start_workflow(timed, f"{key}a", 0.5, queue=q3, deduplication_id=dedup)
    with pytest.raises(DuplicateWorkflowError) as err:
        durable.start_workflow(timed, f"{key}b", 0.0, queue=q3, deduplication_id=dedup)
    assert err.value.workflow_id == first.workflow_id
    assert first.get_result(timeout=15) == f"{key}a"
    again = durable.start_workflow(timed, f"{key}c", 0.0, queue=q3, deduplication_id=dedup)
    assert again.get_result(timeout=15) == f"{key}c"


def test_a_sigkilled_worker_keeps_its_slots_until_recovery(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """6 workflows of 1 s in a concurrency=3 queue on one worker, SIGKILLed while it runs
    3 of them; another worker takes the queue, the sweep recovers them: all finish, and
    never more than 3 ran at once (a killed run counts until its workflow runs again)."""
    from tests.apps.flow_app import crash

    key = f"kill-{uuid.uuid4().hex[:6]}-"
    doomed = WorkerProcess("tests.apps.flow_app", tmp_path, queues=crash.name, concurrency=4)
    doomed.start()
    ids = [durable.start_workflow(timed, f"{key}{i}", 1.0, queue=crash).workflow_id
           for i in range(6)]  # fmt: skip
    wait_for(lambda: len(runs(key)) == 3, timeout=15)
    doomed.kill()
    killed_at = time.time()
    rescue = WorkerProcess("tests.apps.flow_app", tmp_path, queues=crash.name, concurrency=4)
    rescue.start()
    try:
        sweep_until_finished(ids)
    finally:
        rescue.stop(timeout=10)
    seen = runs(key)
    intervals = [(s, e if e is not None else killed_at) for *_, s, e in seen]
    assert max_overlap(intervals) <= 3
    assert len({w for w, *_ in seen}) == 6
    assert sum(1 for *_, e in seen if e is None) == 3  # the killed runs, each run again


def test_recovered_workflows_of_a_worker_concurrency_queue_are_admitted_again(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """``worker_concurrency=1`` on two workers, one SIGKILLed while each runs one: the
    sweep puts the killed worker's workflow back in line (its admitter is gone), and the
    survivor runs it only after its own: never two at once on one worker."""
    from tests.apps.flow_app import crash_wc

    key = f"killwc-{uuid.uuid4().hex[:6]}-"
    doomed = WorkerProcess("tests.apps.flow_app", tmp_path, queues=crash_wc.name, concurrency=4)
    survivor = WorkerProcess("tests.apps.flow_app", tmp_path, queues=crash_wc.name, concurrency=4)
    doomed.start()
    survivor.start()
    try:
        ids = [durable.start_workflow(timed, f"{key}{i}", 1.5, queue=crash_wc).workflow_id
               for i in range(4)]  # fmt: skip
        wait_for(lambda: len({w for _, _, w, _, _ in runs(key)}) == 2, timeout=15)
        doomed.kill()
        killed_at = time.time()
        sweep_until_finished(ids)
    finally:
        survivor.stop(timeout=10)
    seen = runs(key)
    workers = {w for _, _, w, _, _ in seen}
    for worker in workers:
        mine = [(s, e if e is not None else killed_at) for _, _, w, s, e in seen if w == worker]
        assert max_overlap(mine) == 1, worker
    assert sum(1 for *_, e in seen if e is None) == 1  # the killed run, run again
    assert len({wid for wid, *_ in seen}) == 4


def test_the_sweep_resends_admitted_workflows_whose_messages_were_lost(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Redis loses an admitted workflow's message (its queue's keys deleted, as a restart
    without persistence does): after durable_enqueue_timeout (3 s here) the sweep sends
    it again to its queue, and the waiting one is admitted after it ends."""
    from tests.apps.flow_app import lossy
    from tests.recovery.helpers import lose_messages

    key = f"lossy-{uuid.uuid4().hex[:6]}-"
    ids = [durable.start_workflow(timed, f"{key}{i}", 0.0, queue=lossy).workflow_id
           for i in range(3)]  # fmt: skip
    assert [s.waiting for s in durable.queue_stats() if s.queue == lossy.name] == [1]
    assert lose_messages(lossy.name, bindings=True) == 2
    rescue = WorkerProcess("tests.apps.flow_app", tmp_path, queues=lossy.name, concurrency=2)
    rescue.start()
    try:
        time.sleep(0.5)
        assert not runs(key)  # nothing to run: the two messages are gone
        recovered: list[str] = []

        def done() -> bool:
            # (the session's other stalled workflows are recovered too: not counted here)
            recovered.extend(i for i in durable.recover().recovered if i in ids)
            return finished(ids)

        wait_for(done, timeout=30, interval=0.5)
    finally:
        rescue.stop(timeout=10)
    assert sorted(recovered) == sorted(ids[:2])  # the admitted ones, each sent once more
    assert len(runs(key)) == 3
