"""Chain steps routed to durable queues, on real workers (the three shared `celery worker
-c 4`), with timestamps written from inside the steps: a chain prep -> charge -> done whose
charge step is routed (``task_routes``, or its signature's queue) to a concurrency=2
durable queue, and prep and done to a plain queue."""

from __future__ import annotations

import time
import uuid
from collections import Counter

import pytest
from celery import chain

from tests.apps.flow_app import PLAIN_QUEUE, charge, charges, done, durable, prep
from tests.conftest import WorkerProcess, wait_for
from tests.flow.conftest import max_overlap, runs, sweep_until_finished
from tests.flow.test_queues_worker import finished

pytestmark = pytest.mark.usefixtures("shared_workers")


def test_chain_steps_are_admitted_by_their_durable_queue() -> None:
    """10 chains started at once: never more than 2 charges run at once over 12 pool
    processes, while prep and done are not limited; every chain ends SUCCESS with each
    of its steps run once."""
    key = f"ch-{uuid.uuid4().hex[:6]}-"
    results = [
        chain(prep.s(f"{key}{i}", 0.3), charge.s(0.4), done.s(0.3)).apply_async() for i in range(10)
    ]
    ids = [r.parent.parent.id for r in results]  # the workflow id is the root task id
    wait_for(lambda: finished(ids), timeout=60)
    seen = runs(key)
    assert Counter(k.rsplit(":", 1)[1] for _, k, *_ in seen) == {
        "prep": 10, "charge": 10, "done": 10,
    }  # fmt: skip
    assert len({(w, k) for w, k, *_ in seen}) == 30  # each step of each chain once
    by_step = {
        step: [(s, e) for _, k, _, s, e in seen if k.endswith(f":{step}") and e is not None]
        for step in ("prep", "charge", "done")
    }
    assert max_overlap(by_step["charge"]) == 2
    assert max_overlap(by_step["prep"]) > 2  # not limited: the 10 preps overlap widely
    stats = {s.queue: s for s in durable.queue_stats()}[charges.name]
    assert (stats.running, stats.waiting) == (0, 0)
    status = durable.get_workflow_status(ids[0])
    assert status is not None and status.queue == PLAIN_QUEUE  # it left the durable queue


def test_a_sigkilled_worker_keeps_its_chain_steps_slots_until_recovery(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """5 chains whose charge (1 s) goes to a concurrency=2 queue consumed by one worker,
    SIGKILLed while it runs 2 of them; another worker takes the queue, the sweep recovers
    them: all finish, and never more than 2 charges ran at once (a killed step holds its
    slot until the sweep hands it on)."""
    from tests.apps.flow_app import charges_crash

    key = f"chk-{uuid.uuid4().hex[:6]}-"
    queue = charges_crash.name
    doomed = WorkerProcess("tests.apps.flow_app", tmp_path, queues=queue, concurrency=4)
    doomed.start()
    results = [
        chain(prep.s(f"{key}{i}", 0.0), charge.s(1.0).set(queue=queue), done.s(0.0)).apply_async()
        for i in range(5)
    ]
    ids = [r.parent.parent.id for r in results]
    wait_for(lambda: sum(1 for _, k, *_ in runs(key) if k.endswith(":charge")) == 2, timeout=20)
    doomed.kill()
    killed_at = time.time()
    rescue = WorkerProcess("tests.apps.flow_app", tmp_path, queues=queue, concurrency=4)
    rescue.start()
    try:
        sweep_until_finished(ids, timeout=60)
    finally:
        rescue.stop(timeout=10)
    seen = runs(key)
    charged = [
        (s, e if e is not None else killed_at) for _, k, _, s, e in seen if k.endswith(":charge")
    ]
    assert max_overlap(charged) <= 2
    assert len(charged) == 7  # each chain's charge once, the 2 killed ones twice
    assert sum(1 for _, k, *_ in seen if k.endswith(":done")) == 5


def test_worker_concurrency_bounds_each_workers_chain_steps() -> None:
    """charge sent to a worker_concurrency=1 queue: each of the three workers admits for
    itself and runs one charge at a time (its own queue <name>@<executor id>)."""
    from tests.apps.flow_app import per_worker

    key = f"chw-{uuid.uuid4().hex[:6]}-"
    results = [
        chain(
            prep.s(f"{key}{i}", 0.0), charge.s(0.3).set(queue=per_worker.name), done.s(0.0)
        ).apply_async()
        for i in range(9)
    ]
    ids = [r.parent.parent.id for r in results]
    wait_for(lambda: finished(ids), timeout=40)
    charged = [(w, s, e) for _, k, w, s, e in runs(key) if k.endswith(":charge")]
    assert len(charged) == 9
    workers = {w for w, _, _ in charged}
    for worker in workers:
        assert max_overlap([(s, e) for w, s, e in charged if w == worker and e]) == 1, worker
    assert len(workers) >= 2
