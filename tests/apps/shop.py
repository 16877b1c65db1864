"""The order workflow of the seed scenario: save_order -> charge_payment -> send_confirmation."""

from __future__ import annotations

import time

from sqlalchemy import text

from celery_durable.errors import MaxStepRetriesExceeded

from .common import crash_if_flagged, ensure_tables, make_app, record_effect

app, durable = make_app("shop")

ORDERS_DDL = """
CREATE TABLE IF NOT EXISTS test_orders (
    order_id VARCHAR(64) PRIMARY KEY,
    total FLOAT NOT NULL
)
"""


@durable.transaction()
def save_order(order_id: str, total: float) -> str:
    durable.sql_session.execute(text(ORDERS_DDL))
    durable.sql_session.execute(
        text("INSERT INTO test_orders (order_id, total) VALUES (:o, :t)"),
        {"o": order_id, "t": total},
    )
    record_effect(durable, "save_order")
    return order_id


@durable.step()
def charge_payment(order_id: str, total: float) -> str:
    record_effect(durable, "charge_payment")
    return f"tx-{order_id}-{total:.2f}"


@durable.step()
def send_confirmation(order_id: str, tx: str) -> str:
    crash_if_flagged("before_confirmation")
    record_effect(durable, "send_confirmation")
    return f"mail-{order_id}"


@durable.workflow()
def process_order(order_id: str, total: float) -> dict[str, str]:
    saved = save_order(order_id, total)
    tx = charge_payment(order_id, total)
    mail = send_confirmation(order_id, tx)
    return {"order": saved, "tx": tx, "mail": mail}


@durable.step(retries=3, interval_seconds=0.2, backoff_rate=2.0)
def flaky(key: str, failures: int) -> list[float]:
    record_effect(durable, "flaky")
    status = durable.step_status
    assert status is not None
    if status.current_attempt < failures:
        raise ConnectionError(f"flaky failure {status.current_attempt}")
    return [time.time(), float(status.current_attempt), float(status.max_attempts)]


@durable.step(retries=2, interval_seconds=0.1, backoff_rate=1.0)
def always_fails(key: str) -> None:
    raise ValueError(f"declined {durable.step_status.current_attempt}")  # type: ignore[union-attr]


@durable.workflow()
def retrying(key: str, failures: int) -> list[float]:
    return flaky(key, failures)  # type: ignore[no-any-return]


@durable.workflow()
def exhausting(key: str) -> dict[str, object]:
    try:
        always_fails(key)
    except MaxStepRetriesExceeded as exc:
        return {
            "max_retries": exc.max_retries,
            "errors": [[type(e).__name__, str(e)] for e in exc.errors],
        }
    return {}


def setup() -> None:
    ensure_tables(durable)
