"""The order workflow: save_order -> charge_payment -> send_confirmation.

Every step also writes one row to ``shop_side_effects`` each time its body runs, so the
demo can count executions: after any crash, each count must still be exactly one.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from celery.signals import worker_init
from sqlalchemy import Column, Float, MetaData, String, Table, func, insert, select

from .celery_app import durable

metadata = MetaData()
orders = Table(
    "shop_orders",
    metadata,
    Column("order_id", String(64), primary_key=True),
    Column("total", Float, nullable=False),
)
side_effects = Table(
    "shop_side_effects",
    metadata,
    Column("effect_id", String(32), primary_key=True),  # one row per execution of a step
    Column("order_id", String(64), nullable=False, index=True),
    Column("step", String(64), nullable=False),
    Column("executed_at", Float, nullable=False),
)

#: a flag file in this folder named after a crash point SIGKILLs the worker there, once
CRASH_FLAGS_ENV = "SHOP_CRASH_FLAGS"
CRASH_BEFORE_CONFIRMATION = "crash-before-confirmation"


def create_tables(**_: Any) -> None:
    """Create the shop's own tables in the durable database (if missing)."""
    metadata.create_all(durable.store.engine)


worker_init.connect(create_tables, weak=False)


def _effect(order_id: str, step: str) -> Any:
    return insert(side_effects).values(
        effect_id=uuid.uuid4().hex, order_id=order_id, step=step, executed_at=time.time()
    )


def record_effect(order_id: str, step: str) -> None:
    """An external side effect (a card charge, an e-mail), committed at once."""
    with durable.store.engine.begin() as conn:
        conn.execute(_effect(order_id, step))


def count_effects(order_ids: list[str]) -> dict[str, Counter[str]]:
    """Executions per step, for each order."""
    stmt = (
        select(side_effects.c.order_id, side_effects.c.step, func.count())
        .where(side_effects.c.order_id.in_(order_ids))
        .group_by(side_effects.c.order_id, side_effects.c.step)
    )
    counts: dict[str, Counter[str]] = {order_id: Counter() for order_id in order_ids}
    with durable.store.engine.connect() as conn:
        for order_id, step, n in conn.execute(stmt):
            counts[order_id][step] = n
    return counts


def crash_if_flagged(point: str) -> None:
    """Consume the flag file for ``point``, if any, and SIGKILL this worker's process group."""
    flag = Path(os.environ.get(CRASH_FLAGS_ENV) or "/nonexistent") / point
    try:
        flag.unlink()
    except FileNotFoundError:
        return
    os.killpg(os.getpgid(0), signal.SIGKILL)


@durable.transaction()
def save_order(order_id: str, total: float) -> str:
    """Runs in one database transaction with its checkpoint: takes effect exactly once."""
    session = durable.sql_session
    session.execute(insert(orders).values(order_id=order_id, total=total))
    session.execute(_effect(order_id, "save_order"))
    return order_id


@durable.step(retries=3, interval_seconds=1.0, backoff_rate=2.0)
def charge_payment(order_id: str, total: float) -> str:
    """Up to 4 attempts, 1 s then 2 s then 4 s apart; its output is checkpointed."""
    record_effect(order_id, "charge_payment")
    return f"tx-{order_id}-{total:.2f}"


@durable.step()
def send_confirmation(order_id: str, tx: str) -> str:
    crash_if_flagged(CRASH_BEFORE_CONFIRMATION)
    record_effect(order_id, "send_confirmation")
    return f"mail-{order_id}"


@durable.workflow(max_recovery_attempts=10)
def process_order(order_id: str, total: float) -> dict[str, str]:
    durable.logger.info("processing order %s", order_id)
    saved = save_order(order_id, total)
    tx = charge_payment(order_id, total)
    mail = send_confirmation(order_id, tx)
    return {"order": saved, "tx": tx, "mail": mail}
