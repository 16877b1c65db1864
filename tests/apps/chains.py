"""Steps for the durable-chain acceptance tests.

Every step records an effect (counted per workflow and step) and may SIGKILL its worker
when the test left the flag ``crash_in_<step>`` (after the effect, so a rerun shows).
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from typing import Any

from sqlalchemy import text

from celery_durable.integration.signals import (
    step_checkpointed,
    step_retries_exhausted,
    step_retrying,
)

from .common import (
    crash_if_flagged,
    ensure_tables,
    make_app,
    read_attempts,
    read_effects,
    record_attempt,
    record_effect,
)

app, durable = make_app("chains")


class Declined(Exception):
    """A business error: never retried."""


def _advance(name: str, values: list[int]) -> list[int]:
    record_effect(durable, name)
    crash_if_flagged(f"crash_in_{name}")
    return [*values, 10 * len(values) + sum(values) % 7]


@durable.step()
def s1(x: int) -> list[int]:
    return _advance("s1", [x])


@durable.step()
def s2(values: list[int]) -> list[int]:
    return _advance("s2", values)


@durable.step()
def s3(values: list[int]) -> list[int]:
    return _advance("s3", values)


@durable.step()
def s4(values: list[int]) -> list[int]:
    return _advance("s4", values)


@durable.step()
def s5(values: list[int]) -> list[int]:
    return _advance("s5", values)


@durable.step()
def tag(values: Any, label: Any) -> list[Any]:
    """Takes an extra argument, so a later link can carry a bad value."""
    return [*values, label]


@durable.step()
def slow(x: int, seconds: float = 1.5) -> list[int]:
    record_effect(durable, "slow")
    time.sleep(seconds)
    return [x]


@durable.step()
def hop(trail: list[str]) -> list[str]:
    """Appends the node name (``wXXXX@host``) of the worker that ran it."""
    return [*trail, hop.request.hostname]


def _attempt(name: str) -> int:
    """Record this attempt's start time; returns the attempt number (from 0)."""
    return record_attempt(durable, name).current_attempt


@durable.step(retries=3, interval_seconds=0.2, backoff_rate=2.0)
def flaky(x: int, failures: int) -> list[int]:
    attempt = _attempt("flaky")
    if attempt < failures:
        raise ConnectionError(f"flaky failure {attempt}")
    return [x, attempt]


@durable.step(retries=1, interval_seconds=2.0)
def flaky_slow(x: int) -> list[int]:
    if _attempt("flaky_slow") == 0:
        raise ConnectionError("first attempt fails")
    return [x]


@durable.step(retries=2, interval_seconds=0.1, backoff_rate=1.0)
def always_fails(values: list[int]) -> None:
    attempt = _attempt("always_fails")
    raise ValueError(f"declined {attempt}")


@durable.step(retries=3, interval_seconds=0.1, dont_retry_on=(Declined,))
def declines(values: list[int]) -> None:
    record_effect(durable, "declines")
    raise Declined(f"card declined after {values}")


@app.task(shared=False)
def errback(workflow_id: str) -> None:
    """A plain (non-durable) Celery errback: counts its runs under ``workflow_id``."""
    with durable.store.engine.begin() as conn:
        conn.execute(
            text("INSERT INTO test_effects (effect_id, workflow_id, step) VALUES (:e, :w, 'eb')"),
            {"e": uuid.uuid4().hex, "w": workflow_id},
        )


@app.task(shared=False)
def plain_add(x: int, y: int = 1) -> int:
    """A plain Celery task: its results live in the app's result backend only."""
    return x + y


def _crash_after_step3_commit(sender: Any = None, step_id: int = -1, **_: Any) -> None:
    if step_id == 2:
        crash_if_flagged("after_step3_commit")


step_checkpointed.connect(_crash_after_step3_commit, weak=False)


def _note_retrying(sender: Any = None, **kwargs: Any) -> None:
    """Each step_retrying a worker sends, as an effect ``retrying:<attempt>``."""
    record_effect(durable, f"retrying:{kwargs['attempt']}")


def _note_exhausted(sender: Any = None, **kwargs: Any) -> None:
    record_effect(durable, f"exhausted:{kwargs['attempt']}")


step_retrying.connect(_note_retrying, weak=False)
step_retries_exhausted.connect(_note_exhausted, weak=False)


# helpers for the tests --------------------------------------------------------


def setup() -> None:
    ensure_tables(durable)
    with durable.store.engine.begin() as conn:
        conn.execute(text(BOOKINGS_DDL))


def effects(workflow_id: str) -> Counter[str]:
    return read_effects(durable, workflow_id)


def attempt_times(workflow_id: str, step: str) -> list[float]:
    return [at for _, _, at in read_attempts(durable, workflow_id, step)]


# transaction steps in chains (tests/acceptance/test_chains.py) --------------------
BOOKINGS_DDL = (
    "CREATE TABLE IF NOT EXISTS test_bookings (booking_id VARCHAR(64) PRIMARY KEY, "
    "workflow_id VARCHAR(255) NOT NULL)"
)


def _book(name: str, values: list[int], seconds: float = 0.0) -> list[int]:
    """A row written in the step's own transaction (committed with its checkpoint), and an
    effect written at once (counted whether the transaction commits or not)."""
    record_effect(durable, name)
    durable.sql_session.execute(
        text("INSERT INTO test_bookings VALUES (:b, :w)"),
        {"b": uuid.uuid4().hex, "w": durable.workflow_id},
    )
    time.sleep(seconds)
    return [*values, len(values)]


@durable.transaction()
def book(values: list[int]) -> list[int]:
    return _book("book", values)


@durable.transaction()
def slow_book(values: list[int]) -> list[int]:
    return _book("slow_book", values, seconds=1.5)


@durable.transaction(retries=1, interval_seconds=0.1)
def flaky_book(values: list[int]) -> list[int]:
    booked = _book("flaky_book", values)
    status = durable.step_status
    assert status is not None
    if status.current_attempt == 0:
        raise ConnectionError("the first attempt's booking is rolled back")
    return booked


def bookings(workflow_id: str) -> int:
    with durable.store.engine.connect() as conn:
        rows = conn.execute(
            text("SELECT count(*) FROM test_bookings WHERE workflow_id = :w"), {"w": workflow_id}
        )
        return int(rows.scalar() or 0)
