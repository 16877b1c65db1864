"""Executors: who runs a workflow, and the heartbeat that says it is still alive.

A worker has one executor id, shared by its forked pool processes, beaten from its main
process; any other process (one making direct calls) gets its own on first use. The
heartbeat is a thread, not a timer entry of Celery's event loop: a warm shutdown stops
the event loop while the pool drains, and the beat must go on until the last running
task has finished, or the sweep would hand that task's workflow to a second worker.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable

log = logging.getLogger("celery_durable")


def new_executor_id() -> str:
    return f"{socket.gethostname()[:40]}-{os.getpid()}-{uuid.uuid4().hex[:12]}"


class Heartbeat:
    """Calls ``beat`` every ``interval`` seconds from a daemon thread until ``stop()``.

    ``beat`` makes one attempt (no retry loop): a failed beat is logged and the next tick
    tries again, so the thread never sits in a minute-long retry, holding nothing.
    """

    def __init__(self, beat: Callable[[], None], interval: float, name: str) -> None:
        self._beat = beat
        self._interval = interval
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> Heartbeat:
        self._thread.start()
        return self

    @property
    def running(self) -> bool:
        return self._thread.is_alive() and not self._stopped.is_set()

    def _run(self) -> None:
        while not self._stopped.wait(self._interval):
            try:
                self._beat()
            except Exception as exc:  # the next tick tries again
                log.warning("durable heartbeat failed: %s", exc)

    def stop(self, timeout: float | None = 5.0) -> None:
        """Stop beating; waits (up to ``timeout``) for a beat in progress to end."""
        self._stopped.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)
