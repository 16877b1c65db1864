"""Payment workflows for the retry, idempotency and bad-input acceptance tests.

Every step attempt is written to ``test_attempts`` (its ``durable.step_status`` and the
wall-clock time), every execution of a step body to ``test_effects``.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from decimal import Decimal
from typing import Any

from pydantic import BaseModel

from celery_durable import StepStatus
from celery_durable.errors import MaxStepRetriesExceeded

from .common import (
    crash_if_flagged,
    ensure_tables,
    make_app,
    read_attempts,
    read_effects,
    record_attempt,
    record_effect,
)

app, durable = make_app("payments")
# retry waits above half a second go back to the broker instead of holding the worker slot
app.conf.durable_max_inline_retry_wait = 0.5


class CardDeclined(Exception):
    """A business error: retrying does not help."""


def note_attempt(step: str) -> StepStatus:
    """Record this attempt (status and time) and one effect; returns the step status."""
    return record_attempt(durable, step)


# retries ------------------------------------------------------------------
@durable.step(retries=3, interval_seconds=0.2, backoff_rate=2.0)
def flaky_charge(failures: int) -> list[int]:
    status = note_attempt("flaky_charge")
    if status.current_attempt < failures:
        raise ConnectionError(f"gateway timeout {status.current_attempt}")
    return [status.current_attempt, status.max_attempts]


@durable.workflow()
def charge_with_retries(failures: int) -> list[int]:
    return flaky_charge(failures)  # type: ignore[no-any-return]


@durable.step(retries=2, interval_seconds=0.05, backoff_rate=1.0)
def declined_charge(card: str) -> None:
    status = note_attempt("declined_charge")
    raise CardDeclined(f"card {card} declined on attempt {status.current_attempt}")


@durable.workflow()
def charge_until_exhausted(card: str) -> dict[str, Any]:
    try:
        declined_charge(card)
    except MaxStepRetriesExceeded as exc:
        errors = [(type(e).__qualname__, str(e)) for e in exc.errors]
        return {"step": exc.step_name, "max_retries": exc.max_retries, "errors": errors}
    raise AssertionError("declined_charge never succeeds")


@durable.workflow()
def charge_uncaught(card: str) -> None:
    declined_charge(card)


@durable.step(retries=3, interval_seconds=0.05, dont_retry_on=(CardDeclined,))
def strict_charge(card: str) -> None:
    note_attempt("strict_charge")
    raise CardDeclined(f"card {card} declined")


@durable.workflow()
def charge_once(card: str) -> None:
    strict_charge(card)


@durable.step(retries=1, interval_seconds=1.5)
def patient_charge(key: str) -> str:
    if note_attempt("patient_charge").current_attempt == 0:
        raise ConnectionError("gateway busy")
    return f"charged-{key}"


@durable.workflow()
def charge_after_pause(key: str) -> str:
    return patient_charge(key)  # type: ignore[no-any-return]


# idempotency and bad input -------------------------------------------------
@durable.step()
def issue_receipt(order: str, amount: float) -> str:
    record_effect(durable, "issue_receipt")
    return f"receipt-{order}-{amount}-{uuid.uuid4().hex[:8]}"  # differs on every execution


@durable.workflow()
def pay(order: str, amount: float) -> dict[str, str]:
    return {"order": order, "receipt": issue_receipt(order, amount)}


@durable.workflow()
def refund(order: str, amount: float) -> dict[str, str]:
    return {"order": order, "refund": issue_receipt(order, -amount)}


@durable.step()
def slow_capture(order: str) -> str:
    record_effect(durable, "slow_capture")
    time.sleep(1.0)
    return f"captured-{order}"


@durable.workflow()
def capture(order: str) -> str:
    return slow_capture(order)  # type: ignore[no-any-return]


# reading what happened -------------------------------------------------------
def setup() -> None:
    ensure_tables(durable)


def effects(workflow_id: str) -> Counter[str]:
    """How many times each step body ran for ``workflow_id``."""
    return read_effects(durable, workflow_id)


def attempts(workflow_id: str) -> list[tuple[int, int, float]]:
    """(current_attempt, max_attempts, time) of every attempt, in time order."""
    return read_attempts(durable, workflow_id)


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


class Invoice(BaseModel):
    number: int
    amount: Decimal


@durable.workflow(validate_args=True)
def invoice_copies(invoice: Invoice, copies: int) -> Invoice:
    """Validated in the caller; the model crosses the store and the broker as itself."""
    assert isinstance(invoice, Invoice)
    return Invoice(number=invoice.number, amount=invoice.amount * copies)


class InsufficientInventoryError(Exception):
    """The DBOS guide's business error: several arguments, a formatted message."""

    def __init__(self, product_id: str, requested: int, available: int) -> None:
        self.product_id = product_id
        self.requested = requested
        self.available = available
        super().__init__(f"{product_id}: requested {requested}, available {available}")


@durable.step()
def reserve_stock(product_id: str, requested: int) -> None:
    record_effect(durable, "reserve_stock")
    raise InsufficientInventoryError(product_id, requested, 2)


@durable.step()
def note_shortage(product_id: str, missing: int) -> str:
    record_effect(durable, "note_shortage")
    return f"{product_id} short by {missing}"


@durable.workflow()
def order_with_shortage(product_id: str, requested: int) -> dict[str, Any]:
    try:
        reserve_stock(product_id, requested)
        return {"reserved": product_id}
    except InsufficientInventoryError as exc:  # replayed from the store, attributes and all
        noted = note_shortage(exc.product_id, exc.requested - exc.available)
        crash_if_flagged("in_except_branch")
        return {"short": exc.product_id, "available": exc.available, "noted": noted}
