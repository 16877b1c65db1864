"""The seed scenario: a worker SIGKILLed right after charge_payment's checkpoint."""

from __future__ import annotations

import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from sqlalchemy import text

from celery_durable import WorkflowStatusString as S
from tests.apps import shop
from tests.conftest import resume_after_crash


def effects(workflow_id: str) -> Counter[str]:
    with shop.durable.store.engine.connect() as conn:
        rows = conn.execute(
            text("SELECT step FROM test_effects WHERE workflow_id = :w"), {"w": workflow_id}
        ).all()
    return Counter(r[0] for r in rows)


def test_crash_after_charge_then_resume_runs_only_confirmation(worker: Any, flags: Path) -> None:
    shop.setup()
    (flags / "before_confirmation").touch()
    first = worker("tests.apps.shop", concurrency=1)
    order = f"o-{uuid.uuid4().hex[:8]}"
    handle = shop.durable.start_workflow(shop.process_order, order, 10.0)

    assert first.wait_exit(timeout=60) == -9  # the worker group was SIGKILLed mid-workflow
    assert handle.get_status().status == S.PENDING
    assert effects(handle.workflow_id) == {"save_order": 1, "charge_payment": 1}
    steps = shop.durable.list_workflow_steps(handle.workflow_id)
    assert [s.name for s in steps] == [
        "tests.apps.shop.save_order",
        "tests.apps.shop.charge_payment",
    ]

    worker("tests.apps.shop", concurrency=1)
    resume_after_crash(shop.durable, handle.workflow_id)
    result = handle.get_result(timeout=60)

    assert result == {"order": order, "tx": f"tx-{order}-10.00", "mail": f"mail-{order}"}
    assert effects(handle.workflow_id) == {
        "save_order": 1,
        "charge_payment": 1,
        "send_confirmation": 1,
    }
    with shop.durable.store.engine.connect() as conn:
        orders = conn.execute(
            text("SELECT count(*) FROM test_orders WHERE order_id = :o"), {"o": order}
        ).scalar()
    assert orders == 1
    status = handle.get_status()
    assert status.status == S.SUCCESS
    assert status.recovery_attempts == 1
