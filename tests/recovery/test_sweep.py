"""The recovery sweep in-process on Postgres: concurrent sweeps, cost, deadlines, signals.

No worker runs here: stalled rows are written directly, and what the sweep re-publishes
goes to a queue nobody consumes (emptied after each test).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence

import pytest
from sqlalchemy import text

from celery_durable import SetWorkflowTimeout
from celery_durable import WorkflowStatusString as S
from celery_durable.clock import SYSTEM_CLOCK
from celery_durable.errors import (
    AwaitedWorkflowCancelled,
    AwaitedWorkflowMaxRecoveryAttemptsExceeded,
    WorkflowTimeoutError,
)
from celery_durable.integration.signals import workflow_dead_lettered, workflow_recovered
from celery_durable.runtime.recovery import RecoveryReport
from tests.apps import recovery_app as ra
from tests.conftest import ROOT

from .conftest import Stalled
from .helpers import captured

durable = ra.durable
STALLED = 200
FINISHED = 100_000

# a sweep in its own process: says "ready" once connected, sweeps on "go", prints what it did
SWEEP_SCRIPT = """
import json, sys
from tests.apps.recovery_app import durable
durable.store.get_workflow("-")
print("ready", flush=True)
sys.stdin.readline()
print(json.dumps(durable.recover().recovered), flush=True)
"""


@pytest.fixture(autouse=True)
def _on_postgres() -> None:
    assert durable.store.engine.dialect.name == "postgresql"


def attempts(ids: Sequence[str]) -> Counter[int]:
    """How many of ``ids`` have each recovery_attempts value."""
    found = durable.list_workflows(workflow_ids=list(ids), limit=None)
    assert len(found) == len(ids)
    return Counter(w.recovery_attempts for w in found)


def assert_split(ids: list[str], recovered: list[list[str]]) -> None:
    """Each stalled workflow was re-enqueued by exactly one of the sweeps, once."""
    first, second = (set(r) for r in recovered)
    assert not first & second
    assert (first | second) >= set(ids)
    assert attempts(ids) == {1: len(ids)}
    mine = [len(set(ids) & set(r)) for r in recovered]
    print(f"\nconcurrent sweeps split {len(ids)} stalled workflows as {mine}")


def test_two_threads_sweeping_at_once_recover_each_workflow_once(stalled: Stalled) -> None:
    ids = stalled(STALLED)
    reports: list[RecoveryReport] = []
    barrier = threading.Barrier(2)

    def sweep() -> None:
        barrier.wait()
        reports.append(durable.recover())

    with captured(workflow_recovered) as signalled:
        threads = [threading.Thread(target=sweep) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)

    assert len(reports) == 2
    assert_split(ids, [r.recovered for r in reports])
    mine = Counter(wid for wid, _ in signalled if wid in set(ids))
    assert mine == dict.fromkeys(ids, 1)  # workflow_recovered fired once per workflow
    assert {n for wid, n in signalled if wid in set(ids)} == {1}


def test_two_processes_sweeping_at_once_recover_each_workflow_once(stalled: Stalled) -> None:
    ids = stalled(STALLED)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", SWEEP_SCRIPT],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        outputs = [proc.communicate(timeout=60)[0] for proc in procs]
    finally:
        for proc in procs:
            proc.kill()
    assert [p.returncode for p in procs] == [0, 0]
    assert_split(ids, [json.loads(out.strip().splitlines()[-1]) for out in outputs])


def timed_sweep(stalled: Stalled, rounds: int = 3) -> float:
    """Best time of one sweep that re-enqueues 100 stalled workflows (rows removed after)."""
    best = float("inf")
    for _ in range(rounds):
        ids = stalled(100)
        began = time.perf_counter()
        report = durable.recover()
        best = min(best, time.perf_counter() - began)
        assert set(ids) <= set(report.recovered)
        stalled.delete(ids)  # ENQUEUED on a queue nobody reads: stalled again in 3 s
    return best


def insert_finished(stalled: Stalled, count: int) -> None:
    now = SYSTEM_CLOCK.now_ms()
    with durable.store.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO durable_workflows (workflow_id, name, kind, status, inputs, output,"
                " recovery_attempts, run_count, created_at_ms, updated_at_ms, started_at_ms,"
                " completed_at_ms)"
                " SELECT :p || '-done-' || g, :name, 'workflow', 'SUCCESS',"
                ' \'{"args": [], "kwargs": {}}\', \'"ok"\', 0, 1, :t - g, :t - g, :t - g, :t - g'
                " FROM generate_series(1, :n) AS g"
            ),
            {"p": stalled.prefix, "name": ra.quick.name, "t": now, "n": count},
        )
    with durable.store.engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").execute(
            text("ANALYZE durable_workflows")
        )


def test_sweep_cost_does_not_grow_with_finished_workflows(stalled: Stalled) -> None:
    durable.recover()  # warm: connections, and whatever earlier tests left stalled
    alone = timed_sweep(stalled)
    insert_finished(stalled, FINISHED)
    try:
        crowded = timed_sweep(stalled)
    finally:
        stalled.delete()
    print(
        f"\nsweep of 100 stalled: {alone * 1000:.1f} ms alone, "
        f"{crowded * 1000:.1f} ms beside {FINISHED:,} finished ({crowded / alone:.2f}x)"
    )
    assert crowded < 5 * alone


def test_deadline_cancels_a_workflow_never_picked_up(stalled: Stalled) -> None:
    with SetWorkflowTimeout(1):
        handle = durable.start_workflow(ra.quick, "never-run")
    assert handle.workflow_id not in durable.recover().cancelled  # not due yet
    assert handle.get_status().status == S.ENQUEUED

    time.sleep(1.1)
    report = durable.recover()

    assert handle.workflow_id in report.cancelled
    status = handle.get_status()
    assert status.status == S.CANCELLED
    assert isinstance(status.error, WorkflowTimeoutError)
    with pytest.raises(AwaitedWorkflowCancelled):
        handle.get_result(timeout=5)
    stalled.delete([handle.workflow_id])


def only(ids: Sequence[str], seen: list[tuple[str, int]]) -> list[tuple[str, int]]:
    return sorted((w, n) for w, n in seen if w in set(ids))


def test_sweep_signals_recovered_and_dead_lettered(stalled: Stalled) -> None:
    revived = stalled(3)
    dead = stalled(2, max_recovery_attempts=0)
    with captured(workflow_recovered) as recovered, captured(workflow_dead_lettered) as lettered:
        report = durable.recover()

    assert set(revived) <= set(report.recovered)
    assert set(dead) <= set(report.dead_lettered)
    assert not set(dead) & set(report.recovered)
    assert only(revived, recovered) == sorted((w, 1) for w in revived)
    assert only(dead, lettered) == sorted((w, 1) for w in dead)
    for wid in dead:
        handle = durable.retrieve_workflow(wid)
        assert handle.get_status().status == S.MAX_RECOVERY_ATTEMPTS_EXCEEDED
        with pytest.raises(AwaitedWorkflowMaxRecoveryAttemptsExceeded):
            handle.get_result(timeout=5)
    again = durable.recover()  # a dead-lettered workflow is never picked up again
    assert not set(dead) & (set(again.recovered) | set(again.dead_lettered))
