"""Helpers of the recovery tests: a `celery beat` process, Redis data loss, signal capture."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import redis
from celery.utils.dispatch import Signal

from tests.conftest import ROOT, wait_for

APP = "tests.apps.recovery_app"
SEP = "\x06\x16"  # kombu's separator in binding members and priority queue names


class BeatProcess:
    """A real `celery beat` in its own process group, its schedule file under ``log_dir``."""

    def __init__(self, app: str, log_dir: Path) -> None:
        self.app = app
        self.log_dir = log_dir
        self.log_path = log_dir / "beat.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> BeatProcess:
        cmd = [
            sys.executable, "-m", "celery", "-A", self.app, "beat", "-l", "info",
            "-s", str(self.log_dir / "beat-schedule"), "--pidfile", str(self.log_dir / "beat.pid"),
        ]  # fmt: skip
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        proc = self.proc

        def started() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"beat exited at start:\n{self.log()}")
            return "beat: Starting..." in self.log()

        try:
            wait_for(started, timeout=timeout)
        except TimeoutError:
            raise TimeoutError(f"beat not started in {timeout}s:\n{self.log()}") from None
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.proc is None:
            return
        with suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)


def session_queue() -> str:
    """The queue of this test session (set by the root conftest at configure)."""
    return os.environ["DURABLE_TEST_QUEUE"]


def sink_queue() -> str:
    """Where in-process sweeps re-publish: no worker consumes it."""
    return f"{session_queue()}-sink"


def broker() -> redis.Redis:
    return redis.Redis.from_url(os.environ.get("DURABLE_TEST_BROKER", "redis://127.0.0.1:6379/0"))


def lose_messages(queue: str, *, bindings: bool = False) -> int:
    """Drop what a Redis restart without persistence takes from ``queue``; return the count.

    The messages waiting in it (every priority list), those workers reserved (the ``unacked``
    hash) and, with ``bindings``, the ``_kombu.binding*`` members that route publishes to it.
    Only this queue's keys are touched: the machine's Redis is shared.
    """
    r = broker()
    lost = 0
    for key in [queue.encode(), *r.scan_iter(match=f"{queue}{SEP}*")]:
        if r.type(key) == b"list":
            lost += int(r.llen(key))
            r.delete(key)
    for tag, raw in r.hscan_iter("unacked"):
        try:
            _message, exchange, routing_key = json.loads(raw)
        except ValueError:  # not a kombu entry: not ours
            continue
        if queue in (exchange, routing_key):
            lost += int(r.hdel("unacked", tag))
            r.zrem("unacked_index", tag)
    if bindings:
        for pattern in ("_kombu.binding.*", "_kombu.binding_permanent.*"):
            for key in r.scan_iter(match=pattern):
                for member in r.smembers(key):
                    if member.decode(errors="replace").split(SEP)[-1] == queue:
                        r.srem(key, member)
    return lost


@contextmanager
def captured(sig: Signal) -> Iterator[list[tuple[str, int]]]:
    """Collect ``(workflow_id, recovery_attempts)`` of every ``sig`` sent in this process."""
    seen: list[tuple[str, int]] = []

    def receive(sender: Any = None, **kwargs: Any) -> None:
        seen.append((kwargs["workflow_id"], kwargs["recovery_attempts"]))

    sig.connect(receive, weak=False)
    try:
        yield seen
    finally:
        sig.disconnect(receive)
