"""Workflows that wait on the world, on real workers (tests/messages/test_messages_worker.py).

A wait longer than 1 s parks its workflow (``durable_max_inline_retry_wait``); an executor
is gone after 3 s without a heartbeat. ``DURABLE_TEST_CODE_VERSION`` (read when a run
starts) picks the code of ``upgraded``: 1 before the change, 2 with ``durable.patch``.
"""

from __future__ import annotations

import os
from typing import Any

from .common import crash_if_flagged, ensure_tables, make_app, record_effect

app, durable = make_app("messages_app")
app.conf.durable_max_inline_retry_wait = 1.0
app.conf.durable_recovery_interval = 1.0
app.conf.durable_enqueue_timeout = 3.0


@durable.workflow()
def approval(order: str) -> dict[str, Any]:
    record_effect(durable, "approval")  # once per run: start, wake-ups, recovery
    durable.set_event("status", "waiting")
    decision = durable.recv("approval", timeout_seconds=30)
    crash_if_flagged("after_recv")  # the worker dies after recv returned, before the next step
    durable.set_event("status", "decided")
    return {"order": order, "decision": decision}


@durable.step()
def busy(i: int) -> int:
    return i * 2


@durable.workflow()
def other(i: int) -> int:
    return busy(i)  # type: ignore[no-any-return]


@durable.workflow()
def inbox(n: int, timeout: float) -> list[Any]:
    return [durable.recv("n", timeout_seconds=timeout) for _ in range(n)]


@durable.step()
def effect(label: str) -> str:
    record_effect(durable, label)
    return label


@durable.workflow()
def upgraded(order: str) -> list[str]:
    version = int(os.environ.get("DURABLE_TEST_CODE_VERSION", "2"))
    done = [effect("reserve")]
    if version == 1:
        done.append(effect("old-check"))
    elif durable.patch("fraud-check"):
        done.append(effect("fraud-check"))
    else:  # a run that passed here under version 1
        done.append(effect("old-check"))
    crash_if_flagged("upgraded_mid")
    done.append(effect("ship"))
    return done


def setup() -> None:
    ensure_tables(durable)
