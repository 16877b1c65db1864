"""Steps and workflows for the recovery tests: the sweep on beat every second.

A message counts as lost after 3 s (``durable_enqueue_timeout``); an executor is gone
after 3 s without a heartbeat (from ``make_app``). Every step records an effect, counted
per workflow and step, so a test can tell how often it ran.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Sequence

from sqlalchemy import bindparam, text

from .common import ensure_tables, make_app, record_effect

app, durable = make_app("recovery_app")
# set before anything reads the durable settings (the beat entry reads them at configure)
app.conf.durable_recovery_interval = 1.0
app.conf.durable_enqueue_timeout = 3.0

STEP_SECONDS = 0.05


@durable.step()
def advance(values: list[int]) -> list[int]:
    """Chain link ``s<n>``, n = how many links ran before it (effect first: a kill in the
    sleep shows as a second run)."""
    record_effect(durable, f"s{len(values)}")
    time.sleep(STEP_SECONDS)
    return [*values, len(values)]


@durable.step(retries=1, interval_seconds=2.0)
def flaky_once(values: list[int]) -> list[int]:
    """Fails its first attempt; the retry comes 2 s later."""
    record_effect(durable, "flaky")
    status = durable.step_status
    assert status is not None
    if status.current_attempt == 0:
        raise ConnectionError("first attempt fails")
    return [*values, 99]


@durable.step()
def nap(key: str) -> str:
    time.sleep(STEP_SECONDS)
    record_effect(durable, "nap")
    return key


@durable.workflow()
def quick(key: str) -> str:
    return nap(key)  # type: ignore[no-any-return]


@durable.step()
def lose_process(key: str) -> None:
    """Kills the pool process running it (as the OOM killer would), after its effect."""
    record_effect(durable, "lose_process")
    os._exit(1)


@durable.workflow(max_recovery_attempts=3)
def doomed(key: str) -> None:
    lose_process(key)


def setup() -> None:
    ensure_tables(durable)


def effect_counts(workflow_ids: Sequence[str]) -> dict[str, Counter[str]]:
    """How often each step of each workflow ran (workflows without effects included)."""
    stmt = text("SELECT workflow_id, step FROM test_effects WHERE workflow_id IN :ids").bindparams(
        bindparam("ids", expanding=True)
    )
    counts: dict[str, Counter[str]] = {wid: Counter() for wid in workflow_ids}
    with durable.store.engine.connect() as conn:
        for wid, step in conn.execute(stmt, {"ids": list(workflow_ids)}):
            counts[wid][step] += 1
    return counts
