"""``Durable(app)``: the one object a Celery app adds to make its tasks durable."""

from __future__ import annotations

import inspect
import os
import threading
import weakref
from collections.abc import Callable, Sequence
from typing import Any

from celery import Celery
from celery import chain as celery_chain
from celery import chord as celery_chord
from celery import group as celery_group

from ..annotations import VALIDATE_MARK
from ..errors import NonExistentWorkflow
from ..flowtypes import QueueSpec
from ..policy import RetryPolicy
from ..runtime import children, management
from ..runtime.context import current_workflow, sql_session, step_status
from ..runtime.executor import Heartbeat
from ..runtime.handle import WorkflowHandle
from ..runtime.logs import make_logger
from ..runtime.recovery import RecoveryReport
from ..runtime.runtime import Runtime, RuntimeSettings
from ..runtime.steps import durable_sleep
from ..serialization import Serializer
from ..store import Store, normalize_url
from ..store.engine import with_retries
from ..store.interface import DurableStore
from ..types import ResumeOutcome, StepInfo, StepStatus, WorkflowKind, WorkflowStatus
from .canvas import DurableCanvas
from .chains import DurableChain
from .codec import KOMBU_JSON
from .flow import FlowControl
from .messages import DurableMessages
from .operations import DurableOperations, workflow_filter
from .options import DBOS_OPTIONS, POLICY_OPTIONS, celery_options, retry_policy
from .plain_chords import PendingChords
from .plain_groups import PendingGroups
from .publisher import Republisher
from .queues import durable_queues, install_queues, take_start_options
from .recovery import connect_recovery_signals, install_sweep, run_sweep
from .results import DurableResults
from .retention import install_gc
from .settings import DurableSettings, read_settings
from .signals import SignalEvents
from .tasks import DurableTask
from .worker import DurableHeartbeat, connect_signals

_TASK_OPTION_DEFAULTS = {"shared": False}
WORKFLOW_OPTIONS = ("name", "max_recovery_attempts", "validate_args")
STEP_OPTIONS = ("name", "validate_args", "policy", *POLICY_OPTIONS, *DBOS_OPTIONS)
TRANSACTION_OPTIONS = ("name", "isolation_level", *STEP_OPTIONS[1:])


