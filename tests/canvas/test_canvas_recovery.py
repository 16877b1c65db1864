"""Durable chords after crashes, lost messages and duplicates, on real workers.

At the issue's figures: a chord of 20 members of 0.3 s with a worker killed, a crash at the
exact point between the last member's commit and the callback's publish, Redis losing 10
queued members and 5 waiting on a retry, duplicate deliveries.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from celery_durable import WorkflowStatusString as S
from celery_durable.integration.publisher import publish_stage
from celery_durable.runtime.canvas import OpenStage, load_layout
from tests.apps import canvas_app as ca
from tests.conftest import wait_for
from tests.recovery.helpers import lose_messages, session_queue

APP = "tests.apps.canvas_app"


def own_queue(tag: str) -> str:
    ca.setup()
    queue = f"{session_queue()}-{tag}-{uuid.uuid4().hex[:6]}"
    lose_messages(queue)
    return queue


def chord_on(queue: str, xs: list[int], seconds: float = 0.0) -> Any:
    header = [ca.member.s(x, seconds).set(queue=queue) for x in xs]
    return ca.durable.chord(header, ca.total.s().set(queue=queue))


def statuses(wid: str) -> list[str]:
    return [s.status for s in ca.durable.list_workflow_steps(wid)]


def sweep_until(done: Callable[[], bool], timeout: float = 30.0) -> None:
    """Run the recovery sweep in this process until ``done`` (it publishes to real queues)."""

    def swept() -> bool:
        ca.durable.recover()
        return done()

    wait_for(swept, timeout=timeout, interval=0.5)


def test_worker_killed_while_members_run_beat_finishes_the_chord(
    two_workers: Any, worker: Any, beat: Any
) -> None:
    queue = own_queue("kill")
    doomed = worker(APP, queues=queue, concurrency=2)
    survivor = worker(APP, queues=queue, concurrency=2)
    beat(APP)  # the sweep every second, run by the package's worker on the session queue
    xs = list(range(20))
    h = chord_on(queue, xs, seconds=0.3).start()
    wait_for(lambda: statuses(h.workflow_id).count("SUCCESS") >= 3)
    doomed.kill()

    assert h.get_result(timeout=40) == [x * x for x in xs]
    counts = ca.effects(h.workflow_id)
    assert counts["total"] == 1
    reruns = [x for x in xs if counts[f"member:{x}"] == 2]
    assert all(counts[f"member:{x}"] in (1, 2) for x in xs)
    assert len(reruns) <= 2  # only what ran on the killed worker (2 processes) ran twice
    assert h.get_status().status == S.SUCCESS
    survivor.kill()


def test_crash_between_last_member_commit_and_callback_publish(worker: Any, flags: Path) -> None:
    queue = own_queue("fault")
    (flags / "after_last_member").touch()
    doomed = worker(APP, queues=queue, concurrency=2)
    h = chord_on(queue, [1, 2, 3]).start()
    assert doomed.wait_exit(timeout=30) == -9
    assert statuses(h.workflow_id) == ["SUCCESS"] * 3 + ["PENDING"]  # callback never sent

    second = worker(APP, queues=queue, concurrency=2)
    sweep_until(lambda: h.get_status().status == S.SUCCESS)
    assert h.get_result(timeout=10) == [1, 4, 9]
    assert ca.effects(h.workflow_id) == {"member:1": 1, "member:2": 1, "member:3": 1, "total": 1}
    second.kill()


def test_queued_members_lost_with_redis_data_finish_with_exact_counts(worker: Any) -> None:
    queue = own_queue("lost")
    xs = list(range(6))
    h = chord_on(queue, xs).start()  # no worker on the queue yet: all six wait in Redis
    assert lose_messages(queue) == 6
    late = worker(APP, queues=queue, concurrency=2)
    sweep_until(lambda: h.get_status().status == S.SUCCESS)
    assert h.get_result(timeout=10) == [x * x for x in xs]
    assert ca.effects(h.workflow_id) == {**{f"member:{x}": 1 for x in xs}, "total": 1}
    late.kill()


def test_duplicate_messages_of_a_running_and_a_finished_member(two_workers: Any) -> None:
    h = ca.durable.chord([ca.member.s(1), ca.member.s(2, 1.5)], ca.total.s()).start()
    wid = h.workflow_id
    wait_for(lambda: statuses(wid)[:2] == ["SUCCESS", "RUNNING"])
    record = ca.durable.store.get_workflow(wid)
    assert record is not None
    layout = load_layout(ca.durable.runtime, record)
    assert layout is not None
    steps = ca.durable.store.load_steps(wid)
    members = [
        (steps[i], dict(ca.durable.runtime.serializer.loads(steps[i].signature))) for i in (0, 1)
    ]
    publish_stage(
        ca.app, ca.durable.send_task, wid, OpenStage(layout.stages[0], members, None, False)
    )

    assert h.get_result(timeout=30) == [1, 4]
    assert ca.effects(wid) == {"member:1": 1, "member:2": 1, "total": 1}


def test_redis_emptied_with_members_queued_and_retries_scheduled(worker: Any) -> None:
    """Five members wait on a scheduled retry (their messages reserved by a worker that
    dies), ten wait in a queue no worker reads; Redis then loses both queues."""
    retrying, waiting = own_queue("retry"), own_queue("waiting")
    first = worker(APP, queues=retrying, concurrency=2)
    header = [ca.retry_once.s(x).set(queue=retrying) for x in range(5)]
    header += [ca.member.s(x).set(queue=waiting) for x in range(10)]
    h = ca.durable.chord(header, ca.total.s().set(queue=retrying)).start()
    wait_for(lambda: statuses(h.workflow_id)[:5] == ["RETRYING"] * 5)
    first.kill()  # no body runs: the retries are due in 3 s
    lose_messages(retrying)
    assert lose_messages(waiting) == 10

    late = worker(APP, queues=f"{retrying},{waiting}", concurrency=2)
    sweep_until(lambda: h.get_status().status == S.SUCCESS)
    assert h.get_result(timeout=10) == [*range(5), *(x * x for x in range(10))]
    counts = ca.effects(h.workflow_id)
    assert counts == {
        **{f"retry_once:{x}": 2 for x in range(5)},  # the failed attempt and the retry
        **{f"member:{x}": 1 for x in range(10)},
        "total": 1,
    }
    late.kill()
