"""Which ticks a schedule check starts (runtime/schedules.py), on the in-memory store:
seconds-first 6-field cron, the grace window, backfill, pause, first sight; and how
SetEnqueueOptions blocks combine."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from celery_durable.integration.codec import KOMBU_JSON
from celery_durable.runtime.enqueue_options import (
    EnqueueOptions,
    SetEnqueueOptions,
    current_enqueue_options,
)
from celery_durable.runtime.runtime import Runtime, RuntimeSettings
from celery_durable.runtime.schedules import Schedule, check_schedules, due_ticks
from celery_durable.serialization import Serializer
from celery_durable.store.memory import MemoryStore
from tests.store.conftest import ManualClock

T0 = int(datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC).timestamp() * 1000)
EVERY_2S = Schedule("s", "*/2 * * * * *", "wf", backfill=2)


def at(second: int) -> datetime:
    return datetime(2026, 1, 1, 12, 0, second, tzinfo=UTC)


def test_seconds_come_first_in_six_fields() -> None:
    assert Schedule("m", "30 * * * * *", "wf").next_tick(T0) == at(30)
    assert Schedule("h", "0 13 * * *", "wf").next_tick(T0) == datetime(2026, 1, 1, 13, tzinfo=UTC)
    with pytest.raises(ValueError):
        Schedule("bad", "61 * * * * *", "wf")


def test_due_ticks_backfill_only_beyond_the_grace_window() -> None:
    # last started at :00; now :11; grace 2 s -> :10 is fresh, :08 and :06 backfilled
    assert due_ticks(EVERY_2S, T0, T0 + 11_000, 2_000) == [at(6), at(8), at(10)]
    assert due_ticks(EVERY_2S, T0 + 10_000, T0 + 11_000, 2_000) == []
    assert due_ticks(EVERY_2S, T0, T0 + 2_000, 2_000) == [at(2)]  # a tick exactly at now
    # first sight: only the ticks of the grace window
    assert due_ticks(EVERY_2S, None, T0 + 11_000, 2_000) == [at(10)]
    assert EVERY_2S.workflow_id(at(10)) == "s-2026-01-01T12:00:10+00:00"


def runtime() -> Runtime:
    clock = ManualClock()
    clock.ms = T0 + 11_000
    return Runtime(MemoryStore(clock=clock), Serializer(KOMBU_JSON), RuntimeSettings())


def test_check_starts_due_ticks_once_and_pause_skips_them() -> None:
    rt = runtime()
    started: list[str] = []
    rt.store.advance_schedule("s", T0)

    def start(schedule: Schedule, tick: datetime) -> None:
        started.append(schedule.workflow_id(tick))

    assert check_schedules(rt, [EVERY_2S], start, 2_000) == 3
    assert check_schedules(rt, [EVERY_2S], start, 2_000) == 0  # latest tick recorded
    rt.store.set_schedule_paused("s", True)
    assert isinstance(rt.clock, ManualClock)
    rt.clock.advance(6_000)
    assert check_schedules(rt, [EVERY_2S], start, 2_000) == 0
    rt.store.set_schedule_paused("s", False)
    rt.clock.advance(1_000)
    assert check_schedules(rt, [EVERY_2S], start, 2_000) == 1  # paused ticks not backfilled
    assert len(started) == len(set(started)) == 4


def test_enqueue_options_nest_and_reset() -> None:
    with SetEnqueueOptions(queue="q", priority=3):
        with SetEnqueueOptions(deduplication_id="d"):
            assert current_enqueue_options() == EnqueueOptions("q", 3, "d")
        assert current_enqueue_options() == EnqueueOptions("q", 3)
    assert current_enqueue_options().empty
    with pytest.raises(ValueError):
        SetEnqueueOptions(delay_seconds=-1)
