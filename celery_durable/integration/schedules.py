"""Exactly-once schedules on Celery: ``@durable.scheduled`` and the beat entry that checks
them (``celery_durable.schedules``, every ``durable_schedule_interval``), added to beat
the way the recovery sweep is, once the first schedule is declared.

Beat only sends the check; a worker runs it and starts each due tick as the workflow
``<schedule name>-<tick ISO>`` (runtime/schedules.py), so two beats start a tick once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..runtime.schedules import Schedule, check_schedules
from ..types import WorkflowKind
from .settings import read_settings

if TYPE_CHECKING:
    from .durable import Durable

log = logging.getLogger("celery_durable.schedules")
SCHEDULES_TASK = "celery_durable.schedules"


def durable_schedules(durable: Durable) -> dict[str, tuple[Schedule, Any]]:
    """name -> (schedule, its workflow task)."""
    found: dict[str, tuple[Schedule, Any]] | None = durable.__dict__.get("_durable_schedules")
    if found is None:
        found = durable.__dict__["_durable_schedules"] = {}
    return found


def scheduled(
    durable: Durable, cron: str, name: str | None, tz: str, backfill: int
) -> Callable[[Any], Any]:
    def decorate(task: Any) -> Any:
        if getattr(task, "durable_kind", None) != WorkflowKind.WORKFLOW:
            raise TypeError("@durable.scheduled goes above @durable.workflow()")
        schedule = Schedule(name or task.name, cron, task.name, tz, backfill)
        known = durable_schedules(durable)
        if not known:
            _install(durable)
        if schedule.name in known and known[schedule.name][0] != schedule:
            raise ValueError(f"schedule {schedule.name!r} is declared twice")
        known[schedule.name] = (schedule, task)
        return task

    return decorate


def run_check(durable: Durable) -> int:
    """Start every due tick now (what beat's entry runs on a worker)."""
    known = durable_schedules(durable)
    tasks = {name: task for name, (_, task) in known.items()}

    def start(schedule: Schedule, tick: datetime) -> None:
        tasks[schedule.name].apply_async((tick,), task_id=schedule.workflow_id(tick))

    grace_ms = int(2000 * durable.settings.schedule_interval)
    return check_schedules(durable.runtime, [s for s, _ in known.values()], start, grace_ms)


def _install(durable: Durable) -> None:
    """Register ``celery_durable.schedules`` and add it to beat's schedule."""
    app = durable.app

    @app.task(name=SCHEDULES_TASK, shared=False, ignore_result=True)  # type: ignore[untyped-decorator]
    def check() -> int:
        return run_check(durable)

    def schedule(sender: Any = None, **_: Any) -> None:
        interval = read_settings(app.conf, durable.overrides).schedule_interval
        # a check that waited longer than its interval is stale: the next one is due
        app.add_periodic_task(interval, check.s().set(expires=interval), name=SCHEDULES_TASK)

    if app.configured:
        schedule()
    else:
        app.on_after_configure.connect(schedule, weak=False)
