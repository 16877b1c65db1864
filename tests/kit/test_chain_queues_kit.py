"""Chain steps in durable queues under ``celery_durable.testing``: a step routed to a
durable queue (here by its task's own ``queue``, and by its signature's) waits for a slot,
and its checkpoint (or the end of the step before) admits the next; the chain's ``queue``
goes back to the next step's plain queue once it leaves."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from celery import Celery, chain
from celery.exceptions import CDeprecationWarning

from celery_durable import Durable
from celery_durable.runtime.queues import admission_pass
from celery_durable.testing import DurableTestKit

app = Celery("kit_chain_queues", set_as_current=False)
durable = Durable(app)
single = durable.queue("kit-single", concurrency=1)
ranked = durable.queue("kit-ranked", concurrency=1, priority_enabled=True)
ran: list[str] = []


@durable.step()
def prep(key: str) -> str:
    ran.append(f"prep:{key}")
    return key


with pytest.warns(CDeprecationWarning):  # Celery 6 drops the task's queue attribute

    @durable.step(queue="kit-single")
    def charge(key: str) -> str:
        ran.append(f"charge:{key}")
        return key

    charge.bind(app)


@durable.step()
def done(key: str) -> str:
    ran.append(f"done:{key}")
    return key


@pytest.fixture
def kit() -> Iterator[DurableTestKit]:
    ran.clear()
    with DurableTestKit(durable) as kit:
        yield kit


def test_a_step_waits_for_its_queue_and_the_chain_leaves_it(kit: DurableTestKit) -> None:
    with kit.hold(charge):  # as if no worker took the first charge yet
        results = [chain(prep.s(k), charge.s(), done.s()).apply_async() for k in "abc"]
        ids = [r.parent.parent.id for r in results]
        waiting = durable.list_workflows(queue=single.name, status="ENQUEUED", limit=None)
        assert sorted(w.workflow_id for w in waiting) == sorted(ids)
        assert [s.running for s in durable.queue_stats() if s.queue == single.name] == [1]
    assert [r for r in ran if r.startswith("charge")] == ["charge:a", "charge:b", "charge:c"]
    for wid in ids:
        status = durable.get_workflow_status(wid)
        assert status is not None and status.status == "SUCCESS" and status.queue == "celery"


def test_a_first_step_in_a_queue_waits_with_its_priority(kit: DurableTestKit) -> None:
    with kit.hold(prep):
        blocker = chain(prep.si("blocker").set(queue=ranked.name), done.s()).apply_async()
        low = chain(prep.si("low").set(queue=ranked.name, priority=5), done.s()).apply_async()
        high = prep.apply_async(("high",), queue=ranked.name, priority=1)
    assert [r for r in ran if r.startswith("prep")] == ["prep:blocker", "prep:high", "prep:low"]
    assert blocker.get(timeout=1) == "blocker" and low.get(timeout=1) == "low"
    assert high.get(timeout=1) == "high"


def test_a_chains_start_options_deduplication_delay_and_timeout(kit: DurableTestKit) -> None:
    """A chain's first step in a durable queue takes a deduplication id (a second start
    while the first is active raises) and a delay; ``timeout_seconds`` sets its deadline;
    a deduplication id without a durable queue is refused, nothing recorded."""
    from celery_durable import DuplicateWorkflowError

    with kit.hold(prep):
        first = prep.apply_async(("a",), queue=single.name, deduplication_id="order-1")
        with pytest.raises(DuplicateWorkflowError) as err:
            prep.apply_async(("b",), queue=single.name, deduplication_id="order-1")
        assert err.value.workflow_id == first.id
    assert first.get(timeout=1) == "a"
    assert (
        prep.apply_async(("c",), queue=single.name, deduplication_id="order-1").get(timeout=1)
        == "c"
    )  # the holder ended: the id is free again

    late = chain(prep.si("late").set(queue=single.name), done.s()).apply_async(delay_seconds=30)
    waiting = durable.get_workflow_status(late.parent.id)
    assert waiting is not None and waiting.status == "ENQUEUED"
    assert admission_pass(durable.runtime, [single.spec]) == 0  # a worker's pass: not yet
    kit.clock.advance(31)
    assert admission_pass(durable.runtime, [single.spec]) == 1
    assert late.get(timeout=1) == "late"

    timed = chain(prep.si("t"), done.s()).apply_async(timeout_seconds=60)
    status = durable.get_workflow_status(timed.parent.id)
    assert status is not None and status.deadline is not None
    assert 59 <= status.deadline.timestamp() - kit.clock.time() <= 60

    with pytest.raises(ValueError, match="durable queue"):
        chain(prep.si("x"), done.s()).apply_async(deduplication_id="order-2")
    assert "prep:x" not in ran


failing: set[str] = set()


@durable.step()
def pay(key: str) -> str:
    ran.append(f"pay:{key}")
    if key in failing:
        raise RuntimeError(f"payment {key} failed")
    return key


def test_a_resumed_chain_waits_for_a_slot_for_its_failed_step(kit: DurableTestKit) -> None:
    failing.add("x")
    failed = chain(prep.s("x"), pay.s().set(queue=single.name), done.s()).apply_async()
    workflow_id = failed.parent.parent.id
    assert durable.get_workflow_status(workflow_id).status == "ERROR"  # type: ignore[union-attr]
    failing.clear()
    with kit.hold(charge):  # another chain's charge holds the queue's one slot
        holder = chain(prep.s("h"), charge.s(), done.s()).apply_async()
        durable.resume_workflow(workflow_id)
        status = durable.get_workflow_status(workflow_id)
        assert status is not None and status.status == "ENQUEUED"
        assert [s.running for s in durable.queue_stats() if s.queue == single.name] == [1]
    assert holder.get(timeout=1) == "h" and failed.get(timeout=1) == "x"
    queued = [r for r in ran if r.startswith(("pay", "charge"))]
    assert queued == ["pay:x", "charge:h", "pay:x"]  # the resumed step after the holder
