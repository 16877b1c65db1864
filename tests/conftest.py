"""Fixtures: a fresh Postgres database per session, SQLite files, real `celery worker` processes.

The session's database, broker queue and flag folder are put in the environment before
the test apps are imported, so the in-process client and every worker subprocess agree.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import create_engine, text

from celery_durable import Durable
from celery_durable.types import ResumeOutcome

if TYPE_CHECKING:
    from tests.recovery.helpers import BeatProcess

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN_URL = os.environ.get(
    "DURABLE_TEST_PG_ADMIN", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
SESSION = uuid.uuid4().hex[:10]
PG_DB = f"durable_test_{SESSION}"


def _pg_url(db: str) -> str:
    return PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + db


def pytest_configure(config: pytest.Config) -> None:
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{PG_DB}"'))
    admin.dispose()
    flags = Path(tempfile.mkdtemp(prefix="durable-flags-"))
    os.environ.update(
        {
            "DURABLE_TEST_DB_URL": _pg_url(PG_DB),
            "DURABLE_TEST_QUEUE": f"durable-test-{SESSION}",
            "DURABLE_TEST_FLAGS": str(flags),
        }
    )


def pytest_unconfigure(config: pytest.Config) -> None:
    # Durables made in this process keep beating from daemon threads; under xdist the
    # process lives on (idle) until the other one finishes, and their failed beats against
    # the dropped database would fill the report.
    logging.getLogger("celery_durable").setLevel(logging.ERROR)
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{PG_DB}" WITH (FORCE)'))
    finally:
        admin.dispose()


@pytest.fixture(scope="session")
def pg_url() -> str:
    return os.environ["DURABLE_TEST_DB_URL"]


@pytest.fixture
def flags() -> Path:
    """The folder where a test leaves one-shot crash flags for the workers."""
    path = Path(os.environ["DURABLE_TEST_FLAGS"])
    for old in path.iterdir():
        old.unlink()
    return path


@pytest.fixture(params=["postgres", "sqlite"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Both backends: the session's Postgres database, or a fresh SQLite file."""
    if request.param == "postgres":
        return os.environ["DURABLE_TEST_DB_URL"]
    return f"sqlite:///{tmp_path / 'durable.sqlite3'}"


class WorkerProcess:
    """A real `celery worker` in its own process group, so a test can SIGKILL all of it."""

    def __init__(
        self,
        app: str,
        log_dir: Path,
        *,
        name: str | None = None,
        queues: str | None = None,
        concurrency: int = 2,
        pool: str = "prefork",
        env: dict[str, str] | None = None,
        options: tuple[str, ...] = (),
    ) -> None:
        self.app = app
        self.options = options
        self.name = name or f"w{uuid.uuid4().hex[:6]}"
        self.queues = queues or os.environ["DURABLE_TEST_QUEUE"]
        self.concurrency = concurrency
        self.pool = pool
        self.env = {**os.environ, **(env or {})}
        self.log_path = log_dir / f"{self.name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> WorkerProcess:
        cmd = [
            sys.executable, "-m", "celery", "-A", self.app, "worker",
            "-l", "info", "-P", self.pool, "-c", str(self.concurrency),
            "-n", f"{self.name}@%h", "-Q", self.queues,
            "--without-mingle", "--without-gossip", "--without-heartbeat", *self.options,
        ]  # fmt: skip
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited at start:\n{self.log()}")
            if " ready." in self.log():
                return self
            time.sleep(0.1)
        raise TimeoutError(f"worker not ready in {timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL the whole process group (main process and pool children)."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def terminate(self) -> None:
        """Start a warm shutdown (SIGTERM) without waiting for it."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 20.0) -> None:
        """Warm shutdown (SIGTERM), then SIGKILL if it lingers."""
        if self.proc is None or self.proc.poll() is not None:
            self.kill()
            return
        self.proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=timeout)
        self.kill()

    def wait_exit(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        code = self.proc.wait(timeout=timeout)
        self.kill()  # pool children left behind by a killed main process
        return code


@pytest.fixture
def worker(tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """Factory: ``worker("tests.apps.shop", concurrency=1)`` starts one and waits for ready."""
    started: list[WorkerProcess] = []

    def start(app: str, **kwargs: object) -> WorkerProcess:
        proc = WorkerProcess(app, tmp_path, **kwargs)  # type: ignore[arg-type]
        started.append(proc)
        return proc.start()

    yield start
    for proc in started:
        proc.stop(timeout=10)


@pytest.fixture
def beat(tmp_path: Path) -> Iterator[Callable[..., BeatProcess]]:
    """Factory: ``beat()`` starts `celery beat` for the recovery app (or ``beat(app)``);
    killed at teardown."""
    from tests.recovery.helpers import APP, BeatProcess

    started: list[BeatProcess] = []

    def start(app: str = APP) -> BeatProcess:
        proc = BeatProcess(app, tmp_path)
        started.append(proc)
        return proc.start()

    yield start
    for proc in started:
        proc.stop()


def wait_for(predicate: Callable[[], object], timeout: float = 30.0, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise TimeoutError("condition not met in time")


def resume_after_crash(durable: Durable, workflow_id: str, timeout: float = 30.0) -> None:
    """``resume_workflow`` once the killed worker counts as gone (no heartbeat for
    ``durable_executor_timeout``): until then resume leaves its work alone."""
    wait_for(lambda: durable.resume(workflow_id) != ResumeOutcome.RUNNING, timeout, 0.25)
