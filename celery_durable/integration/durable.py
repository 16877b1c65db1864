"""``Durable(app)``: the one object a Celery app adds to make its tasks durable."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from celery import Celery

from ..errors import NonExistentWorkflow, UnknownWorkflowError
from ..policy import make_policy
from ..runtime.context import current_workflow, sql_session, step_status
from ..runtime.core import Runtime, RuntimeSettings
from ..runtime.executor import Heartbeat
from ..runtime.handle import WorkflowHandle, to_status, to_step_info
from ..runtime.logs import make_logger
from ..runtime.recovery import RecoveryReport
from ..runtime.steps import durable_sleep
from ..serialization import Serializer
from ..store import Store, normalize_url
from ..store.interface import DurableStore
from ..store.engine import with_retries
from ..types import (
    ACTIVE_STATUSES,
    ResumeOutcome,
    StepInfo,
    StepStatus,
    WorkflowKind,
    WorkflowState,
    WorkflowStatus,
)
from .chains import DurableChain
from .recovery import connect_recovery_signals, install_sweep, republish, run_sweep
from .settings import DurableSettings, read_settings
from .signals import workflow_recovered
from .tasks import DurableTask
from .worker import DurableHeartbeat, connect_signals

_TASK_OPTION_DEFAULTS = {"shared": False}


class Durable:
    """Binds celery-durable to a Celery app: decorators, handles, management."""

    def __init__(self, app: Celery, database_url: str | None = None, **settings: Any) -> None:
        self.app = app
        self.overrides: dict[str, Any] = {"database_url": database_url, **settings}
        self._settings: DurableSettings | None = None
        self._runtime: Runtime | None = None
        self._migrated = False
        self._lock = threading.RLock()
        self.worker_executor_id: str | None = None
        self._worker_heartbeat: Heartbeat | None = None
        self.logger = make_logger()
        app.durable = self
        app.steps["worker"].add(DurableHeartbeat)
        connect_signals()
        connect_recovery_signals()
        install_sweep(self)

    # configuration ------------------------------------------------------
    @property
    def settings(self) -> DurableSettings:
        if self._settings is None:
            self._settings = read_settings(self.app.conf, self.overrides)
        return self._settings

    @property
    def runtime(self) -> Runtime:
        """Built on first use, so the app's configuration is complete by then."""
        if self._runtime is None:
            with self._lock:
                if self._runtime is None:
                    s = self.settings
                    store = Store(
                        normalize_url(s.database_url),
                        retry_timeout=s.db_retry_timeout,
                        pool_size=s.pool_size,
                    )
                    runtime = Runtime(
                        store,
                        Serializer(s.serializer),
                        RuntimeSettings(
                            executor_timeout=s.executor_timeout,
                            heartbeat_interval=s.heartbeat_interval,
                            max_inline_retry_wait=s.max_inline_retry_wait,
                            poll_interval=s.result_poll_interval,
                            default_max_recovery_attempts=s.default_max_recovery_attempts,
                            enqueue_timeout=s.enqueue_timeout,
                        ),
                    )
                    if s.auto_migrate and not self._migrated:
                        with_retries(
                            store.migrate,
                            timeout=s.db_retry_timeout,
                            what="schema migration",
                        )
                        self._migrated = True
                    self._runtime = runtime
        return self._runtime

    @property
    def store(self) -> DurableStore:
        return self.runtime.store

    def migrate(self, revision: str = "head") -> str | None:
        """Bring the durable schema up to date (also ``celery -A proj durable migrate``)."""
        rev = self.runtime.store.migrate(revision)
        self._migrated = True
        return rev

    # decorators ---------------------------------------------------------
    def _task(self, fn: Callable[..., Any], attrs: dict[str, Any], options: dict[str, Any]) -> Any:
        opts = {**_TASK_OPTION_DEFAULTS, **options, **attrs}
        return self.app.task(base=DurableTask, durable=self, **opts)(fn)

    def workflow(
        self, name: str | None = None, max_recovery_attempts: int | None = -1, **task_options: Any
    ) -> Callable[[Callable[..., Any]], Any]:
        """Make ``fn`` a durable workflow (and a Celery task)."""
        # -1 (the default) means "the durable_default_max_recovery_attempts setting"
        limit = max_recovery_attempts
        if limit is not None and limit < -1:
            raise ValueError("max_recovery_attempts must be >= 0 or None")

        def decorate(fn: Callable[..., Any]) -> Any:
            attrs = {"durable_kind": WorkflowKind.WORKFLOW, "durable_max_recovery_attempts": limit}
            return self._task(fn, attrs, {"name": name, **task_options} if name else task_options)

        return decorate

    def step(
        self,
        retries: int = 0,
        interval_seconds: float = 1.0,
        backoff_rate: float = 2.0,
        max_interval_seconds: float = 3600.0,
        jitter: float = 0.0,
        dont_retry_on: Sequence[type[BaseException]] | type[BaseException] = (),
        name: str | None = None,
        **task_options: Any,
    ) -> Callable[[Callable[..., Any]], Any]:
        """Make ``fn`` a checkpointed step with a DBOS-style retry policy (and a Celery task)."""
        policy = make_policy(
            retries=retries,
            interval_seconds=interval_seconds,
            backoff_rate=backoff_rate,
            max_interval_seconds=max_interval_seconds,
            jitter=jitter,
            dont_retry_on=dont_retry_on,
        )

        def decorate(fn: Callable[..., Any]) -> Any:
            attrs = {"durable_kind": WorkflowKind.STEP, "durable_policy": policy}
            return self._task(fn, attrs, {"name": name, **task_options} if name else task_options)

        return decorate

    def transaction(
        self, isolation_level: str | None = None, name: str | None = None, **task_options: Any
    ) -> Callable[[Callable[..., Any]], Any]:
        """A step run in one database transaction with its checkpoint: ``durable.sql_session``."""
        allowed = {None, "SERIALIZABLE", "REPEATABLE READ", "READ COMMITTED", "READ UNCOMMITTED"}
        if isolation_level not in allowed:
            raise ValueError(f"isolation_level must be one of {sorted(a for a in allowed if a)}")

        def decorate(fn: Callable[..., Any]) -> Any:
            attrs = {
                "durable_kind": WorkflowKind.TRANSACTION,
                "durable_isolation_level": isolation_level,
            }
            return self._task(fn, attrs, {"name": name, **task_options} if name else task_options)

        return decorate

    def chain(self, *signatures: Any) -> DurableChain:
        """A durable chain of step signatures: ``durable.chain(a.s(1), b.s()).start()``."""
        return DurableChain(self, signatures)

    @property
    def default_max_recovery_attempts(self) -> int | None:
        return self.settings.default_max_recovery_attempts

    # inside workflows and steps ------------------------------------------
    @property
    def workflow_id(self) -> str | None:
        ctx = current_workflow()
        return ctx.workflow_id if ctx else None

    @property
    def step_status(self) -> StepStatus | None:
        return step_status.get()

    @property
    def sql_session(self) -> Any:
        """The SQLAlchemy session of the running transaction step."""
        session = sql_session.get()
        if session is None:
            raise RuntimeError("durable.sql_session is only available inside @durable.transaction")
        return session

    def sleep(self, seconds: float) -> None:
        durable_sleep(self.runtime, seconds)

    # starting and finding workflows --------------------------------------
    def start_workflow(self, fn: Any, *args: Any, **kwargs: Any) -> WorkflowHandle:
        """Record and publish ``fn`` (a durable task) for a worker; returns its handle."""
        if not isinstance(getattr(fn, "durable_kind", None), str):
            raise TypeError(f"{fn!r} is not a durable workflow, step or transaction")
        result = fn.apply_async(args, kwargs)
        return WorkflowHandle(self.runtime, result.id)

    def retrieve_workflow(self, workflow_id: str) -> WorkflowHandle:
        """A handle by workflow id, or by the task id of any link of a durable chain
        (``chain(...).apply_async().id`` is the last link's)."""
        if self.store.get_workflow(workflow_id) is None:
            step = self.store.find_step_by_task_id(workflow_id)
            if step is None:
                raise NonExistentWorkflow(workflow_id)
            workflow_id = step.workflow_id
        return WorkflowHandle(self.runtime, workflow_id)

    def get_workflow_status(self, workflow_id: str) -> WorkflowStatus | None:
        record = self.store.get_workflow(workflow_id)
        return to_status(self.runtime, record) if record is not None else None

    def list_workflows(
        self,
        status: str | Sequence[str] | None = None,
        name: str | None = None,
        limit: int | None = 100,
        offset: int = 0,
        newest_first: bool = True,
        workflow_ids: Sequence[str] | None = None,
    ) -> list[WorkflowStatus]:
        records = self.store.list_workflows(
            status=status,
            name=name,
            limit=limit,
            offset=offset,
            newest_first=newest_first,
            workflow_ids=workflow_ids,
        )
        return [to_status(self.runtime, r) for r in records]

    def list_workflow_steps(self, workflow_id: str) -> list[StepInfo]:
        steps = self.store.load_steps(workflow_id)
        return [to_step_info(self.runtime, steps[k]) for k in sorted(steps)]

    # management ----------------------------------------------------------
    def resume_workflow(self, workflow_id: str) -> WorkflowHandle:
        """Re-enqueue an unfinished workflow from its first incomplete step.

        Counts one recovery attempt; a cancelled or dead-lettered workflow starts its count
        anew. A finished workflow, or one a live worker still runs, is left as it is
        (``resume`` returns what was done: see ``resume``).
        """
        self.resume(workflow_id)
        return WorkflowHandle(self.runtime, workflow_id)

    def resume(self, workflow_id: str) -> ResumeOutcome:
        """``resume_workflow``, returning RESUMED, RUNNING (a live executor runs it: left
        alone) or FINISHED."""
        found = self.store.resume_workflow(workflow_id, self.runtime.stale_before_ms)
        if found is None:
            raise NonExistentWorkflow(workflow_id)
        record, outcome = found
        if outcome is ResumeOutcome.RESUMED:
            republish(self, record)
            workflow_recovered.send(
                sender=self, workflow_id=workflow_id, recovery_attempts=record.recovery_attempts + 1
            )
        elif outcome is ResumeOutcome.RUNNING:
            self.logger.logger.info(
                "workflow %s not resumed: a live worker runs it (recovered if that worker dies)",
                workflow_id,
            )
        return outcome

    def cancel_workflow(self, workflow_id: str) -> None:
        """End an unfinished workflow as CANCELLED; it starts no further step once noticed
        (a step body already running finishes, but its output is not recorded)."""
        if self.store.get_workflow(workflow_id) is None:
            raise NonExistentWorkflow(workflow_id)
        self.store.set_status(
            workflow_id,
            WorkflowState.CANCELLED,
            only_from=[WorkflowState.ENQUEUED, WorkflowState.PENDING],
            keep_owner=True,
        )

    def publish_existing(self, workflow_id: str, countdown: float | None = None) -> None:
        """Publish a recorded workflow's message again (a duplicate is harmless: leases)."""
        record = self.store.get_workflow(workflow_id)
        if record is None:
            raise NonExistentWorkflow(workflow_id)
        republish(self, record, countdown)

    def recover(self) -> RecoveryReport:
        """One recovery sweep now (beat runs ``celery_durable.recover`` on a schedule)."""
        return run_sweep(self)

    def fork_workflow(self, workflow_id: str, start_step: int = 0) -> WorkflowHandle:
        """Start a copy of a workflow under a new id that reuses the outputs of its first
        ``start_step`` steps and runs the rest again."""
        record = self.store.get_workflow(workflow_id)
        if record is None:
            raise NonExistentWorkflow(workflow_id)
        new_id = str(uuid.uuid4())
        self.store.fork_workflow(workflow_id, new_id, start_step)
        self.publish_existing(new_id)
        return WorkflowHandle(self.runtime, new_id)

    def fail_unknown_workflow(self, workflow_id: str, name: str, step_id: int | None) -> None:
        """Called when a worker receives a durable message for a task it does not have:
        the workflow it names ends ERROR, unless that is recorded under another name."""
        record = self.store.get_workflow(workflow_id)
        if record is None:
            return
        if record.kind == WorkflowKind.CHAIN:
            step = self.store.get_step(workflow_id, step_id or 0)
            if step is None or step.name != name:
                return
        elif record.name != name:
            return
        error = self.runtime.serializer.dumps_exception(UnknownWorkflowError(name))
        self.store.set_status(
            workflow_id, WorkflowState.ERROR, only_from=list(ACTIVE_STATUSES), error=error
        )

    # worker executor -----------------------------------------------------
    def attach_worker_executor(self) -> str:
        """Give this worker (and its forked pool processes) one executor id."""
        if self.worker_executor_id is None:
            self.worker_executor_id = self.runtime.new_executor_id()
            self.runtime.register_executor(self.worker_executor_id)
            self.runtime.set_executor(self.worker_executor_id, inherited=True)
        return self.worker_executor_id

    def start_worker_heartbeat(self) -> None:
        """Beat for this worker's executor from its main process until it shuts down."""
        executor_id = self.attach_worker_executor()
        self.runtime.register_executor(executor_id)  # RUNNING again, if it was stopped
        if self._worker_heartbeat is None or not self._worker_heartbeat.running:
            self._worker_heartbeat = self.runtime.start_heartbeat(executor_id)

    def stop_worker_executor(self) -> None:
        """After the pool drained: stop beating and mark the executor gone, so whatever it
        still owns is recovered by the next sweep (not after the executor timeout)."""
        heartbeat, self._worker_heartbeat = self._worker_heartbeat, None
        if heartbeat is not None:
            heartbeat.stop()
        if self.worker_executor_id is not None:
            self.runtime.store.stop_executor(self.worker_executor_id)

    def close(self) -> None:
        """Stop the heartbeats and close the database connections of this process."""
        heartbeat, self._worker_heartbeat = self._worker_heartbeat, None
        if heartbeat is not None:
            heartbeat.stop()
        if self._runtime is not None:
            self._runtime.close()
