"""Child workflows in a durable queue on real workers (three `celery worker -c 4` sharing
the queues): a parent's children wait for admission like any workflow of the queue, with
timestamps written from inside them."""

from __future__ import annotations

import uuid

import pytest

from tests.apps.flow_app import durable, fan_out, kids
from tests.flow.conftest import max_overlap, runs

pytestmark = pytest.mark.usefixtures("shared_workers")


def test_a_parents_children_in_a_queue_run_at_most_two_at_once() -> None:
    """6 children of 0.5 s in a concurrency=2 queue, over 12 pool processes: never more
    than 2 at once, all end, and the parent (woken by the last) gets their results."""
    key = f"kids-{uuid.uuid4().hex[:6]}-"
    handle = durable.start_workflow(fan_out, key, 6, 0.5)
    assert handle.get_result(timeout=60) == [f"{key}{i}" for i in range(6)]
    assert handle.get_status().status == "SUCCESS"  # type: ignore[union-attr]
    seen = runs(key)
    assert len(seen) == 6 and all(end is not None for *_, end in seen)
    assert max_overlap([(s, e) for *_, s, e in seen if e is not None]) == 2
    total = max(e for *_, e in seen if e is not None) - min(s for *_, s, _ in seen)
    assert total <= 2 * (6 * 0.5 / 2), f"{total:.2f}s"  # freed slots refilled at once
    children = durable.list_workflows(parent_workflow_id=handle.workflow_id, limit=None)
    assert sorted(c.workflow_id for c in children) == [
        f"{handle.workflow_id}-{i}" for i in range(6)
    ]
    assert {(c.queue, c.status) for c in children} == {(kids.name, "SUCCESS")}
