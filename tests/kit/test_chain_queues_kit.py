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
