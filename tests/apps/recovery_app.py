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


# failure modes (tests/recovery/test_failure_modes.py) ---------------------------------
LONG_SECONDS = 8.0


def runs_so_far(step: str) -> int:
    """How many times ``step`` ran for the current workflow, this run included."""
    wid = durable.workflow_id or "-"
    return effect_counts([wid])[wid][step]


@durable.step()
def long_step(values: list[int]) -> list[int]:
    """Runs for LONG_SECONDS; a second run at the same time would show as two effects."""
    record_effect(durable, "long")
    time.sleep(LONG_SECONDS)
    return [*values, 100]


@durable.workflow()
def long_wf(key: str) -> list[int]:
    return advance(long_step([]))  # type: ignore[no-any-return]


@durable.step(time_limit=2)  # Celery's hard time limit: the pool process is killed at 2 s
def outlive_once(values: list[int]) -> list[int]:
    """Outlives its time limit on its first run only."""
    record_effect(durable, "outlive")
    if runs_so_far("outlive") == 1:
        time.sleep(30)
    return [*values, 200]


@durable.workflow(time_limit=2)
def outlive_wf(key: str) -> list[int]:
    return outlive_once([])  # type: ignore[no-any-return]


@durable.workflow(time_limit=1, max_recovery_attempts=1)
def always_outlives(key: str) -> None:
    record_effect(durable, "always")
    time.sleep(30)


@durable.step()
def remind(key: str) -> str:
    record_effect(durable, "remind")
    return key


@durable.workflow()
def nap_then_remind(key: str, seconds: float) -> str:
    durable.sleep(seconds)
    return remind(key)  # type: ignore[no-any-return]


@durable.step()
def slow_advance(values: list[int]) -> list[int]:
    record_effect(durable, "slow")
    time.sleep(2.0)
    return [*values, len(values)]


@durable.workflow()
def slow_then_advance(key: str) -> list[int]:
    return advance(slow_advance([]))  # type: ignore[no-any-return]
