"""SQL for operating the store: filtered listings and counts, executors and what they run,
activity over time, the metrics feed, bulk cancellation and retention deletes.

Mixed into ``Store``; the protocol (and what each method promises) is
store/operations_interface.py. Each query reads through an index of migration 0004 or
only active workflows, so a dashboard page or a metrics scrape stays cheap on a history of
millions of rows. Deletes go in batches, each one short transaction, and skip rows a
concurrent deletion holds (``FOR UPDATE SKIP LOCKED`` on Postgres; SQLite serializes).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    Connection,
    case,
    delete,
    exists,
    func,
    literal,
    literal_column,
    or_,
    select,
    tuple_,
    union_all,
    update,
)

from ..types import (
    ACTIVE_STATUSES,
    TERMINAL_STATUSES,
    ActivityBucket,
    EndedWorkflow,
    ExecutorRecord,
    ExecutorWork,
    PageCursor,
    StepRecord,
    StepState,
    WorkflowFilter,
    WorkflowKind,
    WorkflowRecord,
    WorkflowState,
)
from .recovery import RecoveryQueries, _owned_by
from .tables import executors, step_errors, steps, workflows

CHAIN = WorkflowKind.CHAIN
ACTIVE = list(ACTIVE_STATUSES)
# the highest code point: every string that starts with p sorts below p + this (SQLite)
_PREFIX_END = "\U0010ffff"


def like_prefix(prefix: str) -> str:
    """A LIKE pattern (escape character ``\\``) matching strings that start with ``prefix``."""
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


class OperationsQueries(RecoveryQueries):
    """Read-mostly queries for people and monitoring, and the deletes of retention."""

    # filters --------------------------------------------------------------
    def _matching(self, where: WorkflowFilter) -> list[Any]:
        w = workflows.c
        cond: list[Any] = []
        if where.statuses:
            cond.append(w.status.in_(list(where.statuses)))
        if where.name is not None:
            cond.append(w.name == where.name)
        if where.queue is not None:
            cond.append(w.queue == where.queue)
        if where.created_after_ms is not None:
            cond.append(w.created_at_ms >= where.created_after_ms)
        if where.created_before_ms is not None:
            cond.append(w.created_at_ms < where.created_before_ms)
        if where.id_prefix:
            cond.append(w.workflow_id.like(like_prefix(where.id_prefix), escape="\\"))
            if self.dialect == "sqlite":  # LIKE ignores case there and skips the key
                end = where.id_prefix + _PREFIX_END
                cond += [w.workflow_id >= where.id_prefix, w.workflow_id < end]
        if where.parent_workflow_id is not None:
            cond.append(w.parent_workflow_id == where.parent_workflow_id)
        if where.executor_id is not None:
            cond.append(self._running_under(_owned_by(where.executor_id)))
        return cond

    def count_by_status(self, where: WorkflowFilter, cap: int | None = None) -> dict[str, int]:
        cond = self._matching(where)
        if cap is None:
            stmt: Any = (
                select(workflows.c.status, func.count()).where(*cond).group_by(workflows.c.status)
            )
        else:  # one bounded index range per status: at most cap + 1 entries read from each
            statuses = where.statuses or tuple(WorkflowState)
            stmt = union_all(
                *(
                    select(
                        literal(str(status)),
                        select(func.count())
                        .select_from(
                            select(literal(1))
                            .where(*cond, workflows.c.status == status)
                            .limit(cap + 1)
                            .subquery()
                        )
                        .scalar_subquery(),
                    )
                    for status in statuses
                )
            )

        def run(conn: Connection) -> dict[str, int]:
            return {status: n for status, n in conn.execute(stmt) if n}

        return self._read("count_by_status", run)

    def list_page(
        self, where: WorkflowFilter, *, limit: int, after: PageCursor | None = None
    ) -> list[WorkflowRecord]:
        w = workflows.c
        cond = self._matching(where)
        if after is not None:
            # the first term alone is what an index on created_at_ms can seek to
            cond += [
                w.created_at_ms <= after.at_ms,
                tuple_(w.created_at_ms, w.workflow_id) < tuple_(after.at_ms, after.workflow_id),
            ]
        stmt = (
            select(workflows)
            .where(*cond)
            .order_by(w.created_at_ms.desc(), w.workflow_id.desc())
            .limit(limit)
        )
        return self._read("list_page", lambda c: _workflow_rows(c, stmt))

    def count_active_by_name(self) -> list[tuple[str, str, int]]:
        w = workflows.c
        stmt = (
            select(w.name, w.status, func.count())
            .where(w.status.in_(ACTIVE))
            .group_by(w.name, w.status)
            .order_by(w.name, w.status)
        )
        return self._read("count_active_by_name", lambda c: [tuple(r) for r in c.execute(stmt)])

    # executors and stalls ---------------------------------------------------
    def _active_work(self) -> Any:
        """(workflow_id, executor_id) of every active workflow and who runs it."""
        w, s = workflows.c, steps.alias("run")
        owned = select(w.workflow_id, w.executor_id).where(
            w.kind != CHAIN, w.status.in_(ACTIVE), w.executor_id.is_not(None)
        )
        leased = (
            select(s.c.workflow_id, s.c.executor_id)
            .join_from(s, workflows, s.c.workflow_id == w.workflow_id)
            .where(w.kind == CHAIN, w.status.in_(ACTIVE), s.c.status == StepState.RUNNING)
        )
        return owned.union(leased).subquery("work")

    def list_executors(self, heartbeat_after_ms: int) -> list[ExecutorWork]:
        work = self._active_work()
        e = executors.c
        find = (
            select(executors)
            .where(
                or_(
                    e.last_heartbeat_ms >= heartbeat_after_ms,
                    e.executor_id.in_(select(work.c.executor_id)),
                )
            )
            .order_by(e.last_heartbeat_ms.desc(), e.executor_id)
        )
        runs = select(work.c.executor_id, work.c.workflow_id).order_by(work.c.workflow_id)

        def run(conn: Connection) -> list[ExecutorWork]:
            owned: dict[str, list[str]] = {}
            for executor_id, workflow_id in conn.execute(runs):
                owned.setdefault(executor_id, []).append(workflow_id)
            return [
                ExecutorWork(ExecutorRecord(**r), tuple(owned.get(r["executor_id"], ())))
                for r in conn.execute(find).mappings()
            ]

        return self._read("list_executors", run)

    def count_stalled(self, stale_before_ms: int, lost_before_ms: int) -> int:
        stmt = select(func.count()).where(self._stalled(stale_before_ms, lost_before_ms))
        return self._read("count_stalled", lambda c: int(c.execute(stmt).scalar_one()))

    def list_stalled(
        self, stale_before_ms: int, lost_before_ms: int, limit: int
    ) -> list[WorkflowRecord]:
        stmt = (
            select(workflows)
            .where(self._stalled(stale_before_ms, lost_before_ms))
            .order_by(workflows.c.updated_at_ms, workflows.c.workflow_id)
            .limit(limit)
        )
        return self._read("list_stalled", lambda c: _workflow_rows(c, stmt))

    def oldest_enqueued_ms(self, now_ms: int) -> int | None:
        w = workflows.c
        due = func.coalesce(w.wake_at_ms, 0)
        due_since = case((due > w.updated_at_ms, due), else_=w.updated_at_ms)
        stmt = select(func.min(due_since)).where(
            w.status == WorkflowState.ENQUEUED, or_(w.wake_at_ms.is_(None), w.wake_at_ms <= now_ms)
        )
        return self._read("oldest_enqueued_ms", lambda c: c.execute(stmt).scalar())

    # activity and the metrics feed -----------------------------------------
    def activity(self, since_ms: int, bucket_ms: int) -> list[ActivityBucket]:
        w, e = workflows.c, step_errors.c
        # a literal, not a parameter: Postgres must see the same expression in GROUP BY
        size: Any = literal_column(str(int(bucket_ms)))
        started = (
            select(w.created_at_ms // size, func.count())
            .where(w.created_at_ms >= since_ms)
            .group_by(w.created_at_ms // size)
        )
        ended = (
            select(w.completed_at_ms // size, w.status, func.count())
            .where(
                w.completed_at_ms >= since_ms,
                w.status.in_([WorkflowState.SUCCESS, WorkflowState.ERROR]),
            )
            .group_by(w.completed_at_ms // size, w.status)
        )
        failed = (
            select(e.created_at_ms // size, func.count())
            .where(e.created_at_ms >= since_ms)
            .group_by(e.created_at_ms // size)
        )

        def run(conn: Connection) -> list[ActivityBucket]:
            found: dict[int, dict[str, int]] = {}
            for b, n in conn.execute(started):
                found.setdefault(int(b), {})["started"] = n
            for b, status, n in conn.execute(ended):
                key = "succeeded" if status == WorkflowState.SUCCESS else "failed"
                found.setdefault(int(b), {})[key] = n
            for b, n in conn.execute(failed):
                found.setdefault(int(b), {})["retries"] = n
            return [ActivityBucket(b * bucket_ms, **found[b]) for b in sorted(found)]

        return self._read("activity", run)

    def ended_after(self, after: PageCursor, until_ms: int, limit: int) -> list[EndedWorkflow]:
        w = workflows.c
        stmt = (
            select(workflows)
            .where(
                w.completed_at_ms >= after.at_ms,
                w.completed_at_ms < until_ms,
                tuple_(w.completed_at_ms, w.workflow_id) > tuple_(after.at_ms, after.workflow_id),
            )
            .order_by(w.completed_at_ms, w.workflow_id)
            .limit(limit)
        )

        def run(conn: Connection) -> list[EndedWorkflow]:
            ended = _workflow_rows(conn, stmt)
            found: dict[str, list[StepRecord]] = {}
            if ended:
                ids = [r.workflow_id for r in ended]
                rows = conn.execute(select(steps).where(steps.c.workflow_id.in_(ids)))
                for r in rows.mappings():
                    found.setdefault(r["workflow_id"], []).append(StepRecord(**r))
            return [EndedWorkflow(r, tuple(found.get(r.workflow_id, ()))) for r in ended]

        return self._read("ended_after", run)

    def failed_attempts_between(self, since_ms: int, until_ms: int) -> dict[str, int]:
        e = step_errors.c
        stmt = (
            select(e.name, func.count())
            .where(e.created_at_ms >= since_ms, e.created_at_ms < until_ms)
            .group_by(e.name)
        )
        return self._read("failed_attempts_between", lambda c: {n: k for n, k in c.execute(stmt)})

    # actions ----------------------------------------------------------------
    def cancel_workflows(self, workflow_ids: Sequence[str]) -> list[str]:
        w = workflows.c
        find = (
            select(w.workflow_id)
            .where(w.workflow_id.in_(list(workflow_ids)), w.status.in_(ACTIVE))
            .with_for_update()
        )

        def run(conn: Connection) -> list[str]:
            ids = [r[0] for r in conn.execute(find)]
            if ids:
                now = self.clock.now_ms()
                conn.execute(
                    update(workflows)
                    .where(w.workflow_id.in_(ids))
                    .values(status=WorkflowState.CANCELLED, updated_at_ms=now, completed_at_ms=now)
                )
            return ids

        return self._write("cancel_workflows", run) if workflow_ids else []

    # retention --------------------------------------------------------------
    def _deletable(
        self,
        statuses: Sequence[str],
        before_ms: int | None,
        workflow_ids: Sequence[str] | None = None,
    ) -> list[Any]:
        w = workflows.c
        parent, child = workflows.alias("parent"), workflows.alias("child")
        ended = [s for s in statuses if s in TERMINAL_STATUSES]  # never an active one
        cond = [
            w.status.in_(ended),
            w.completed_at_ms.is_not(None),
            # a finished child stays while its parent is active (it may still read it),
            ~exists().where(
                parent.c.workflow_id == w.parent_workflow_id, parent.c.status.in_(ACTIVE)
            ),
            # and a parent stays while a child of it is still active
            ~exists().where(
                child.c.parent_workflow_id == w.workflow_id, child.c.status.in_(ACTIVE)
            ),
        ]
        if before_ms is not None:
            cond.append(w.completed_at_ms < before_ms)
        if workflow_ids is not None:
            cond.append(w.workflow_id.in_(list(workflow_ids)))
        return cond

    def count_deletable(self, statuses: Sequence[str], before_ms: int | None) -> int:
        stmt = select(func.count()).where(*self._deletable(statuses, before_ms))
        return self._read("count_deletable", lambda c: int(c.execute(stmt).scalar_one()))

    def delete_ended(
        self,
        statuses: Sequence[str],
        limit: int,
        *,
        before_ms: int | None = None,
        workflow_ids: Sequence[str] | None = None,
    ) -> list[str]:
        w = workflows.c
        find = (
            select(w.workflow_id)
            .where(*self._deletable(statuses, before_ms, workflow_ids))
            .order_by(w.completed_at_ms)
            .limit(limit)
            .with_for_update(skip_locked=True, of=workflows)
        )

        def run(conn: Connection) -> list[str]:
            ids = [r[0] for r in conn.execute(find)]
            if ids:
                conn.execute(delete(step_errors).where(step_errors.c.workflow_id.in_(ids)))
                conn.execute(delete(steps).where(steps.c.workflow_id.in_(ids)))
                conn.execute(delete(workflows).where(w.workflow_id.in_(ids)))
            return ids

        if workflow_ids is not None and not workflow_ids:
            return []
        return self._write("delete_ended", run)

    def delete_stale_executors(self, before_ms: int) -> int:
        work = self._active_work()
        e = executors.c
        stmt = delete(executors).where(
            e.last_heartbeat_ms < before_ms, e.executor_id.not_in(select(work.c.executor_id))
        )
        return self._write("delete_stale_executors", lambda c: int(c.execute(stmt).rowcount))


def _workflow_rows(conn: Connection, stmt: Any) -> list[WorkflowRecord]:
    return [WorkflowRecord(**r) for r in conn.execute(stmt).mappings()]
