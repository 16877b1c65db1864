"""Hot-path statements of code workflows, built once with bind parameters.

Executing a prebuilt statement skips SQLAlchemy's statement construction and coercion,
which costs more CPU than the database round trip for these one-row statements.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, bindparam, exists, func, literal, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from ..types import ExecutorState, WorkflowState
from .tables import executors, steps, workflows

STEP_COLUMNS = [c.name for c in steps.c]


def ended_values() -> dict[str, Any]:
    """SET clause of the end of a run (a workflow's or a chain's): final status, output or
    error, no owner."""
    return {
        "status": bindparam("status"),
        "output": bindparam("output"),
        "error": bindparam("error"),
        "executor_id": None,
        "updated_at_ms": bindparam("now"),
        "completed_at_ms": bindparam("now"),
    }


def give_up_ownership(workflow_id: str, executor_id: str, wake_at_ms: int, now_ms: int) -> Any:
    """The running workflow's owner lets it go until ``wake_at_ms``: ``ENQUEUED``, no owner
    (a suspension: a long retry wait, waiting for children, a message or an event)."""
    return (
        update(workflows)
        .where(
            workflows.c.workflow_id == workflow_id,
            workflows.c.status == WorkflowState.PENDING,
            workflows.c.executor_id == executor_id,
        )
        .values(
            status=WorkflowState.ENQUEUED,
            executor_id=None,
            wake_at_ms=wake_at_ms,
            updated_at_ms=now_ms,
        )
    )


def one_of(column: Any, *values: str) -> Any:
    """``column IN (...)`` with one bind per value: the hot path cannot expand lists."""
    return column.in_([literal(v) for v in values])


def _claim_workflow() -> Any:
    live = select(executors.c.executor_id).where(
        executors.c.last_heartbeat_ms >= bindparam("stale"),
        executors.c.status == ExecutorState.RUNNING,
    )
    return (
        update(workflows)
        .where(
            workflows.c.workflow_id == bindparam("wid"),
            # a message runs only as the workflow it names (see integration/tasks.py)
            workflows.c.name == bindparam("task_name"),
            or_(
                # an early duplicate of a scheduled retry waits for its own message
                and_(
                    workflows.c.status == WorkflowState.ENQUEUED,
                    or_(
                        workflows.c.wake_at_ms.is_(None),
                        workflows.c.wake_at_ms <= bindparam("soon"),
                        # past its deadline, any delivery takes it, to cancel it
                        workflows.c.deadline_ms <= bindparam("soon"),
                    ),
                ),
                and_(
                    workflows.c.status == WorkflowState.PENDING,
                    or_(workflows.c.executor_id.is_(None), workflows.c.executor_id.not_in(live)),
                ),
            ),
        )
        .values(
            status=WorkflowState.PENDING,
            executor_id=bindparam("executor"),
            run_count=workflows.c.run_count + 1,
            started_at_ms=func.coalesce(workflows.c.started_at_ms, bindparam("now")),
            updated_at_ms=bindparam("now"),
            wake_at_ms=None,
        )
        .returning(*workflows.c)
    )


def _finish_workflow(owned: bool) -> Any:
    cond = [
        workflows.c.workflow_id == bindparam("wid"),
        workflows.c.status == WorkflowState.PENDING,
    ]
    if owned:
        cond.append(workflows.c.executor_id == bindparam("executor"))
    return update(workflows).where(*cond).values(**ended_values())


def _step_checkpoint(dialect: Any) -> Any:
    """INSERT of a step checkpoint, only while its workflow runs (PENDING) and before its
    deadline (a body that ran past it records nothing), first one wins."""
    binds = {n: bindparam(n, type_=steps.c[n].type) for n in STEP_COLUMNS}
    running = exists().where(
        workflows.c.workflow_id == binds["workflow_id"],
        workflows.c.status == WorkflowState.PENDING,
        or_(
            workflows.c.deadline_ms.is_(None),
            binds["completed_at_ms"].is_(None),
            workflows.c.deadline_ms >= binds["completed_at_ms"],
        ),
    )
    row = select(*[binds[n].label(n) for n in STEP_COLUMNS]).where(running)
    return (
        dialect.insert(steps)
        .from_select(STEP_COLUMNS, row)
        .on_conflict_do_nothing()
        .returning(steps.c.step_id)
    )


def _insert_workflow(dialect: Any) -> Any:
    """INSERT of a new workflow row unless its id exists; returns the id when inserted."""
    return (
        dialect.insert(workflows)
        .values({c.name: bindparam(c.name, type_=c.type) for c in workflows.c})
        .on_conflict_do_nothing()
        .returning(workflows.c.workflow_id)
    )


CLAIM_WORKFLOW = _claim_workflow()
INSERT_WORKFLOW = {"postgresql": _insert_workflow(postgresql), "sqlite": _insert_workflow(sqlite)}
INSERT_STEP = steps.insert().values({n: bindparam(n, type_=steps.c[n].type) for n in STEP_COLUMNS})
FINISH_OWNED = _finish_workflow(owned=True)
FINISH_ANY = _finish_workflow(owned=False)
STEP_CHECKPOINT = {"postgresql": _step_checkpoint(postgresql), "sqlite": _step_checkpoint(sqlite)}


def hot_statements(dialect: str) -> list[Any]:
    """This module's statements that run on the hot path, for ``HotPath.warm``."""
    return [
        CLAIM_WORKFLOW,
        FINISH_OWNED,
        FINISH_ANY,
        STEP_CHECKPOINT[dialect],
        INSERT_WORKFLOW[dialect],
        INSERT_STEP,
    ]
