"""Exactly-once schedules with real `celery beat` processes: two beats at once start
each tick of a 2-second schedule once for 20 s, and ticks missed while no beat ran for 6 s
are started (once each) when a beat comes back (issue 13's figures). The backfill is 5
ticks, not the issue's 3: the new beat's own start-up on a loaded machine adds a tick or
two to the 6 s without a beat, and a bound of 3 would then leave the oldest missed tick
out, as it should (the bound itself is tested in tests/unit/test_flow_schedules.py)."""

from __future__ import annotations

import time
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from tests.conftest import wait_for
from tests.recovery.helpers import BeatProcess

pytestmark = pytest.mark.usefixtures("shared_workers")
APP = "tests.apps.flow_app"


def ticks() -> list[tuple[str, float]]:
    from tests.apps.flow_app import durable

    with durable.store.engine.connect() as conn:
        rows = conn.execute(text("SELECT tick, at FROM test_flow_ticks ORDER BY tick"))
        return [(t, a) for t, a in rows]


def test_two_beats_start_each_tick_once_and_missed_ticks_are_backfilled(tmp_path: Path) -> None:
    from tests.apps.flow_app import SCHEDULE, durable, ticked

    beats = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        beats.append(BeatProcess(APP, tmp_path / name).start())
    time.sleep(20)
    for beat in beats:
        beat.stop()
    stopped = time.time()
    time.sleep(6)
    (tmp_path / "c").mkdir()
    restarted = time.time()
    again = BeatProcess(APP, tmp_path / "c").start()
    try:
        wait_for(lambda: any(at > restarted and t > _iso(restarted) for t, at in ticks()), 10)
    finally:
        again.stop()

    def unfinished() -> list[Any]:
        return durable.list_workflows(status=["ENQUEUED", "PENDING"], name=ticked.name)

    try:
        wait_for(lambda: not unfinished(), timeout=30)  # every started tick's run noted
    finally:
        for late in unfinished():
            durable.cancel_workflow(late.workflow_id)  # nothing left for later tests' sweeps
    seen = ticks()
    counts = Counter(t for t, _ in seen)
    assert counts and set(counts.values()) == {1}, counts
    times = sorted(datetime.fromisoformat(t) for t in counts)
    expected = [times[0] + timedelta(seconds=2 * i) for i in range(len(times))]
    assert times == expected  # every tick from the first to the last: none missed
    missed = [t for t, at in seen if stopped < datetime.fromisoformat(t).timestamp() < restarted]
    assert len(missed) >= 2 and all(at > restarted for t, at in seen if t in missed)
    (info,) = [s for s in durable.list_schedules() if s.name == SCHEDULE]
    assert info.last_tick is not None and info.last_tick == times[-1]


def _iso(at: float) -> str:
    from datetime import UTC

    return datetime.fromtimestamp(at, UTC).isoformat()
