"""celery_durable.testing, used as a user would: their own order workflow, tested for
recovery in-process with no broker, no database server and no waiting."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable

import pytest
from celery import Celery
from sqlalchemy import text

from celery_durable import Durable, MaxStepRetriesExceeded, WorkflowStatusString
from celery_durable.testing import DurableTestKit

app = Celery("kit_shop", set_as_current=False)
durable = Durable(app)
bodies: Counter[str] = Counter()
outages: list[str] = []  # the payment provider fails once per item here


class PaymentDeclined(Exception):
    pass


@durable.transaction()
def save_order(order_id: str, total: float) -> str:
    bodies["save_order"] += 1
    session = durable.sql_session
    session.execute(text("CREATE TABLE IF NOT EXISTS kit_orders (id TEXT PRIMARY KEY, t REAL)"))
    session.execute(text("INSERT INTO kit_orders VALUES (:i, :t)"), {"i": order_id, "t": total})
    return order_id


@durable.step(retries=3, interval_seconds=3600.0, dont_retry_on=PaymentDeclined)
def charge_payment(order_id: str, total: float) -> str:
    bodies["charge_payment"] += 1
    if outages:
        raise ConnectionError(f"payment provider down ({outages.pop()})")
    if total > 1000:
        raise PaymentDeclined(f"over limit: {total}")
    return f"tx-{order_id}"


@durable.step()
def send_confirmation(order_id: str, tx: str) -> str:
    bodies["send_confirmation"] += 1
    return f"mail-{order_id}"


@durable.workflow()
def process_order(order_id: str, total: float) -> dict[str, str]:
    saved = save_order(order_id, total)
    tx = charge_payment(order_id, total)
    return {"order": saved, "tx": tx, "mail": send_confirmation(order_id, tx)}


@pytest.fixture
def kit(durable_testkit: Callable[..., DurableTestKit]) -> DurableTestKit:
    bodies.clear()
    outages.clear()
    return durable_testkit(durable)


def test_a_crash_after_the_charge_replays_without_charging_again(kit: DurableTestKit) -> None:
    started = time.monotonic()
    with kit.crash_after(charge_payment):
        handle = durable.start_workflow(process_order, "o-1", 10.0)
    assert kit.crashed == [handle.workflow_id]
    assert handle.get_status().status == WorkflowStatusString.PENDING  # as a killed worker left it
    assert [s.name for s in durable.list_workflow_steps(handle.workflow_id)] == [
        save_order.name,
        charge_payment.name,
    ]

    report = kit.recover()

    assert report.recovered == [handle.workflow_id]
    assert handle.get_result() == {"order": "o-1", "tx": "tx-o-1", "mail": "mail-o-1"}
    assert bodies == {"save_order": 1, "charge_payment": 1, "send_confirmation": 1}
    assert handle.get_status().recovery_attempts == 1
    assert time.monotonic() - started < 1.0


def test_an_hour_long_retry_wait_is_skipped_at_once(kit: DurableTestKit) -> None:
    outages.append("first attempt")
    started = time.monotonic()
    handle = durable.start_workflow(process_order, "o-2", 20.0)

    assert handle.get_result()["tx"] == "tx-o-2"
    assert bodies["charge_payment"] == 2  # the first attempt failed, the retry 1 hour later ran
    assert kit.clock.skipped >= 3600.0
    assert time.monotonic() - started < 1.0
    [charge] = [s for s in durable.list_workflow_steps(handle.workflow_id) if s.step_id == 1]
    assert [type(e) for e in charge.errors] == [ConnectionError]


def test_business_errors_and_exhausted_retries_reach_the_caller(kit: DurableTestKit) -> None:
    declined = durable.start_workflow(process_order, "o-3", 5000.0)
    with pytest.raises(PaymentDeclined):
        declined.get_result()
    outages.extend(["1", "2", "3", "4"])
    exhausted = durable.start_workflow(process_order, "o-4", 1.0)
    with pytest.raises(MaxStepRetriesExceeded) as info:
        exhausted.get_result()
    assert len(info.value.errors) == 4
    assert kit.clock.skipped >= 3 * 3600.0


def test_chains_run_in_process_and_recover_too(kit: DurableTestKit) -> None:
    chained = durable.chain(charge_payment.s("c-1", 5.0), send_confirmation.si("c-1", "tx-c-1"))
    with kit.crash_after(charge_payment):
        handle = chained.start()
    assert handle.get_status().status == WorkflowStatusString.PENDING
    kit.recover()
    assert handle.get_result() == "mail-c-1"
    assert bodies == {"charge_payment": 1, "send_confirmation": 1}
