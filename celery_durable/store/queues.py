"""Durable queues and schedules in SQL (issue 13): enqueue, admission, stats, ticks.

Admission of a queue is serialized on its row in ``durable_queues`` (an UPDATE that holds
the row lock until COMMIT on Postgres, the write lock on SQLite), so concurrent admitters
never over-admit. Slots are never counted in a column that could drift: a queue's running
workflows are its rows in ``durable_workflows`` that are active and not waiting for
admission (``wake_at_ms = WAIT_FOR_ADMISSION_MS``); a workflow that ends, or is recovered
and ends, frees its slot by its own status. Starts per limiter window are the entries
admitted within it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, and_, func, select, update

from ..flowtypes import (
    WAIT_FOR_ADMISSION_MS,
    ChainRoute,
    Enqueued,
    QueueEntry,
    QueueSpec,
    QueueStats,
    ScheduleState,
)
from ..types import ACTIVE_STATUSES, StepRecord, WorkflowRecord, WorkflowState
from .base import StoreBase
from .tables import (
    HOLDS_SLOT_WHERE,
    WAITING_ROW_WHERE,
    queue_entries,
    queues,
    schedules,
    steps,
    workflows,
)

E, W = queue_entries.c, workflows.c
ENQUEUED = WorkflowState.ENQUEUED
#: the most workflows one admission call admits (the periodic pass takes the rest)
ADMIT_BATCH = 500
#: waiting entries read beyond the free slots, in case some have left the queue
SCAN_MARGIN = 20
#: ``admitted_at_ms`` of an entry whose workflow left the queue without admission (never
#: inside a limiter window)
LEFT = 0


def waiting_row() -> Any:
    """A workflow row waiting for admission."""
    return and_(W.status == ENQUEUED, W.wake_at_ms == WAIT_FOR_ADMISSION_MS)


def holds_slot(queue: str) -> Any:
    """A workflow of ``queue`` that holds a slot: active and admitted (running, due, or
    owned by a worker that died and not yet recovered); served by its partial index."""
    return and_(W.queue == queue, HOLDS_SLOT_WHERE)


def route_chain(conn: Connection, workflow_id: str, route: ChainRoute, now: int) -> None:
    """In the transaction of a chain step's checkpoint: the chain, if still active, waits
    for admission in the queue of ``route.entry`` (with that new entry), or leaves its
    durable queue for ``route.queue``. Its earlier entries keep their admission times (the
    limiter's windows) but no longer name a worker (``worker_concurrency`` counts)."""
    active = and_(W.workflow_id == workflow_id, W.status.in_(sorted(ACTIVE_STATUSES)))
    entry = route.entry
    if entry is None:
        conn.execute(update(workflows).where(active).values(queue=route.queue, updated_at_ms=now))
        return
    waits = (
        update(workflows)
        .where(active)
        .values(
            queue=entry.queue, status=ENQUEUED, wake_at_ms=WAIT_FOR_ADMISSION_MS, updated_at_ms=now
        )
    )
    if conn.execute(waits).rowcount != 1:
        return
    conn.execute(
        update(queue_entries)
        .where(E.workflow_id == workflow_id, E.executor_id.is_not(None))
        .values(executor_id=None)
    )
    conn.execute(queue_entries.insert().values(**entry.__dict__))


class QueueQueries(StoreBase):
    """The flow-control part of the SQL ``Store``."""

    def enqueue_workflow(
        self,
        record: WorkflowRecord,
        entry: QueueEntry,
        spec: QueueSpec,
        chain_steps: Sequence[StepRecord] = (),
    ) -> Enqueued:
        """Insert a workflow (a chain: with its ``chain_steps``) waiting in ``spec``'s queue,
        unless its id exists (returned as it is) or an active workflow of that queue holds
        its deduplication id; then admit what fits, all in one transaction."""

        def run(conn: Connection) -> Enqueued:
            now = self.clock.now_ms()
            self._lock_queue(conn, spec.name, now)
            exists = select(W.workflow_id).where(W.workflow_id == record.workflow_id)
            # an existing id is returned whoever holds the deduplication id now (a replayed
            # child start, started before that holder)
            if entry.deduplication_id is not None and conn.execute(exists).first() is None:
                holder = conn.execute(
                    select(E.workflow_id)
                    .join(workflows, W.workflow_id == E.workflow_id)
                    .where(
                        E.queue == spec.name,
                        E.deduplication_id == entry.deduplication_id,
                        W.status.in_(sorted(ACTIVE_STATUSES)),
                        E.workflow_id != record.workflow_id,
                    )
                    .limit(1)
                ).scalar()
                if holder is not None:
                    return Enqueued(None, False, duplicate_of=holder)
            insert = self._insert(workflows).values(**record.__dict__).on_conflict_do_nothing()
            created = conn.execute(insert.returning(W.workflow_id)).first() is not None
            if created:
                values = {k: v for k, v in entry.__dict__.items()}
                conn.execute(queue_entries.insert().values(**values))
                if chain_steps:
                    conn.execute(steps.insert(), [self.step_values(c) for c in chain_steps])
                stored = record
            else:
                found = conn.execute(select(workflows).where(W.workflow_id == record.workflow_id))
                stored = WorkflowRecord(**found.mappings().one())
            admitted = self._admit(conn, spec, None, now)
            return Enqueued(stored, created, admitted=tuple(admitted))

        return self._write("enqueue_workflow", run)

    def requeue_workflow(self, entry: QueueEntry) -> None:
        """An active workflow waits for admission again with ``entry`` (``route_chain``)."""

        def run(conn: Connection) -> None:
            route = ChainRoute(entry.queue, entry)
            route_chain(conn, entry.workflow_id, route, self.clock.now_ms())

        self._write("requeue_workflow", run)

    def admit(self, spec: QueueSpec, executor_id: str | None = None) -> list[WorkflowRecord]:
        """Admit the waiting workflows that fit the queue's limits now, in order (lower
        priority first when enabled, then FIFO); returns them, now due (to publish). A
        queue with ``worker_concurrency`` admits only for a worker (``executor_id``)."""

        def run(conn: Connection) -> list[WorkflowRecord]:
            if self.dialect == "postgresql":
                # an admission lost in a server crash is harmless (the workflow waits again
                # and its message is refused), and the queue's lock is held less long
                conn.exec_driver_sql("SET LOCAL synchronous_commit TO off")
            now = self.clock.now_ms()
            self._lock_queue(conn, spec.name, now)
            return self._admit(conn, spec, executor_id, now)

        return self._write("admit", run)

    def try_admit(
        self, spec: QueueSpec, executor_id: str | None = None
    ) -> list[WorkflowRecord] | None:
        """``admit`` unless another admission holds the queue's lock (None then: it counts
        every slot freed before it took the lock; see ``queue_version``)."""
        if self.dialect != "postgresql":
            return self.admit(spec, executor_id)  # SQLite writers take turns anyway

        def run(conn: Connection) -> list[WorkflowRecord] | None:
            conn.exec_driver_sql("SET LOCAL synchronous_commit TO off")
            now = self.clock.now_ms()
            free = select(queues.c.name).where(queues.c.name == spec.name)
            if conn.execute(free.with_for_update(skip_locked=True)).first() is None:
                return None
            self._lock_queue(conn, spec.name, now)
            return self._admit(conn, spec, executor_id, now)

        return self._write("try_admit", run)

    def queue_version(self, queue: str) -> int:
        """How many admissions of ``queue`` have committed (0: none yet)."""
        stmt = select(queues.c.version).where(queues.c.name == queue)
        return self._read("queue_version", lambda c: int(c.execute(stmt).scalar() or 0))

    def queue_due(self, queue: str) -> bool:
        """A workflow waits in ``queue`` and may be admitted now (one cheap read of the
        waiting index, so an idle periodic pass writes nothing; an entry whose workflow
        left the queue unadmitted makes it True once, until admission marks it)."""
        stmt = select(E.workflow_id).where(
            E.queue == queue, E.admitted_at_ms.is_(None), E.not_before_ms <= self.clock.now_ms()
        )
        return self._read("queue_due", lambda c: c.execute(stmt.limit(1)).first() is not None)

    def queue_stats(self, spec: QueueSpec) -> QueueStats:
        """Running, waiting, the oldest waiting enqueue time and starts in this window."""

        def run(conn: Connection) -> QueueStats:
            now = self.clock.now_ms()
            running = conn.execute(
                select(func.count()).select_from(workflows).where(holds_slot(spec.name))
            ).scalar_one()
            waiting, oldest = conn.execute(
                select(func.count(), func.min(W.created_at_ms)).where(
                    W.queue == spec.name, WAITING_ROW_WHERE
                )
            ).one()
            starts = self._window_starts(conn, spec, now) if spec.limiter else 0
            return QueueStats(spec.name, running, waiting, oldest, starts)

        return self._read("queue_stats", run)

    # schedules ----------------------------------------------------------
    def get_schedules(self, names: Sequence[str] | None = None) -> list[ScheduleState]:
        stmt = select(schedules).order_by(schedules.c.name)
        if names is not None:
            stmt = stmt.where(schedules.c.name.in_(list(names)))

        def run(conn: Connection) -> list[ScheduleState]:
            rows = conn.execute(stmt).mappings()
            return [ScheduleState(r["name"], r["last_tick_ms"], bool(r["paused"])) for r in rows]

        return self._read("get_schedules", run)

    def advance_schedule(self, name: str, tick_ms: int) -> None:
        """The schedule's latest tick is at least ``tick_ms`` (never moves back)."""
        now = self.clock.now_ms()
        stmt = (
            self._insert(schedules)
            .values(name=name, last_tick_ms=tick_ms, paused=0, updated_at_ms=now)
            .on_conflict_do_update(
                index_elements=[schedules.c.name],
                set_={
                    "last_tick_ms": func.coalesce(
                        func.max(schedules.c.last_tick_ms, tick_ms)
                        if self.dialect == "sqlite"
                        else func.greatest(schedules.c.last_tick_ms, tick_ms),
                        tick_ms,
                    ),
                    "updated_at_ms": now,
                },
            )
        )
        self._autocommit("advance_schedule", lambda c: c.execute(stmt))

    def set_schedule_paused(self, name: str, paused: bool) -> None:
        now = self.clock.now_ms()
        stmt = (
            self._insert(schedules)
            .values(name=name, last_tick_ms=None, paused=int(paused), updated_at_ms=now)
            .on_conflict_do_update(
                index_elements=[schedules.c.name],
                set_={"paused": int(paused), "updated_at_ms": now},
            )
        )
        self._autocommit("set_schedule_paused", lambda c: c.execute(stmt))

    # inside a transaction -------------------------------------------------
    def _lock_queue(self, conn: Connection, name: str, now: int) -> None:
        touch = (
            update(queues)
            .where(queues.c.name == name)
            .values(updated_at_ms=now, version=queues.c.version + 1)
        )
        if conn.execute(touch).rowcount == 0:  # the queue's first use
            insert = self._insert(queues).values(name=name, updated_at_ms=now)
            conn.execute(insert.on_conflict_do_nothing())
            conn.execute(touch)

    def _window_starts(self, conn: Connection, spec: QueueSpec, now: int) -> int:
        assert spec.limiter is not None
        since = now - int(spec.limiter[1] * 1000)
        stmt = select(func.count()).where(E.queue == spec.name, E.admitted_at_ms > since)
        return int(conn.execute(stmt.select_from(queue_entries)).scalar_one())

    def _admit(
        self, conn: Connection, spec: QueueSpec, executor_id: str | None, now: int
    ) -> list[WorkflowRecord]:
        free = ADMIT_BATCH
        if spec.worker_concurrency is not None and executor_id is None:
            return []
        count = select(func.count()).select_from(workflows)
        if spec.concurrency is not None:
            running = conn.execute(count.where(holds_slot(spec.name))).scalar_one()
            free = min(free, spec.concurrency - running)
        if spec.worker_concurrency is not None:
            # the queue's slots held (few rows: its active ones), then which are this worker's
            held = list(conn.execute(select(W.workflow_id).where(holds_slot(spec.name))).scalars())
            mine = conn.execute(
                select(func.count())
                .select_from(queue_entries)
                .where(E.workflow_id.in_(held), E.executor_id == executor_id)
            ).scalar_one()
            free = min(free, spec.worker_concurrency - mine)
        if spec.limiter is not None:
            free = min(free, spec.limiter[0] - self._window_starts(conn, spec, now))
        if free <= 0:
            return []
        # the waiting index in order (priority is 0 throughout when not enabled), then the
        # workflows by key: no join whose plan could scan the history
        candidates = list(
            conn.execute(
                select(E.workflow_id)
                .where(E.queue == spec.name, E.admitted_at_ms.is_(None), E.not_before_ms <= now)
                .order_by(E.priority, E.seq)
                .limit(free + SCAN_MARGIN)
            ).scalars()
        )
        if not candidates:
            return []
        waiting = set(
            conn.execute(
                select(W.workflow_id).where(
                    W.workflow_id.in_(candidates), W.queue == spec.name, waiting_row()
                )
            ).scalars()
        )
        # (a chain has an entry per wait: only the entries still waiting are touched)
        open_entry = and_(E.queue == spec.name, E.admitted_at_ms.is_(None))
        left = [c for c in candidates if c not in waiting]
        if left:  # cancelled (or timed out, resumed) while waiting: out of the queue
            conn.execute(
                update(queue_entries)
                .where(E.workflow_id.in_(left), open_entry)
                .values(admitted_at_ms=LEFT)
            )
        ids = list(dict.fromkeys(c for c in candidates if c in waiting))[:free]
        if not ids:
            return []
        conn.execute(
            update(queue_entries)
            .where(E.workflow_id.in_(ids), open_entry)
            .values(admitted_at_ms=now, executor_id=executor_id)
        )
        rows = conn.execute(
            update(workflows)
            .where(W.workflow_id.in_(ids), waiting_row())
            .values(wake_at_ms=None, updated_at_ms=now)
            .returning(*workflows.c)
        ).mappings()
        by_id = {r["workflow_id"]: WorkflowRecord(**r) for r in rows}
        return [by_id[i] for i in ids if i in by_id]
