"""Redis restarted empty: queued chains and chains waiting on a retry finish after the sweep.

The machine's Redis is shared, so the "restart" drops only this session's queue: its
messages, those a worker had reserved, and the bindings that route publishes to it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from celery_durable import WorkflowStatusString as S
from tests.apps import recovery_app as ra
from tests.conftest import WorkerProcess, wait_for

from .helpers import APP, BeatProcess, lose_messages, session_queue

durable = ra.durable
QUEUED = 20
RETRYING = 5
LINKS = 5


def five_links() -> Any:
    return durable.chain(ra.advance.s([]), *(ra.advance.s() for _ in range(LINKS - 1)))


def waiting_on_retry(workflow_id: str) -> bool:
    step = durable.store.get_step(workflow_id, 0)
    return step is not None and step.status == "RETRYING"


def test_chains_lost_with_redis_data_finish_after_the_sweep(
    worker: Callable[..., WorkerProcess], beat: Callable[[], BeatProcess]
) -> None:
    first = worker(APP)
    retrying = [durable.chain(ra.flaky_once.s([]), ra.advance.s()).start() for _ in range(RETRYING)]
    wait_for(lambda: all(waiting_on_retry(h.workflow_id) for h in retrying), timeout=30)
    first.stop()  # the retries are due in 2 s: their messages wait in Redis
    queued = [five_links().start() for _ in range(QUEUED)]  # no worker: they stay queued

    lost = lose_messages(session_queue(), bindings=True)
    assert lost >= QUEUED + RETRYING
    restarted = time.monotonic()
    worker(APP)
    beat()

    for handle in queued:
        assert handle.get_result(timeout=60) == list(range(LINKS))
    for handle in retrying:
        assert handle.get_result(timeout=60) == [99, 1]
    took = time.monotonic() - restarted
    print(f"\nafter losing {lost} messages: all {QUEUED + RETRYING} chains done in {took:.2f} s")

    ids = [h.workflow_id for h in queued + retrying]
    final = durable.list_workflows(workflow_ids=ids, limit=None)
    assert {w.status for w in final} == {S.SUCCESS}
    # a lost message is not a crash: re-sending it counts no recovery attempt, so a backlog
    # or a broker restart can never dead-letter work
    assert [w.recovery_attempts for w in final] == [0] * len(final)
    counts = ra.effect_counts(ids)
    for handle in queued:
        assert counts[handle.workflow_id] == {f"s{i}": 1 for i in range(LINKS)}
    for handle in retrying:  # the failed attempt and the retry, each once
        assert counts[handle.workflow_id] == {"flaky": 2, "s1": 1}
