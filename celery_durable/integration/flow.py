"""``Durable``'s flow-control API: durable queues and exactly-once schedules (issue 13).
A mixin of ``Durable``; the logic is in runtime/queues.py and runtime/schedules.py."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..flowtypes import QueueSpec, QueueStats
from ..runtime.schedules import ScheduleInfo, schedule_infos, set_paused
from . import queues, schedules

if TYPE_CHECKING:
    from ..runtime.runtime import Runtime


class FlowControl:
    """Mixed into ``Durable``."""

    if TYPE_CHECKING:

        @property
        def runtime(self) -> Runtime: ...

    def queue(
        self,
        name: str,
        concurrency: int | None = None,
        worker_concurrency: int | None = None,
        limiter: tuple[int, float] | None = None,
        priority_enabled: bool = False,
    ) -> queues.DurableQueue:
        """Declare a durable queue: workflows started with ``queue=`` it (or its name) wait
        in the store and are admitted at most ``concurrency`` at once across all workers and
        ``limiter[0]`` per ``limiter[1]`` seconds, lower ``priority`` first when
        ``priority_enabled``, else FIFO; admitted ones go to the Celery queue ``name``."""
        lim = None if limiter is None else (int(limiter[0]), float(limiter[1]))
        spec = QueueSpec(name, concurrency, worker_concurrency, lim, priority_enabled)
        return queues.declare(self, spec)  # type: ignore[arg-type]

    def scheduled(
        self, cron: str, name: str | None = None, tz: str = "UTC", backfill: int = 1
    ) -> Callable[[Any], Any]:
        """Above ``@durable.workflow()``: one run per cron tick (5 fields, or 6 with
        seconds first, read in ``tz``) with id ``<name>-<tick ISO>`` and the tick (a
        datetime) as first argument, however many beats run; up to ``backfill`` ticks
        missed while no beat ran are started on the next check."""
        return schedules.scheduled(self, cron, name, tz, backfill)  # type: ignore[arg-type]

    def declared_queues(self) -> list[queues.DurableQueue]:
        return list(queues.durable_queues(self).values())  # type: ignore[arg-type]

    def queue_stats(self) -> list[QueueStats]:
        """Per declared queue: running, waiting, oldest waiting, starts in the window."""
        return queues.queue_stats(self)  # type: ignore[arg-type]

    def list_schedules(self) -> list[ScheduleInfo]:
        known = schedules.durable_schedules(self)  # type: ignore[arg-type]
        return schedule_infos(self.runtime, {n: s for n, (s, _task) in known.items()})

    def pause_schedule(self, name: str) -> None:
        """No run for the ticks until ``resume_schedule`` (they are not backfilled)."""
        self._known_schedule(name)
        set_paused(self.runtime, name, True)

    def resume_schedule(self, name: str) -> None:
        self._known_schedule(name)
        set_paused(self.runtime, name, False)

    def _known_schedule(self, name: str) -> None:
        if name not in schedules.durable_schedules(self):  # type: ignore[arg-type]
            raise KeyError(f"no schedule named {name!r} in this app")
