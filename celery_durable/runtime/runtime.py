"""The runtime's shared state: store, serializer, settings and this process's executor."""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass

from ..serialization import Serializer
from ..store.interface import DurableStore
from ..types import ExecutorRecord, ExecutorState, WorkflowRecord
from .events import Events
from .executor import Heartbeat, new_executor_id

log = logging.getLogger("celery_durable")


@dataclass(frozen=True)
class RuntimeSettings:
    """Values the runtime needs, already validated by the integration layer."""

    executor_timeout: float = 15.0
    heartbeat_interval: float = 2.0
    max_inline_retry_wait: float = 5.0
    poll_interval: float = 0.5
    default_max_recovery_attempts: int | None = 100
    enqueue_timeout: float = 30.0


class Runtime:
    """Everything a workflow or step execution needs, shared by one Durable object."""

    def __init__(
        self,
        store: DurableStore,
        serializer: Serializer,
        settings: RuntimeSettings,
        events: Events | None = None,
    ) -> None:
        self.store = store
        self.events = events or Events()
        # sends a recorded workflow's message (integration's, set once it is built): the
        # runtime publishes when a child's end wakes its parent
        self.publish: Callable[[WorkflowRecord], None] | None = None
        self.clock = store.clock  # one clock for what is stored and for every wait
        self.serializer = serializer
        self.settings = settings
        self._executor_id: str | None = None
        self._executor_pid: int | None = None
        self._inherited = False
        self._heartbeat: Heartbeat | None = None
        self._lock = threading.Lock()

    # executors ----------------------------------------------------------
    @property
    def stale_before_ms(self) -> int:
        """Heartbeats older than this mean the executor is gone."""
        return self.clock.now_ms() - int(self.settings.executor_timeout * 1000)

    def set_executor(self, executor_id: str, *, inherited: bool = False) -> None:
        """Adopt an executor id; ``inherited`` ones (a worker's) hold in forked children too."""
        self._executor_id = executor_id
        self._executor_pid = os.getpid()
        self._inherited = inherited

    def new_executor_id(self) -> str:
        return new_executor_id()

    def register_executor(self, executor_id: str) -> None:
        now = self.clock.now_ms()
        self.store.register_executor(
            ExecutorRecord(
                executor_id=executor_id,
                hostname=socket.gethostname(),
                pid=os.getpid(),
                started_at_ms=now,
                last_heartbeat_ms=now,
                status=ExecutorState.RUNNING,
            )
        )

    def _own_executor(self) -> str | None:
        if self._executor_id is not None and (self._inherited or self._executor_pid == os.getpid()):
            return self._executor_id
        return None

    def executor_id(self) -> str:
        """This process's executor; a non-worker process gets one with a heartbeat thread."""
        current = self._own_executor()
        if current is not None:
            return current
        # registered outside the lock: the insert may retry for a while (database down),
        # and a lock held then would also be held by a child forked meanwhile
        executor_id = self.new_executor_id()
        self.register_executor(executor_id)
        with self._lock:
            current = self._own_executor()
            if current is not None:  # another thread won: its executor serves both
                return current
            self.set_executor(executor_id)
            self._heartbeat = self.start_heartbeat(executor_id)
            return executor_id

    def start_heartbeat(self, executor_id: str) -> Heartbeat:
        """Beat for ``executor_id`` from a thread of this process until ``stop()``."""
        return Heartbeat(
            lambda: self.store.heartbeat(executor_id),
            self.settings.heartbeat_interval,
            name=f"durable-heartbeat-{executor_id[-12:]}",
        ).start()

    def close(self) -> None:
        """Stop this process's heartbeat and close its database connections."""
        with self._lock:
            heartbeat, self._heartbeat = self._heartbeat, None
            self._executor_id = None
        if heartbeat is not None:
            heartbeat.stop()
        self.store.dispose()
