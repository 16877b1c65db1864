"""Engines for Postgres and the embedded SQLite default, and retry of transient failures."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.pool import NullPool

from ..errors import ConfigurationError, DatabaseUnavailableError

log = logging.getLogger("celery_durable.store")
T = TypeVar("T")

DEFAULT_SQLITE_FILE = "celery_durable.sqlite3"
# SQLSTATEs that mean "try the same transaction again".
RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})
# SQLite primary result codes (SQLITE_<name>) that a later attempt may not meet again
SQLITE_TRANSIENT = frozenset({"BUSY", "LOCKED", "IOERR", "CANTOPEN", "PROTOCOL", "FULL"})


def default_url() -> str:
    return f"sqlite:///{Path(os.getcwd()) / DEFAULT_SQLITE_FILE}"


def normalize_url(url: str | None) -> str:
    """Fill in the embedded default and pick psycopg 3 for plain ``postgresql://`` URLs."""
    if not url:
        return default_url()
    try:
        parsed = make_url(url)
    except Exception as exc:
        raise ConfigurationError(f"invalid durable_database_url {url!r}: {exc}") from exc
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if not parsed.drivername.startswith(("postgresql", "sqlite")):
        raise ConfigurationError(
            f"durable_database_url must be a PostgreSQL or SQLite URL, got {parsed.drivername!r}"
        )
    return parsed.render_as_string(hide_password=False)


def make_engine(url: str, pool_size: int = 5, *, hot: bool = False) -> Engine:
    """The store's engine; ``hot`` makes the autocommit, unpooled one of the hot path."""
    hot_options: dict[str, Any] = (
        {"poolclass": NullPool, "isolation_level": "AUTOCOMMIT"} if hot else {}
    )
    if url.startswith("sqlite"):
        engine = create_engine(
            url, connect_args={"timeout": 30}, pool_pre_ping=False, **hot_options
        )

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            # WAL lets readers run beside the writer; immediate begin avoids upgrade deadlocks.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        if not hot:

            @event.listens_for(engine, "begin")
            def _begin(conn: Any) -> None:
                if conn.get_execution_options().get("isolation_level") != "AUTOCOMMIT":
                    conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    if hot:
        return create_engine(url, **hot_options)
    engine = create_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size * 2,
        # no pre-ping: it costs a round trip per checkout; a dropped connection raises an
        # invalidation error that with_retries() retries on a fresh connection instead
        pool_pre_ping=False,
        pool_recycle=1800,
    )

    @event.listens_for(engine, "connect")
    def _no_jit(dbapi_conn: Any, _record: Any) -> None:
        # Postgres JIT-compiles plans it estimates costly: the sweep's and the dashboard's
        # statements with many subqueries spent 2.9 s of 3.1 s compiling (a count over
        # 20,000 queued workflows, bench.operations); none of the store's runs long
        cur = dbapi_conn.cursor()
        cur.execute("SET jit = off")
        cur.close()
        dbapi_conn.commit()

    return engine


def sqlstate(exc: BaseException) -> str | None:
    orig = getattr(exc, "orig", None)
    return getattr(orig, "sqlstate", None) if orig is not None else None


def is_serialization_failure(exc: BaseException) -> bool:
    if sqlstate(exc) in RETRYABLE_SQLSTATES:
        return True
    return isinstance(exc, OperationalError) and "database is locked" in str(exc)


def is_transient(exc: BaseException) -> bool:
    """Connection lost, server restarting, or SQLite busy: worth another try.

    Anything else (a syntax error, a constraint violation, a missing table) is the
    statement's own error: raised at once, never retried as if the database were down.
    """
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    state = sqlstate(exc)
    if state is not None:
        return state.startswith("08") or state in {"57P01", "57P02", "57P03", "53300"}
    code = getattr(getattr(exc, "orig", None), "sqlite_errorname", None)
    if code is not None:  # SQLite: busy, locked, or the file not reachable for now
        return str(code).split("_")[1] in SQLITE_TRANSIENT
    # a Postgres driver error without a SQLSTATE comes from the connection, not the server
    return isinstance(exc, OperationalError) and not _is_sqlite(exc)


def _is_sqlite(exc: BaseException) -> bool:
    return type(getattr(exc, "orig", None)).__module__ == "sqlite3"


def with_retries(
    fn: Callable[[], T],
    *,
    timeout: float,
    what: str,
    retry_on: Callable[[BaseException], bool] = is_transient,
) -> T:
    """Call ``fn``; retry ``retry_on`` errors with backoff for up to ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        try:
            return fn()
        except DBAPIError as exc:
            if not retry_on(exc):
                raise
            if time.monotonic() + delay > deadline:
                raise DatabaseUnavailableError(
                    f"durable database unavailable during {what} for {timeout:.0f}s: {exc.orig}"
                ) from exc
            log.warning("durable database error during %s, retrying in %.2fs: %s", what, delay, exc)
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
