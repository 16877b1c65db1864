"""The throwaway Postgres and Redis servers of a chaos run, on free ports of their own.

The run restarts and disrupts these servers, so it never touches the machine's shared
ones. Both run as bench.common Groups (their own process group, killed at exit, on
SIGTERM and Ctrl-C too). Postgres runs as the ``postgres`` user (initdb refuses root)
through ``setpriv``, which execs, so the group leader is the postmaster itself and a
signal to it is a signal to the server: SIGINT is a fast shutdown, SIGQUIT an immediate
one (a crash: asynchronously committed transactions may be lost, as the store allows).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
import redis

from bench.common import Group

PG_BIN = Path(os.environ.get("CHAOS_PG_BIN", "/usr/lib/postgresql/15/bin"))
AS_POSTGRES = ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups"]
DATABASE = "chaos"


def free_port(start: int) -> int:
    """The first port from ``start`` on that nothing listens on (127.0.0.1)."""
    for port in range(start, start + 2000):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port from {start}")


def wait_until(ready: Callable[[], object], what: str, timeout: float = 30.0) -> None:
    """Call ``ready()`` until it returns without raising, for up to ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            ready()
            return
        except Exception as exc:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} not ready in {timeout:.0f} s: {exc}") from exc
            time.sleep(0.05)


class Postgres:
    """A Postgres cluster in ``folder`` (initdb'd on creation), with database ``chaos``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        shutil.chown(folder, "postgres", "postgres")
        self.data = folder / "data"
        self.log = folder / "postgres.log"
        self.port = free_port(55432)
        self.group: Group | None = None
        subprocess.run(
            [*AS_POSTGRES, str(PG_BIN / "initdb"), "-D", str(self.data), "-A", "trust",
             "-U", "postgres", "--no-sync", "-E", "UTF8"],
            check=True, capture_output=True, cwd=folder,
        )  # fmt: skip

    def dsn(self, dbname: str = DATABASE) -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname={dbname}"

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the run's database."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{DATABASE}"

    def start(self) -> None:
        # fsync off: the faults are process crashes, never an OS crash, so nothing it
        # protects against happens here, and it spares the two cores the flushes
        cmd = [
            *AS_POSTGRES, str(PG_BIN / "postgres"), "-D", str(self.data), "-p", str(self.port),
            "-k", str(self.folder), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off",
            "-c", "max_connections=300", "-c", "log_min_messages=warning",
        ]  # fmt: skip
        self.group = Group(cmd, dict(os.environ), self.log)
        wait_until(lambda: psycopg.connect(self.dsn("postgres"), connect_timeout=2).close(), "pg")

    def create_database(self) -> None:
        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{DATABASE}"')

    def stop(self, sig: int = signal.SIGINT, timeout: float = 30.0) -> None:
        """Shut down (SIGINT: fast, SIGQUIT: immediate), then take the group's leftovers."""
        group, self.group = self.group, None
        if group is None:
            return
        with contextlib.suppress(ProcessLookupError):
            group.proc.send_signal(sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            group.proc.wait(timeout=timeout)
        group.kill()

    def restart(self) -> None:
        """An immediate shutdown (a crash of the server) and a start on the same data."""
        self.stop(signal.SIGQUIT)
        self.start()

    def terminate_backends(self) -> int:
        """``pg_terminate_backend`` of every client backend but this connection's."""
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
            ).fetchone()
        return int(row[0]) if row else 0


class Redis:
    """A redis-server without persistence: a restart starts it empty, as after a crash."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.log = folder / "redis.log"
        self.port = free_port(56379)
        self.group: Group | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        cmd = [
            "redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--dir", str(self.folder),
        ]  # fmt: skip
        self.group = Group(cmd, dict(os.environ), self.log)
        wait_until(lambda: redis.Redis(port=self.port, socket_timeout=1).ping(), "redis")

    def stop(self) -> None:
        group, self.group = self.group, None
        if group is not None:
            group.stop(timeout=10)

    def restart(self) -> None:
        self.stop()
        self.start()
