"""A sweep racing a delivery: the late message of a chain step is claimed by a live worker
while the sweep, which judged that message lost, is inside its transaction.

Guarantee 3: two deliveries of a step never run it at once. The sweep may re-publish the
step (a duplicate is harmless) but must not take the lease from the live worker, or the
re-published delivery leases it too and runs the step a second time, concurrently.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event, text

from celery_durable.runtime.chains import ChainStepSpec, record_chain
from tests.apps import recovery_app as ra

from .conftest import Stalled
from .helpers import sink_queue

durable = ra.durable
runtime = durable.runtime
store = durable.store


def chain_with_a_late_second_step(workflow_id: str, live: str) -> None:
    """Step 0 finished 10 s ago; step 1's message has not arrived: it looks lost."""
    link = {"task": ra.advance.name, "kwargs": {}, "options": {"queue": sink_queue()}}
    specs = [
        ChainStepSpec(ra.advance.name, f"{workflow_id}-{i}", {**link, "args": [] if i else [[]]})
        for i in range(2)
    ]
    record_chain(runtime, workflow_id, specs, max_recovery_attempts=None)
    first = store.claim_chain_step(workflow_id, 0, ra.advance.name, live, runtime.stale_before_ms)
    assert first is not None and first.lease_id
    output = runtime.serializer.dumps([0])
    assert store.finish_chain_step(workflow_id, 0, first.lease_id, output, 1, last=False)
    with store.engine.begin() as conn:
        for table, column in (
            ("durable_steps", "completed_at_ms"),
            ("durable_workflows", "updated_at_ms"),
        ):
            conn.execute(
                text(f"UPDATE {table} SET {column} = {column} - 10000 WHERE workflow_id = :w"),
                {"w": workflow_id},
            )


@pytest.fixture
def claim_during_sweep() -> Iterator[dict[str, Any]]:
    """Arm with ``(workflow_id, executor_id)``: that executor claims step 1 just before the
    sweep's UPDATE of the workflow's steps (as a delivery landing at that moment would)."""
    armed: dict[str, Any] = {}

    def before(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        target = armed.get("target")
        if target is None or not statement.lstrip().startswith("UPDATE durable_steps"):
            return
        if target[0] not in str(parameters):
            return
        del armed["target"]
        armed["claimed"] = store.claim_chain_step(
            target[0], 1, ra.advance.name, target[1], runtime.stale_before_ms
        )

    event.listen(store.engine, "before_cursor_execute", before)
    yield armed
    event.remove(store.engine, "before_cursor_execute", before)


def test_sweep_keeps_a_lease_taken_by_a_live_worker_meanwhile(
    stalled: Stalled, claim_during_sweep: dict[str, Any]
) -> None:
    wid = f"{stalled.prefix}-race"
    live = f"{stalled.prefix}-live"
    runtime.register_executor(live)  # heartbeat now: alive
    chain_with_a_late_second_step(wid, live)
    claim_during_sweep["target"] = (wid, live)

    report = durable.recover()

    claimed = claim_during_sweep.get("claimed")
    assert claimed is not None, "the sweep did not treat the chain as stalled"
    assert wid in report.recovered  # re-published: a duplicate message, harmless by itself
    step = store.get_step(wid, 1)
    assert step is not None
    # the live worker still holds step 1; the re-published delivery must back off
    assert (step.status, step.executor_id, step.lease_id) == ("RUNNING", live, claimed.lease_id)
    assert (
        store.claim_chain_step(
            wid, 1, ra.advance.name, f"{stalled.prefix}-other", runtime.stale_before_ms
        )
        is None
    )
