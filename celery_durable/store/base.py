"""Store plumbing: a fork-safe engine, dialect INSERTs and retried reads and writes."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import Connection, Dialect, Engine
from sqlalchemy.dialects import postgresql, sqlite

from ..clock import SYSTEM_CLOCK, Clock
from ..types import StepRecord
from .engine import make_engine, with_retries
from .hot import HotPath, HotResult, HotTransaction
from .statements import STEP_CHECKPOINT
from .tables import step_errors

T = TypeVar("T")


class StoreBase:
    """One database: engine (re-created after fork), retried reads and writes."""

    def __init__(
        self,
        url: str,
        *,
        retry_timeout: float = 60.0,
        pool_size: int = 5,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.url = url
        self.clock = clock
        self.retry_timeout = retry_timeout
        self.pool_size = pool_size
        self._engine: Engine | None = None
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._hot_engine: tuple[int, Engine] | None = None
        postgres = self.dialect == "postgresql"
        self.hot = HotPath(
            self._get_hot_engine,
            dialect=self._initialized_dialect,
            begin_sql="BEGIN" if postgres else "BEGIN IMMEDIATE",
            # a lease lost in a server crash is harmless: the step is simply free again
            async_commit_setup="SET synchronous_commit TO off" if postgres else None,
            max_idle=pool_size,
        )

    # plumbing -----------------------------------------------------------
    @property
    def engine(self) -> Engine:
        if self._engine is None or self._pid != os.getpid():
            with self._lock:
                if self._engine is not None and self._pid != os.getpid():
                    # a forked child must not share its parent's sockets
                    self._engine.dispose(close=False)
                    self._engine = None
                if self._engine is None:
                    self._engine = make_engine(self.url, self.pool_size)
                    self._pid = os.getpid()
        return self._engine

    def _initialized_dialect(self) -> Dialect:
        """The dialect after its first connection, which reads the server's capabilities."""
        engine = self.engine
        if engine.dialect.server_version_info is None:
            with engine.connect():
                pass
        return engine.dialect

    def _get_hot_engine(self) -> Engine:
        """The unpooled autocommit engine that opens the hot path's connections."""
        current = self._hot_engine
        if current is None or current[0] != os.getpid():
            with self._lock:
                current = self._hot_engine
                if current is None or current[0] != os.getpid():
                    current = (os.getpid(), make_engine(self.url, hot=True))
                    self._hot_engine = current
        return current[1]

    @property
    def dialect(self) -> str:
        return "postgresql" if self.url.startswith("postgresql") else "sqlite"

    def dispose(self) -> None:
        self.hot.close()
        if self._engine is not None:
            self._engine.dispose(close=self._pid == os.getpid())
            self._engine = None

    def _insert(self, table: Any) -> Any:
        """The dialect's INSERT, which knows ON CONFLICT."""
        module: Any = postgresql if self.dialect == "postgresql" else sqlite
        return module.insert(table)

    def _write(self, what: str, fn: Callable[[Connection], T]) -> T:
        def attempt() -> T:
            with self.engine.begin() as conn:
                return fn(conn)

        return with_retries(attempt, timeout=self.retry_timeout, what=what)

    def _hot(
        self, what: str, stmt: Any, params: dict[str, Any], *, async_commit: bool = False
    ) -> HotResult:
        """One prebuilt statement on the hot path (autocommit), retried like any write.

        ``async_commit``: the commit need not reach the disk before returning (see hot.py).
        """
        return with_retries(
            lambda: self.hot.execute(stmt, params, async_commit=async_commit),
            timeout=self.retry_timeout,
            what=what,
        )

    def _hot_tx(self, what: str, fn: Callable[[HotTransaction], T]) -> T:
        """Prebuilt statements in one hot-path transaction, run by ``fn(tx)``."""

        def attempt() -> T:
            with self.hot.transaction() as tx:
                return fn(tx)

        return with_retries(attempt, timeout=self.retry_timeout, what=what)

    def _autocommit(self, what: str, fn: Callable[[Connection], T]) -> T:
        """A write that is one statement (or idempotent ones): autocommit, one round trip."""
        return self._read(what, fn)

    def _read(self, what: str, fn: Callable[[Connection], T]) -> T:
        """Autocommit: no BEGIN/ROLLBACK round trips around single statements."""

        def attempt() -> T:
            with self.engine.connect() as conn:
                conn = conn.execution_options(isolation_level="AUTOCOMMIT")
                return fn(conn)

        return with_retries(attempt, timeout=self.retry_timeout, what=what)

    def step_values(self, record: StepRecord) -> dict[str, Any]:
        return {k: v for k, v in record.__dict__.items() if k != "attempt_errors"}

    def _step_insert(self, values: dict[str, Any]) -> Any:
        """The prebuilt step checkpoint INSERT (see statements.py) and its parameters."""
        return STEP_CHECKPOINT[self.dialect], values

    def insert_attempt_error(
        self, conn: Connection, workflow_id: str, step_id: int, attempt: int, name: str, error: str
    ) -> None:
        """Record one failed attempt of a step (a repeat of the same attempt is ignored)."""
        conn.execute(
            self._insert(step_errors)
            .values(
                workflow_id=workflow_id,
                step_id=step_id,
                attempt=attempt,
                name=name,
                error=error,
                created_at_ms=self.clock.now_ms(),
            )
            .on_conflict_do_nothing()
        )
