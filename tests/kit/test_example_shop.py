"""The README's "Testing your workflows" example, on the example project's own order
workflow: only ``celery_durable.testing``, under a second."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from celery_durable.testing import DurableTestKit

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "example_project"))


@pytest.fixture
def shop(
    durable_testkit: Callable[..., DurableTestKit], tmp_path: Path, monkeypatch: Any
) -> Iterator[tuple[ModuleType, DurableTestKit]]:
    monkeypatch.setenv("SHOP_BROKER_DIR", str(tmp_path / "broker"))  # never used: no broker
    from shop import tasks

    kit = durable_testkit(tasks.durable)
    tasks.create_tables()
    yield tasks, kit


def test_a_crash_after_the_charge_never_charges_twice(shop: Any, monkeypatch: Any) -> None:
    tasks, kit = shop
    started = time.monotonic()
    with kit.crash_after(tasks.charge_payment):
        handle = tasks.durable.start_workflow(tasks.process_order, "o-1", 10.0)
    assert handle.get_status().status == "PENDING"  # its worker "died" after the charge

    kit.recover()  # the sweep re-enqueues it; the replay returns the recorded charge

    assert handle.get_result() == {"order": "o-1", "tx": "tx-o-1-10.00", "mail": "mail-o-1"}
    counts = tasks.count_effects(["o-1"])["o-1"]
    assert counts == {"save_order": 1, "charge_payment": 1, "send_confirmation": 1}
    assert time.monotonic() - started < 1.0


def test_an_hour_long_retry_wait_is_skipped_and_a_decline_is_not_retried(
    shop: Any, monkeypatch: Any
) -> None:
    tasks, kit = shop
    outage = [ConnectionError("provider down")]
    real_charge = tasks.gateway.charge

    def flaky_charge(order_id: str, total: float) -> str:
        if outage:
            raise outage.pop()
        return real_charge(order_id, total)  # type: ignore[no-any-return]

    monkeypatch.setattr(tasks.gateway, "charge", flaky_charge)
    started = time.monotonic()
    handle = tasks.durable.start_workflow(tasks.process_order, "o-2", 20.0)
    assert handle.get_result()["tx"] == "tx-o-2-20.00"
    assert kit.clock.skipped >= 3600.0  # the hourly retry, skipped at once
    declined = tasks.durable.start_workflow(tasks.process_order, "o-3", 5000.0)
    assert declined.get_result() == {"order": "o-3", "declined": "5000.00 is over the card's limit"}
    [_, charge] = tasks.durable.list_workflow_steps(declined.workflow_id)
    assert charge.attempts == 1  # a declined card is not retried
    assert time.monotonic() - started < 1.0
