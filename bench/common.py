"""Shared pieces of the benchmark scripts: databases, subprocess groups, queues, output."""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parent.parent
ADMIN_URL = os.environ.get(
    "BENCH_PG_ADMIN", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


def recreate_database(name: str) -> str:
    """Drop and create database ``name``; returns its SQLAlchemy URL."""
    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return ADMIN_URL.rsplit("/", 1)[0] + "/" + name


def drop_database(name: str) -> None:
    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM if the bench process dies (Linux only)."""
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Group:
    """A subprocess in its own process group (session), killed as a whole on every exit."""

    running: list[Group] = []

    def __init__(self, cmd: Sequence[str], env: dict[str, str], log: Path) -> None:
        self.cmd = list(cmd)
        self.log = log
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
            )  # fmt: skip
        Group.running.append(self)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_for_log(self, needle: str, timeout: float = 60.0) -> None:
        """Wait until ``needle`` shows in the log (e.g. a worker's "ready.")."""
        deadline = time.monotonic() + timeout
        while needle not in self.log.read_text(errors="replace"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{self.cmd[3:5]} did not start:\n{self.log.read_text()}")
            time.sleep(0.05)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the whole group (the worker and its pool children) and reap the leader."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)
        self.proc.wait()
        self._forget()

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM (warm shutdown), then SIGKILL the group if it lingers."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=timeout)
        self.kill()  # also takes any pool child left behind

    def _forget(self) -> None:
        if self in Group.running:
            Group.running.remove(self)

    @classmethod
    def kill_all(cls) -> None:
        for group in list(cls.running):
            group.kill()


def install_cleanup() -> None:
    """Kill every started group at exit, on SIGTERM/SIGHUP too (Ctrl-C unwinds normally)."""
    atexit.register(Group.kill_all)

    def on_signal(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)


def worker_cmd(module: str, queues: str, concurrency: int = 2, loglevel: str = "info") -> list[str]:
    return [
        sys.executable, "-m", "celery", "-A", module, "worker", "-P", "prefork",
        "-c", str(concurrency), "-l", loglevel, "-Q", queues,
        "--without-mingle", "--without-gossip", "--without-heartbeat",
    ]  # fmt: skip


def purge_queue(app: Any, queue: str) -> int:
    """Drop the messages waiting in ``queue``; returns how many there were."""
    with app.connection_for_write() as conn:
        try:
            return int(conn.default_channel.queue_purge(queue) or 0)
        except Exception:  # never declared: nothing to purge
            return 0


def forget_queue(app: Any, queue: str) -> None:
    """Leave no trace of a bench queue on Redis: its lists, bindings and unacked messages
    (a SIGKILLed worker leaves its prefetched messages in ``unacked``)."""
    with app.connection_for_write() as conn:
        channel = conn.default_channel
        client = getattr(channel, "client", None)
        if client is None:  # not Redis
            with contextlib.suppress(Exception):
                channel.queue_delete(queue)
            return
        keys = [
            k
            for k in client.scan_iter(match=f"{queue}*")
            if k.decode() == queue or k.decode().startswith(queue + "\x06\x16")
        ]  # the priority lists
        keys += [f"_kombu.binding.{queue}", f"_kombu.binding_permanent.{queue}"]
        client.delete(*keys)
        for tag, raw in client.hscan_iter("unacked"):
            try:
                routing_key = json.loads(raw)[2]
            except (ValueError, IndexError, TypeError):
                continue
            if routing_key == queue:
                client.hdel("unacked", tag)
                client.zrem("unacked_index", tag)


def print_table(title: str, rows: list[tuple[str, str]]) -> None:
    """A two-column table of figure name and formatted value."""
    width = max(len(k) for k, _ in rows)
    print(f"\n{title}")
    print("-" * (width + 16))
    for key, value in rows:
        print(f"{key:<{width}}  {value:>12}")


def bench_line(record: dict[str, Any]) -> None:
    clean = {k: round(v, 4) if isinstance(v, float) else v for k, v in record.items()}
    print("BENCH " + json.dumps(clean), flush=True)
