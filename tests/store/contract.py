"""Helpers of the ``DurableStore`` contract suite (tests/store/test_contract_*.py), whose
every case runs on ``MemoryStore``, SQLite and Postgres.

Each store starts empty and reads a ``ManualClock`` (tests/store/conftest.py), so times
and boundaries (a wake-up 50 ms ahead, a deadline reached, a heartbeat just stale) are
exact. The helpers here are shared with test_store.py and test_hot_path.py.
"""

from __future__ import annotations

import uuid
from typing import Any

from celery_durable.clock import SYSTEM_CLOCK
from celery_durable.store.interface import DurableStore
from celery_durable.types import (
    ExecutorRecord,
    RecoveryAction,
    ResumeOutcome,
    StepRecord,
    StepState,
    WorkflowKind,
    WorkflowRecord,
    WorkflowState,
)
from tests.store.conftest import ManualClock

S = WorkflowState
RECOVERED, DEAD_LETTERED = RecoveryAction.RECOVERED, RecoveryAction.DEAD_LETTERED
MINUTE = 60_000


def uid(prefix: str = "wf") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def workflow(store: DurableStore, status: str = S.ENQUEUED, **fields: Any) -> WorkflowRecord:
    """Insert a fresh workflow row (created and updated now) and return it."""
    now = store.clock.now_ms()
    values: dict[str, Any] = {
        "workflow_id": uid(),
        "name": "tests.store.wf",
        "status": status,
        "inputs": '{"args": [], "kwargs": {}}',
        "created_at_ms": now,
        "updated_at_ms": now,
        **fields,
    }
    record = WorkflowRecord(**values)
    assert store.insert_workflow(record)
    return record


def step(
    workflow_id: str, step_id: int, name: str = "tests.store.step", **fields: Any
) -> StepRecord:
    values: dict[str, Any] = {
        "status": "SUCCESS",
        "output": '"out"',
        "completed_at_ms": SYSTEM_CLOCK.now_ms(),
    }
    return StepRecord(workflow_id, step_id, name, **{**values, **fields})


def executor(store: DurableStore, heartbeat_ms: int | None = None) -> str:
    """Register a RUNNING executor whose last heartbeat is ``heartbeat_ms`` (default: now)."""
    executor_id = uid("ex")
    beat = store.clock.now_ms() if heartbeat_ms is None else heartbeat_ms
    store.register_executor(ExecutorRecord(executor_id, "host", 1, beat, beat, "RUNNING"))
    return executor_id


def clock(store: DurableStore) -> ManualClock:
    assert isinstance(store.clock, ManualClock)
    return store.clock


def fresh(store: DurableStore) -> int:
    """A stale_before_ms under which an executor that beat a minute ago is still live."""
    return store.clock.now_ms() - MINUTE


def get(store: DurableStore, workflow_id: str) -> WorkflowRecord:
    record = store.get_workflow(workflow_id)
    assert record is not None
    return record


def get_step(store: DurableStore, workflow_id: str, step_id: int) -> StepRecord:
    record = store.get_step(workflow_id, step_id)
    assert record is not None
    return record


def claim(store: DurableStore, wf: WorkflowRecord, executor_id: str) -> WorkflowRecord:
    claimed = store.claim_workflow(wf.workflow_id, wf.name, executor_id, fresh(store))
    assert claimed is not None
    return claimed


def resumed(store: DurableStore, workflow_id: str) -> ResumeOutcome:
    found = store.resume_workflow(workflow_id, fresh(store))
    assert found is not None
    return found[1]


def gave_up(record: WorkflowRecord) -> str:
    return f'"gave up {record.workflow_id}"'


def stalled(store: DurableStore, limit: int = 100) -> list[tuple[str, RecoveryAction]]:
    """One sweep: owners silent for a minute are gone, messages due for a minute lost."""
    cutoff = fresh(store)
    return [(r.workflow_id, a) for r, a in store.claim_stalled(cutoff, cutoff, limit, gave_up)]


# chains -----------------------------------------------------------------------
def chain(store: DurableStore, links: int = 2, **fields: Any) -> str:
    """Insert a chain (ENQUEUED) of ``links`` PENDING steps named link0, link1, ..."""
    now = store.clock.now_ms()
    values: dict[str, Any] = {"status": S.ENQUEUED, "created_at_ms": now, "updated_at_ms": now}
    wf = WorkflowRecord(uid("chain"), "tests.store.chain", kind=WorkflowKind.CHAIN, **values)
    wf = WorkflowRecord(**{**wf.__dict__, **fields})
    steps = [
        StepRecord(wf.workflow_id, i, f"link{i}", StepState.PENDING, attempts=0,
                   signature=f'{{"link": {i}}}', task_id=uid("task"))
        for i in range(links)
    ]  # fmt: skip
    assert store.insert_chain(wf, steps)
    return wf.workflow_id


def lease(store: DurableStore, workflow_id: str, step_id: int, executor_id: str) -> str:
    claimed = store.claim_chain_step(
        workflow_id, step_id, f"link{step_id}", executor_id, fresh(store)
    )
    assert claimed is not None and claimed.lease_id is not None
    return claimed.lease_id


def run_link(store: DurableStore, workflow_id: str, step_id: int, last: bool = False) -> None:
    held = lease(store, workflow_id, step_id, executor(store))
    assert store.finish_chain_step(workflow_id, step_id, held, f'"out{step_id}"', 1, last)
