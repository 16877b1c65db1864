"""The runtime's shared state: store, serializer, settings and this process's executor."""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from dataclasses import dataclass

from ..serialization import Serializer
from ..store import Store
from ..types import ExecutorRecord, now_ms

log = logging.getLogger("celery_durable")


@dataclass(frozen=True)
class RuntimeSettings:
    """Values the runtime needs, already validated by the integration layer."""

    executor_timeout: float = 15.0
    heartbeat_interval: float = 2.0
    max_inline_retry_wait: float = 5.0
    poll_interval: float = 0.05
    default_max_recovery_attempts: int | None = 100


class Runtime:
    """Everything a workflow or step execution needs, shared by one Durable object."""

    def __init__(self, store: Store, serializer: Serializer, settings: RuntimeSettings) -> None:
        self.store = store
        self.serializer = serializer
        self.settings = settings
        self._executor_id: str | None = None
        self._executor_pid: int | None = None
        self._inherited = False
        self._heartbeat_thread: threading.Thread | None = None
        self._lock = threading.Lock()

    # executors ----------------------------------------------------------
    @property
    def stale_before_ms(self) -> int:
        """Heartbeats older than this mean the executor is gone."""
        return now_ms() - int(self.settings.executor_timeout * 1000)

    def set_executor(self, executor_id: str, *, inherited: bool = False) -> None:
        """Adopt an executor id; ``inherited`` ones (a worker's) hold in forked children too."""
        self._executor_id = executor_id
        self._executor_pid = os.getpid()
        self._inherited = inherited

    def new_executor_id(self) -> str:
        return f"{socket.gethostname()[:40]}-{os.getpid()}-{uuid.uuid4().hex[:12]}"

    def register_executor(self, executor_id: str) -> None:
        now = now_ms()
        self.store.register_executor(
            ExecutorRecord(
                executor_id=executor_id,
                hostname=socket.gethostname(),
                pid=os.getpid(),
                started_at_ms=now,
                last_heartbeat_ms=now,
                status="RUNNING",
            )
        )

    def executor_id(self) -> str:
        """This process's executor; a non-worker process gets one with a heartbeat thread."""
        if self._executor_id is not None and (self._inherited or self._executor_pid == os.getpid()):
            return self._executor_id
        with self._lock:
            if self._executor_id is None or not (
                self._inherited or self._executor_pid == os.getpid()
            ):
                executor_id = self.new_executor_id()
                self.register_executor(executor_id)
                self.set_executor(executor_id)
                self._start_heartbeat_thread(executor_id)
            assert self._executor_id is not None
            return self._executor_id

    def _start_heartbeat_thread(self, executor_id: str) -> None:
        interval = self.settings.heartbeat_interval

        def beat() -> None:
            while self._executor_id == executor_id and self._executor_pid == os.getpid():
                threading.Event().wait(interval)
                try:
                    self.store.heartbeat(executor_id)
                except Exception as exc:  # keep beating; the store logs and retries
                    log.warning("durable heartbeat failed: %s", exc)

        thread = threading.Thread(target=beat, name="durable-heartbeat", daemon=True)
        thread.start()
        self._heartbeat_thread = thread
