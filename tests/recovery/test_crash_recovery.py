"""Crashes on real `celery worker` processes, recovered by the sweep on `celery beat`.

Timings (tests/apps/recovery_app.py): heartbeat 0.5 s, executor timeout 3 s, sweep every
1 s, a message counts as lost after 3 s.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import text

from celery_durable import WorkflowStatusString as S
from celery_durable.clock import SYSTEM_CLOCK
from celery_durable.errors import (
    AwaitedWorkflowMaxRecoveryAttemptsExceeded,
    MaxRecoveryAttemptsExceeded,
)
from celery_durable.integration.chains import DURABLE_HEADER
from tests.apps import recovery_app as ra
from tests.conftest import WorkerProcess, wait_for

from .conftest import Stalled
from .helpers import APP, BeatProcess

durable = ra.durable
CHAINS = 50
LINKS = 5
CONCURRENCY = 2
SETTINGS = durable.settings
# the sweep needs the executor timeout, then up to two sweep periods; workers start slowly
RESUME_BOUND = SETTINGS.executor_timeout + 2 * (SETTINGS.recovery_interval or 0) + 10


def five_links() -> Any:
    return durable.chain(ra.advance.s([]), *(ra.advance.s() for _ in range(LINKS - 1)))


def total_effects(ids: list[str]) -> int:
    return sum(sum(c.values()) for c in ra.effect_counts(ids).values())


def statuses(ids: list[str]) -> Counter[str]:
    return Counter(w.status for w in durable.list_workflows(workflow_ids=ids, limit=None))


def resumed_at_ms(workflow_id: str, after_ms: int) -> int:
    """When the workflow first moved on after ``after_ms``: its first step completed since."""
    done = [
        s.completed_at_ms
        for s in durable.store.load_steps(workflow_id).values()
        if s.completed_at_ms is not None and s.completed_at_ms > after_ms
    ]
    return min(done)


def executor_of(w: WorkerProcess) -> str:
    """The executor id a worker registered from its main process."""
    assert w.proc is not None
    with durable.store.engine.connect() as conn:
        found = conn.execute(
            text(
                "SELECT executor_id FROM durable_executors WHERE pid = :pid"
                " ORDER BY started_at_ms DESC LIMIT 1"
            ),
            {"pid": w.proc.pid},
        ).scalar()
    assert found is not None
    return str(found)


def running_under(executor_id: str) -> set[tuple[str, str]]:
    """The chain steps leased to an executor, as (workflow id, effect name)."""
    with durable.store.engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT workflow_id, step_id FROM durable_steps"
                " WHERE status = 'RUNNING' AND executor_id = :e"
            ),
            {"e": executor_id},
        ).all()
    return {(wid, f"s{step_id}") for wid, step_id in rows}


def test_chains_on_a_sigkilled_worker_all_finish_with_beat(
    worker: Callable[..., WorkerProcess], beat: Callable[[], BeatProcess]
) -> None:
    doomed = worker(APP, concurrency=CONCURRENCY)
    survivor = worker(APP, concurrency=CONCURRENCY)
    beat()
    handles = [five_links().start() for _ in range(CHAINS)]
    ids = [h.workflow_id for h in handles]
    wait_for(lambda: total_effects(ids) >= 60, timeout=30, interval=0.02)

    doomed_executor = executor_of(doomed)
    killed_ms = SYSTEM_CLOCK.now_ms()
    doomed.kill()
    in_flight = running_under(doomed_executor)
    wait_for(lambda: statuses(ids) == {S.SUCCESS: CHAINS}, timeout=60, interval=0.1)
    all_done_s = (SYSTEM_CLOCK.now_ms() - killed_ms) / 1000

    assert survivor.alive
    assert [h.get_result(timeout=1) for h in handles] == [[0, 1, 2, 3, 4]] * CHAINS
    counts = ra.effect_counts(ids)
    expected = {f"s{i}" for i in range(LINKS)}
    assert all(set(c) == expected for c in counts.values())  # every step ran at least once
    reruns = {(wid, step): n for wid, c in counts.items() for step, n in c.items() if n > 1}
    # only steps in flight at the kill ran twice: at most one per pool process
    assert all(n == 2 for n in reruns.values()), reruns
    assert set(reruns) <= in_flight, (reruns, in_flight)
    assert len(in_flight) <= CONCURRENCY, in_flight
    final = durable.list_workflows(workflow_ids=ids, limit=None)
    recovered = [w.workflow_id for w in final if w.recovery_attempts > 0]
    assert recovered  # the killed worker held work that only the sweep could hand on
    last_resume_s = max(resumed_at_ms(wid, killed_ms) for wid in recovered) / 1000
    last_resume_s -= killed_ms / 1000
    print(
        f"\nSIGKILL of 1 of 2 workers: {len(recovered)} workflows recovered, "
        f"{len(reruns)} steps ran twice (of {len(in_flight)} in flight); "
        f"kill to last resume {last_resume_s:.2f} s, "
        f"to all {CHAINS} SUCCESS {all_done_s:.2f} s (bound {RESUME_BOUND:.0f} s)"
    )
    assert last_resume_s < RESUME_BOUND


def test_step_killing_its_pool_process_is_dead_lettered_after_three_recoveries(
    worker: Callable[..., WorkerProcess],
) -> None:
    """No beat: the worker's WorkerLostError handler re-enqueues each time (its executor
    keeps beating, so the sweep would not), until max_recovery_attempts=3 is exceeded."""
    w = worker(APP, concurrency=1)
    handle = durable.start_workflow(ra.doomed, "oom")
    wid = handle.workflow_id

    with pytest.raises(AwaitedWorkflowMaxRecoveryAttemptsExceeded):
        handle.get_result(timeout=60)

    assert w.alive
    status = handle.get_status()
    assert status.status == S.MAX_RECOVERY_ATTEMPTS_EXCEEDED
    assert status.recovery_attempts == 3
    assert isinstance(status.error, MaxRecoveryAttemptsExceeded)
    assert ra.effect_counts([wid])[wid] == {"lose_process": 4}  # first run + 3 recoveries

    received = f"{ra.doomed.name}[{wid}] received"
    seen = w.log().count(received)
    durable.app.send_task(ra.doomed.name, ["oom"], task_id=wid, headers={DURABLE_HEADER: wid})
    wait_for(lambda: w.log().count(received) == seen + 1, timeout=15)
    time.sleep(2)  # time to run, had it been run
    assert ra.effect_counts([wid])[wid] == {"lose_process": 4}  # the stale message ran nothing
    after = handle.get_status()
    assert (after.status, after.recovery_attempts) == (S.MAX_RECOVERY_ATTEMPTS_EXCEEDED, 3)
    assert w.alive


def test_warm_shutdown_stops_the_executor_and_its_work_is_recovered_at_once(
    worker: Callable[..., WorkerProcess], stalled: Stalled
) -> None:
    w = worker(APP, concurrency=1)
    executor_id = executor_of(w)
    (wid,) = stalled(1, executor_id=executor_id)  # as if this worker were running it
    assert wid not in durable.recover().recovered  # a live owner keeps its work

    w.stop()
    assert w.proc is not None and w.proc.returncode == 0  # a warm shutdown, not a kill
    executor = durable.store.get_executor(executor_id)
    assert executor is not None and executor.status == "STOPPED"
    swept_ms = SYSTEM_CLOCK.now_ms()
    report = durable.recover()

    assert wid in report.recovered
    silent_s = (swept_ms - executor.last_heartbeat_ms) / 1000
    print(f"\nwarm shutdown: recovered {silent_s:.2f} s after the last heartbeat")
    assert silent_s < SETTINGS.executor_timeout  # not found by the timeout
    assert durable.get_workflow_status(wid).recovery_attempts == 1  # type: ignore[union-attr]
