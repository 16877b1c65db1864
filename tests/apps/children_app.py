"""Parents and child workflows on real workers (tests/acceptance/test_children_worker.py).

A parent gives its worker slot back after 1 s of waiting (``durable_max_inline_retry_wait``);
the sweep runs every second on beat; an executor is gone after 3 s without a heartbeat.
"""

from __future__ import annotations

from .common import crash_if_flagged, ensure_tables, make_app, record_effect

app, durable = make_app("children_app")
app.conf.durable_max_inline_retry_wait = 1.0
app.conf.durable_recovery_interval = 1.0
app.conf.durable_enqueue_timeout = 3.0


@durable.step()
def kid_step(key: str) -> str:
    record_effect(durable, "kid_step")
    return f"kid:{key}"


@durable.workflow()
def kid(key: str) -> str:
    result = kid_step(key)
    crash_if_flagged("kid_after_step")  # the worker dies before the kid ends
    return result  # type: ignore[no-any-return]


@durable.workflow()
def mom(key: str) -> dict[str, str]:
    record_effect(durable, "mom")
    handle = durable.start_workflow(kid, key)
    return {"kid": handle.get_result()}


@durable.step()
def square(i: int) -> int:
    return i * i


@durable.workflow()
def squared(i: int) -> int:
    return square(i)  # type: ignore[no-any-return]


@durable.workflow()
def fan_out(n: int) -> list[int]:
    record_effect(durable, "fan_out")
    return durable.gather([durable.start_workflow(squared, i) for i in range(n)])  # type: ignore[no-any-return]


def setup() -> None:
    ensure_tables(durable)
