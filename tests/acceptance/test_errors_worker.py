"""A workflow killed inside its ``except`` branch replays into the same branch: the stored
error comes back with its attributes (the DBOS guide's InsufficientInventoryError)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from celery_durable import WorkflowStatusString as S
from tests.apps import payments as p
from tests.conftest import resume_after_crash

APP = "tests.apps.payments"


def test_a_workflow_killed_in_its_except_branch_replays_into_it(worker: Any, flags: Path) -> None:
    p.setup()
    (flags / "in_except_branch").touch()
    first = worker(APP, concurrency=1)
    handle = p.durable.start_workflow(p.order_with_shortage, "sku-7", 5)
    assert first.wait_exit(timeout=60) == -9  # killed after the except branch's step
    assert p.effects(handle.workflow_id) == {"reserve_stock": 1, "note_shortage": 1}

    worker(APP, concurrency=1)
    resume_after_crash(p.durable, handle.workflow_id)
    result = handle.get_result(timeout=60)

    assert result == {"short": "sku-7", "available": 2, "noted": "sku-7 short by 3"}
    assert p.effects(handle.workflow_id) == {"reserve_stock": 1, "note_shortage": 1}
    assert handle.get_status().status == S.SUCCESS
