"""Exactly-once schedules: which ticks of a cron schedule to start now (no SQL, no Celery).

Each tick runs as the workflow ``<schedule name>-<tick time ISO>``, and starting an id
that exists runs nothing: however many beats (or checks) start a tick, it runs once. The
store keeps each schedule's latest tick started, so ticks missed while no beat ran are
found on the next check; the most recent ``backfill`` of them are started, plus any tick
within the last two check intervals (a check that comes late drops none of those).
A schedule seen for the first time starts from the ticks of those last two intervals.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from zoneinfo import ZoneInfo

from croniter import croniter

from ..flowtypes import ScheduleState
from .runtime import Runtime, log


@dataclass(frozen=True)
class Schedule:
    """``@durable.scheduled``: a cron expression (5 fields, or 6 with seconds FIRST) read
    in time zone ``tz``, the workflow it starts, and how many missed ticks to start."""

    name: str
    cron: str
    workflow: str
    tz: str = "UTC"
    backfill: int = 1

    def __post_init__(self) -> None:
        if not croniter.is_valid(self.cron, second_at_beginning=True):
            raise ValueError(f"schedule {self.name!r}: invalid cron expression {self.cron!r}")
        if self.backfill < 0:
            raise ValueError("backfill must be >= 0")
        ZoneInfo(self.tz)  # raises for an unknown zone

    @property
    def zone(self) -> tzinfo:
        return ZoneInfo(self.tz)

    def at(self, ms: int) -> datetime:
        return datetime.fromtimestamp(ms / 1000, self.zone)

    def ticks_before(self, now_ms: int) -> croniter:
        """Iterates backwards (``get_prev``) from ``now_ms`` (a tick at ``now_ms`` included)."""
        return croniter(self.cron, self.at(now_ms + 1), second_at_beginning=True)

    def next_tick(self, now_ms: int) -> datetime:
        it = croniter(self.cron, self.at(now_ms), second_at_beginning=True)
        found: datetime = it.get_next(datetime)
        return found.replace(fold=0)

    def workflow_id(self, tick: datetime) -> str:
        return f"{self.name}-{tick.isoformat()}"


def due_ticks(
    schedule: Schedule, last_ms: int | None, now_ms: int, grace_ms: int
) -> list[datetime]:
    """Ticks after ``last_ms`` (the latest started; None: since ``now - grace``) up to now,
    oldest first: each one within ``grace_ms`` of now, and ``backfill`` more before."""
    since = now_ms - grace_ms if last_ms is None else last_ms
    it = schedule.ticks_before(now_ms)
    found: list[datetime] = []
    backfilled = 0
    while True:
        tick: datetime = it.get_prev(datetime).replace(fold=0)
        ms = int(tick.timestamp() * 1000)
        if ms <= since:
            break
        if ms < now_ms - grace_ms:
            if backfilled >= schedule.backfill:
                break
            backfilled += 1
        found.append(tick)
    return found[::-1]


#: starts the schedule's workflow for one tick (an existing id is a no-op)
StartTick = Callable[[Schedule, datetime], None]


def check_schedules(
    runtime: Runtime, schedules: Sequence[Schedule], start: StartTick, grace_ms: int
) -> int:
    """Start every due tick of every schedule not paused; returns how many were started
    (or found started). A paused schedule's ticks pass without runs."""
    states = {s.name: s for s in runtime.store.get_schedules([s.name for s in schedules])}
    now = runtime.clock.now_ms()
    started = 0
    for schedule in schedules:
        state = states.get(schedule.name, ScheduleState(schedule.name))
        if state.paused:
            runtime.store.advance_schedule(schedule.name, now)
            continue
        for tick in due_ticks(schedule, state.last_tick_ms, now, grace_ms):
            try:
                start(schedule, tick)
            except Exception as exc:  # the next check starts it (it stays after last)
                log.warning("schedule %s: could not start tick %s: %s", schedule.name, tick, exc)
                break
            runtime.store.advance_schedule(schedule.name, int(tick.timestamp() * 1000))
            started += 1
    return started


@dataclass(frozen=True)
class ScheduleInfo:
    """A schedule as ``celery -A proj durable schedules`` lists it."""

    name: str
    cron: str
    workflow: str
    paused: bool
    last_tick: datetime | None
    next_tick: datetime


def schedule_infos(runtime: Runtime, known: Mapping[str, Schedule]) -> list[ScheduleInfo]:
    """The declared schedules, by name, with their last tick (from the store) and next."""
    states = {s.name: s for s in runtime.store.get_schedules(list(known))}
    now = runtime.clock.now_ms()
    found = []
    for name, schedule in sorted(known.items()):
        state = states.get(name)
        last = state.last_tick_ms if state is not None else None
        paused = state.paused if state is not None else False
        at = None if last is None else schedule.at(last)
        found.append(
            ScheduleInfo(
                name, schedule.cron, schedule.workflow, paused, at, schedule.next_tick(now)
            )
        )
    return found


def set_paused(runtime: Runtime, name: str, paused: bool) -> None:
    """No run for a paused schedule's ticks (nor a backfill of them once resumed)."""
    runtime.store.set_schedule_paused(name, paused)
