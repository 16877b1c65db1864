"""Steps for the durable canvas tests (groups, chords, a group inside a chain).

Every body records an effect per workflow (``member:<x>``, ``total``, ...) and may SIGKILL
its worker when the test left the flag ``crash_in_member_<x>``; ``after_last_member`` kills
it between the last member's checkpoint and the callback's publish, ``after_child_end``
between the end of a nested member's child canvas and the parent member's completion.
``flaky`` fails until the test leaves the flag ``fixed`` (a "fix the bug, then resume"
scenario).
"""

from __future__ import annotations

import os
import time
import uuid
from collections import Counter
from typing import Any

from sqlalchemy import text

from celery_durable.integration.signals import step_checkpointed
from celery_durable.types import NESTED_ID_SEPARATOR

from .common import crash_if_flagged, ensure_tables, make_app, read_effects, record_effect

app, durable = make_app("canvas_app")
# the sweep on beat every second; a message counts as lost after 3 s (as recovery_app)
app.conf.durable_recovery_interval = 1.0
app.conf.durable_enqueue_timeout = 3.0
OTHER_QUEUE = os.environ.get("DURABLE_TEST_QUEUE", "celery") + "-canvas-b"


@durable.step(retries=3, interval_seconds=0.2, backoff_rate=1.0)
def member(x: int, seconds: float = 0.0) -> int:
    record_effect(durable, f"member:{x}")
    crash_if_flagged(f"crash_in_member_{x}")
    time.sleep(seconds)
    return x * x


@durable.step(retries=1, interval_seconds=3.0)
def retry_once(x: int) -> int:
    """Fails its first attempt; its retry is due 3 s later (a scheduled message)."""
    status = durable.step_status
    record_effect(durable, f"retry_once:{x}")
    if status is not None and status.current_attempt == 0:
        raise ConnectionError(f"first attempt of {x}")
    return x


@durable.step()
def total(values: list[int]) -> list[int]:
    """The callback: returns what it was given, so a test sees the members' order."""
    record_effect(durable, "total")
    return list(values)


@durable.step()
def first(x: int) -> int:
    record_effect(durable, "first")
    return x + 1


@durable.step()
def left(x: int) -> list[Any]:
    record_effect(durable, "left")
    return [x, "left", left.request.hostname]


@durable.step()
def right(x: int) -> list[Any]:
    record_effect(durable, "right")
    return [x, "right", right.request.hostname]


@durable.step(retries=2, interval_seconds=0.1, backoff_rate=1.0)
def flaky(x: int) -> int:
    record_effect(durable, "flaky")
    if not os.path.exists(os.path.join(os.environ.get("DURABLE_TEST_FLAGS", "-"), "fixed")):
        raise ValueError(f"flaky {x} failed")
    return -x


@durable.workflow()
def three_steps(x: int) -> list[int]:
    """A code workflow whose second step fails until the test leaves the flag ``fixed``."""
    a = first(x)
    b = flaky(a)
    return total([a, b])


@app.task(shared=False)
def errback(*args: Any) -> None:
    """A plain Celery errback: counts its runs under the workflow id the test gave."""
    record_named("eb", str(args[-1]) if args else "-")


@app.task(shared=False)
def plain_square(x: int, key: str = "plain") -> int:
    record_named(f"plain:{x}", key)
    return x * x


@app.task(shared=False)
def plain_collect(values: list[Any], key: str) -> list[Any]:
    """A plain Celery callback: counts its runs under ``key``, returns what it got."""
    record_named("plain_collect", key)
    return list(values)


@app.task(shared=False)
def plain_sum(values: list[int]) -> int:
    record_named("plain_sum", "plain")
    return sum(values)


def record_named(step: str, workflow_id: str) -> None:
    with durable.store.engine.begin() as conn:
        conn.execute(
            text("INSERT INTO test_effects (effect_id, workflow_id, step) VALUES (:e, :w, :s)"),
            {"e": uuid.uuid4().hex, "w": workflow_id, "s": step},
        )


def _crash_after_last_member(sender: Any = None, workflow_id: str = "", **_: Any) -> None:
    """The fault point between the last member's commit and the callback's publish."""
    steps = durable.store.load_steps(workflow_id)
    members = [s for s in steps.values() if s.name == member.name]
    if members and all(s.status == "SUCCESS" for s in members):
        crash_if_flagged("after_last_member")


def _crash_after_child_end(sender: Any = None, workflow_id: str = "", **_: Any) -> None:
    """The fault point between a child canvas's end (its last member's commit) and the
    completion of its member step in the parent."""
    flags = os.environ.get("DURABLE_TEST_FLAGS", "-")
    if NESTED_ID_SEPARATOR not in workflow_id or not os.path.exists(f"{flags}/after_child_end"):
        return
    record = durable.store.get_workflow(workflow_id)
    if record is not None and record.status == "SUCCESS":
        crash_if_flagged("after_child_end")


step_checkpointed.connect(_crash_after_last_member, weak=False)
step_checkpointed.connect(_crash_after_child_end, weak=False)


def setup() -> None:
    ensure_tables(durable)


def effects(workflow_id: str) -> Counter[str]:
    return read_effects(durable, workflow_id)
