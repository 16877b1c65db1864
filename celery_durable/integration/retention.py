"""Retention on Celery: the ``celery_durable.gc`` task beat runs when
``durable_retention_seconds`` is set, added to beat's schedule as the sweep is."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from .settings import read_settings

if TYPE_CHECKING:
    from .durable import Durable

log = logging.getLogger("celery_durable.retention")
GC_TASK = "celery_durable.gc"


def install_gc(durable: Durable) -> None:
    """Register ``celery_durable.gc`` and schedule it every ``durable_gc_interval``."""
    app = durable.app

    @app.task(name=GC_TASK, shared=False, ignore_result=True)  # type: ignore[untyped-decorator]
    def gc() -> dict[str, int]:
        settings = durable.settings
        if not settings.retention_seconds:
            return {"deleted": 0}
        # one run stays within an interval: a long backlog is finished by the next runs
        report = durable.collect_garbage(
            settings.retention_seconds, time_budget=settings.gc_interval / 2
        )
        return {"deleted": report.deleted, "executors_deleted": report.executors_deleted}

    def schedule(sender: Any = None, **_: Any) -> None:
        settings = read_settings(app.conf, durable.overrides)  # not cached: set late counts
        if settings.retention_seconds:
            # like the sweep: one queued behind a backlog for a whole interval is stale
            options: dict[str, Any] = {"expires": settings.gc_interval}
            if settings.recovery_queue:
                options["queue"] = settings.recovery_queue
            app.add_periodic_task(settings.gc_interval, gc.s().set(**options), name=GC_TASK)

    if app.configured:
        schedule()
    else:
        app.on_after_configure.connect(schedule, weak=False)