class Durable(DurableOperations, FlowControl, DurableMessages):
    """Binds celery-durable to a Celery app: decorators, handles, management.

    The store is the ``durable_database_url`` database, or ``store`` when given (any
    ``DurableStore``, e.g. ``MemoryStore`` in tests).
    """

    def __init__(
        self,
        app: Celery,
        database_url: str | None = None,
        *,
        store: DurableStore | None = None,
        **settings: Any,
    ) -> None:
        self.app = app
        self.overrides: dict[str, Any] = {"database_url": database_url, **settings}
        self._given_store = store
        self._settings: DurableSettings | None = None
        self._runtime: Runtime | None = None
        self._republisher: Republisher | None = None
        self._migrated = store is not None
        self._lock = threading.Lock()  # held only while objects are built: no I/O under it
        self._migrate_lock = threading.Lock()
        self.worker_executor_id: str | None = None
        self._worker_heartbeat: Heartbeat | None = None
        # receives every durable message instead of the broker when set (testing kit)
        self.dispatcher: Callable[[str, Any, Any, dict[str, Any]], Any] | None = None
        self.logger = make_logger()
        app.durable = self
        app._backend = DurableResults(self)  # durable results from the store (results.py)
        self.pending_chords = PendingChords(self)  # plain chords of durable steps
        self.pending_groups = PendingGroups(self)  # plain groups of durable steps
        app.steps["worker"].add(DurableHeartbeat)
        connect_signals()
        connect_recovery_signals()
        install_sweep(self)
        install_gc(self)
        install_queues(self)
        _after_fork_in_child(self)

    # configuration ------------------------------------------------------
    @property
    def settings(self) -> DurableSettings:
        if self._settings is None:
            self._settings = read_settings(self.app.conf, self.overrides)
        return self._settings

    @property
    def runtime(self) -> Runtime:
        """Built on first use, so the app's configuration is complete by then; the schema
        is migrated then too (``durable_auto_migrate``), outside any lock."""
        runtime = self._runtime
        if runtime is None:
            with self._lock:
                if self._runtime is None:
                    self._runtime = self._build_runtime()
                runtime = self._runtime
        if not self._migrated and self.settings.auto_migrate:
            s = self.settings
            # one migration per process at a time (SQLite would lock against itself); a
            # child forked meanwhile gets fresh locks (_after_fork_in_child)
            with self._migrate_lock:
                if not self._migrated:
                    with_retries(
                        runtime.store.migrate, timeout=s.db_retry_timeout, what="migration"
                    )
                    self._migrated = True
        return runtime

    def _build_runtime(self) -> Runtime:
        s = self.settings
        store = self._given_store or Store(
            normalize_url(s.database_url), retry_timeout=s.db_retry_timeout, pool_size=s.pool_size
        )
        runtime = Runtime(
            store,
            Serializer(KOMBU_JSON, s.serializer),
            RuntimeSettings(
                executor_timeout=s.executor_timeout,
                heartbeat_interval=s.heartbeat_interval,
                max_inline_retry_wait=s.max_inline_retry_wait,
                poll_interval=s.result_poll_interval,
                default_max_recovery_attempts=s.default_max_recovery_attempts,
                enqueue_timeout=s.enqueue_timeout,
            ),
            SignalEvents(self),
        )
        runtime.publish = lambda record: self.republish(record)
        return runtime

    def rebind(
        self, store: DurableStore | None, overrides: dict[str, Any] | None = None
    ) -> tuple[DurableStore | None, dict[str, Any]]:
        """From now on use ``store`` (None: the configured database) and these setting
        ``overrides`` (None: as they are); the runtime is built anew on next use. Returns
        the store and overrides replaced, to rebind them back (``celery_durable.testing``)."""
        with self._lock:
            previous = (self._given_store, dict(self.overrides))
            if overrides is not None:
                self.overrides = dict(overrides)
            self._settings = None
            self._given_store = store
            self._runtime = None
            self._republisher = None
            self._migrated = store is not None
        return previous

    @property
    def republish(self) -> Republisher:
        """Sends a recorded workflow's message again (recovery, resume, fork, a waking
        parent)."""
        if self._republisher is None:
            self._republisher = Republisher(self.app, self.runtime, self.send_task)
        return self._republisher

    def send_task(self, name: str, args: Any = None, kwargs: Any = None, **options: Any) -> Any:
        """``app.send_task``, or the ``dispatcher`` when one is set (see tasks.send)."""
        if self.dispatcher is not None:
            return self.dispatcher(name, args, kwargs, options)
        return self.app.send_task(name, args, kwargs, **options)

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
        if inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn):
            raise TypeError(
                f"{fn.__qualname__} is an async function: durable workflows and steps are "
                "plain functions (run async code with asyncio.run inside a step)"
            )
        validate = options.pop("validate_args", False) or getattr(fn, VALIDATE_MARK, False)
        opts = {**_TASK_OPTION_DEFAULTS, **options, **attrs, "durable_validate_args": validate}
        return self.app.task(base=DurableTask, durable=self, **opts)(fn)

    def workflow(
        self,
        name: str | None = None,
        max_recovery_attempts: int | None = -1,
        *,
        validate_args: bool = False,
        **task_options: Any,
    ) -> Callable[[Callable[..., Any]], Any]:
        """Make ``fn`` a durable workflow (and a Celery task). ``validate_args`` checks and
        coerces arguments against its type hints in the caller (pydantic)."""
        # -1 (the default) means "the durable_default_max_recovery_attempts setting"
        limit = max_recovery_attempts
        if limit is not None and limit < -1:
            raise ValueError("max_recovery_attempts must be >= 0 or None")
        celery = celery_options("workflow", task_options, WORKFLOW_OPTIONS)

        def decorate(fn: Callable[..., Any]) -> Any:
            attrs = {"durable_kind": WorkflowKind.WORKFLOW, "durable_max_recovery_attempts": limit}
            options = {"validate_args": validate_args, **celery}
            return self._task(fn, attrs, {"name": name, **options} if name else options)

        return decorate

    def step(
        self,
        retries: int | None = None,
        interval_seconds: float | None = None,
        backoff_rate: float | None = None,
        max_interval_seconds: float | None = None,
        jitter: float | None = None,
        dont_retry_on: Sequence[type[BaseException]] | type[BaseException] | None = None,
        should_retry: Callable[[BaseException], bool] | None = None,
        *,
        policy: RetryPolicy | None = None,
        retries_allowed: bool | None = None,
        max_attempts: int | None = None,
        name: str | None = None,
        validate_args: bool = False,
        **task_options: Any,
    ) -> Callable[[Callable[..., Any]], Any]:
        """Make ``fn`` a checkpointed step with a DBOS-style retry policy (and a Celery task).

        The policy: ``retries`` (and the other DBOS-style options), or ``policy=``, or DBOS's
        ``retries_allowed``/``max_attempts`` (``max_attempts == retries + 1``).
        """
        given = {
            "retries": retries,
            "interval_seconds": interval_seconds,
            "backoff_rate": backoff_rate,
            "max_interval_seconds": max_interval_seconds,
            "jitter": jitter,
            "dont_retry_on": dont_retry_on,
            "should_retry": should_retry,
        }
        chosen = retry_policy("step", policy, given, retries_allowed, max_attempts)
        celery = celery_options("step", task_options, STEP_OPTIONS)

        def decorate(fn: Callable[..., Any]) -> Any:
            attrs = {"durable_kind": WorkflowKind.STEP, "durable_policy": chosen}
            options = {"validate_args": validate_args, **celery}
            return self._task(fn, attrs, {"name": name, **options} if name else options)

        return decorate

    def transaction(
        self,
        isolation_level: str | None = None,
        name: str | None = None,
        *,
        validate_args: bool = False,
        policy: RetryPolicy | None = None,
        retries_allowed: bool | None = None,
        max_attempts: int | None = None,
        **options: Any,
    ) -> Callable[[Callable[..., Any]], Any]:
        """A step run in one database transaction with its checkpoint: ``durable.sql_session``.
        It takes a step's retry options too; a failed attempt is rolled back."""
        allowed = {None, "SERIALIZABLE", "REPEATABLE READ", "READ COMMITTED", "READ UNCOMMITTED"}
        if isolation_level not in allowed:
            raise ValueError(f"isolation_level must be one of {sorted(a for a in allowed if a)}")
        given = {k: options.pop(k) for k in POLICY_OPTIONS if k in options}
        chosen = retry_policy("transaction", policy, given, retries_allowed, max_attempts)
        celery = celery_options("transaction", options, TRANSACTION_OPTIONS)

        def decorate(fn: Callable[..., Any]) -> Any:
            attrs = {
                "durable_kind": WorkflowKind.TRANSACTION,
                "durable_isolation_level": isolation_level,
                "durable_policy": chosen,
            }
            task_options = {"validate_args": validate_args, **celery}
            return self._task(fn, attrs, {"name": name, **task_options} if name else task_options)

        return decorate

    def chain(self, *signatures: Any) -> DurableChain | DurableCanvas:
        """A durable chain of step signatures: ``durable.chain(a.s(1), b.s()).start()``; with
        a group or chord among them, a durable canvas."""
        if any(getattr(s, "subtask_type", None) for s in signatures):
            return DurableCanvas(self, celery_chain(*signatures))
        return DurableChain(self, signatures)

    def group(self, *signatures: Any) -> DurableCanvas:
        """A durable group of step signatures: ``durable.group(a.s(1), a.s(2)).start()``."""
        return DurableCanvas(self, celery_group(*signatures))

    def chord(self, header: Any, body: Any) -> DurableCanvas:
        """A durable chord: ``durable.chord([a.s(i) for i in range(9)], total.s()).start()``;
        the callback is published once, when the last member's checkpoint commits."""
        return DurableCanvas(self, celery_chord(header, body))

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
        """Record and publish ``fn`` (a durable task) for a worker; returns its handle.
        ``queue``, ``priority``, ``deduplication_id``, ``delay_seconds`` and
        ``timeout_seconds`` are options of the start, not arguments of ``fn``."""
        if not isinstance(getattr(fn, "durable_kind", None), WorkflowKind):
            raise TypeError(f"{fn!r} is not a durable workflow, step or transaction")
        options = take_start_options(kwargs)  # queue=, priority=, ... (integration/queues.py)
        result = fn.apply_async(args, kwargs, **options)
        return WorkflowHandle(self.runtime, result.id, fn.durable_annotations)

    def gather(self, handles: Sequence[WorkflowHandle], timeout: float | None = None) -> Any:
        """The results of several workflows, in order, once all have ended; the first error
        in order is raised. Inside a workflow it is one recorded step, and a parent on a
        worker waits for all its children with one suspension (``timeout`` unused there)."""
        return children.gather(self.runtime, [h.workflow_id for h in handles], timeout)

    def retrieve_workflow(self, workflow_id: str) -> WorkflowHandle:
        """A handle by workflow id, or by the task id of any link of a durable chain
        (``chain(...).apply_async().id`` is the last link's)."""
        handle = management.retrieve(self.runtime, workflow_id)
        record = self.store.get_workflow(handle.workflow_id)
        task = self.app.tasks.get(record.name) if record is not None else None
        codec = getattr(task, "durable_annotations", None)  # a workflow this app knows
        return WorkflowHandle(self.runtime, handle.workflow_id, codec)

    def get_workflow_status(self, workflow_id: str) -> WorkflowStatus | None:
        return management.get_status(self.runtime, workflow_id)

    def list_workflows(
        self,
        status: str | Sequence[str] | None = None,
        name: str | None = None,
        limit: int | None = 100,
        offset: int = 0,
        newest_first: bool = True,
        workflow_ids: Sequence[str] | None = None,
        parent_workflow_id: str | None = None,
        **filters: Any,
    ) -> list[WorkflowStatus]:
        """Workflows by creation time. ``filters``: ``queue``, ``created_after``,
        ``created_before`` (datetimes, or epoch seconds), ``id_prefix``, ``executor_id``."""
        return management.list_workflows(
            self.runtime,
            status=status,
            name=name,
            limit=limit,
            offset=offset,
            newest_first=newest_first,
            workflow_ids=workflow_ids,
            parent_workflow_id=parent_workflow_id,
            where=workflow_filter(**filters) if filters else None,
        )

    def list_workflow_steps(self, workflow_id: str) -> list[StepInfo]:
        return management.list_steps(self.runtime, workflow_id)

    # management ----------------------------------------------------------
    def resume_workflow(self, workflow_id: str, queue: str | None = None) -> WorkflowHandle:
        """Re-enqueue an unfinished workflow from its first incomplete step.

        Counts one recovery attempt; a cancelled or dead-lettered workflow starts its count
        anew. A finished workflow, or one a live worker still runs, is left as it is
        (``resume`` says which). ``queue`` sends a code workflow to another queue.
        """
        self.resume(workflow_id, queue)
        return WorkflowHandle(self.runtime, workflow_id)

    def resume(self, workflow_id: str, queue: str | None = None) -> ResumeOutcome:
        """``resume_workflow``, returning RESUMED, RUNNING (a live executor runs it: left
        alone) or FINISHED."""
        return management.resume(
            self.runtime, workflow_id, self.republish, queue, durable_queue=self._queue_lookup()
        )

    def _queue_lookup(self) -> Callable[[str], QueueSpec | None] | None:
        """A declared durable queue's spec by name; None when none is declared (a resume or
        fork then reads nothing more to decide)."""
        known = durable_queues(self)
        if not known:
            return None
        return lambda name: known[name].spec if name in known else None

    def cancel_workflow(self, workflow_id: str) -> None:
        """End an unfinished workflow as CANCELLED; it starts no further step once noticed
        (a step body already running finishes, but its output is not recorded)."""
        management.cancel(self.runtime, workflow_id)

    def fork_workflow(
        self,
        workflow_id: str,
        start_step: int = 0,
        *,
        timeout_seconds: float | None = None,
        queue: str | None = None,
    ) -> WorkflowHandle:
        """Start a copy of a workflow under a new id that reuses the outputs of its first
        ``start_step`` steps and runs the rest again, with its own timeout (counted from
        now) and queue (default: the source's; a code workflow's)."""
        new_id = management.fork(
            self.runtime,
            workflow_id,
            start_step,
            self.republish,
            timeout_seconds=timeout_seconds,
            queue=queue,
            durable_queue=self._queue_lookup(),
        )
        return WorkflowHandle(self.runtime, new_id)

    def recover(self) -> RecoveryReport:
        """One recovery sweep now (beat runs ``celery_durable.recover`` on a schedule)."""
        return run_sweep(self)

    def publish_existing(self, workflow_id: str, countdown: float | None = None) -> None:
        """Publish a recorded workflow's message again (a duplicate is harmless: claims)."""
        record = self.store.get_workflow(workflow_id)
        if record is None:
            raise NonExistentWorkflow(workflow_id)
        self.republish(record, countdown)

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


def _after_fork_in_child(durable: Durable) -> None:
    """A child forked while another thread held a lock (a migration retrying while the
    database is down) must not inherit it held."""
    ref = weakref.ref(durable)

    def reset() -> None:
        alive = ref()
        if alive is not None:
            alive._lock = threading.Lock()
            alive._migrate_lock = threading.Lock()

    os.register_at_fork(after_in_child=reset)
