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
from sqlalchemy import Column, Engine, Float, MetaData, String, Table, func, insert, select

from celery_durable.store.memory import MemoryStore

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


def shop_engine() -> Engine:
    """Where the shop keeps its own tables: the durable database (under
    ``celery_durable.testing``, the in-memory store's SQL database)."""
    store: Any = durable.store
    return store.sql_engine if isinstance(store, MemoryStore) else store.engine


def create_tables(**_: Any) -> None:
    """Create the shop's own tables (if missing)."""
    metadata.create_all(shop_engine())


worker_init.connect(create_tables, weak=False)


def _effect(order_id: str, step: str) -> Any:
    return insert(side_effects).values(
        effect_id=uuid.uuid4().hex, order_id=order_id, step=step, executed_at=time.time()
    )


def record_effect(order_id: str, step: str) -> None:
    """An external side effect (a card charge, an e-mail), committed at once."""
    with shop_engine().begin() as conn:
        conn.execute(_effect(order_id, step))


def count_effects(order_ids: list[str]) -> dict[str, Counter[str]]:
    """Executions per step, for each order."""
    stmt = (
        select(side_effects.c.order_id, side_effects.c.step, func.count())
        .where(side_effects.c.order_id.in_(order_ids))
        .group_by(side_effects.c.order_id, side_effects.c.step)
    )
    counts: dict[str, Counter[str]] = {order_id: Counter() for order_id in order_ids}
    with shop_engine().connect() as conn:
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


class PaymentDeclinedError(Exception):
    """A business error: the card was declined. Retrying cannot help."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"Payment declined: {reason}")


class Gateway:
    """The payment provider (a stand-in: it records each charge as a side effect)."""

    limit = 1000.0

    def charge(self, order_id: str, total: float) -> str:
        if total > self.limit:
            raise PaymentDeclinedError(f"{total:.2f} is over the card's limit")
        record_effect(order_id, "charge_payment")
        return f"tx-{order_id}-{total:.2f}"


class Mailer:
    def send(self, order_id: str, tx: str) -> str:
        record_effect(order_id, "send_confirmation")
        return f"mail-{order_id}"


gateway, mailer = Gateway(), Mailer()


# A provider outage is retried hourly, three times (the waits hold no worker slot and
# survive any restart); a declined card is not retried: DBOS's retries_allowed=True
# would retry PaymentDeclinedError too, since it retries every error.
@durable.step(
    retries=3, interval_seconds=3600.0, backoff_rate=1.0, dont_retry_on=PaymentDeclinedError
)
def charge_payment(order_id: str, total: float) -> str:
    """Up to 4 attempts; its output is checkpointed, so a replay never charges again."""
    return gateway.charge(order_id, total)


@durable.step()
def send_confirmation(order_id: str, tx: str) -> str:
    crash_if_flagged(CRASH_BEFORE_CONFIRMATION)
    return mailer.send(order_id, tx)


@durable.workflow(max_recovery_attempts=10)
def process_order(order_id: str, total: float) -> dict[str, str]:
    durable.logger.info("processing order %s", order_id)
    saved = save_order(order_id, total)
    try:
        tx = charge_payment(order_id, total)
    except PaymentDeclinedError as exc:  # comes back from the store with its reason
        return {"order": saved, "declined": exc.reason}
    mail = send_confirmation(order_id, tx)
    return {"order": saved, "tx": tx, "mail": mail}
