"""The hot path: the few statements every step runs, on driver connections it keeps.

SQLAlchemy Core builds each of these statements once (statements.py, chains.py) and
compiles it once per dialect. Executing the compiled text on the driver's connection
skips SQLAlchemy's per-execution work: pool checkout and return, isolation-level
handling, parameter processing and result wrapping. For these one-row statements that
work cost about three times the database round trip (docs/design-decisions.md).

Only statements whose parameters are plain strings, integers and None run here; the
rest of the store goes through SQLAlchemy as usual. Driver errors are re-raised as
SQLAlchemy's ``DBAPIError`` subclasses, so the store's retry policy treats both paths
alike, and a broken connection is dropped and replaced on the next call.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Dialect, Engine, Integer, String
from sqlalchemy.exc import DBAPIError
from sqlalchemy.types import NullType


@dataclass(frozen=True)
class Compiled:
    """A statement compiled for one dialect: its SQL text and how to bind parameters."""

    sql: str
    order: tuple[str, ...] | None  # positional dialects (SQLite): parameter order
    defaults: Mapping[str, Any]  # literal values the statement carries (status names)
    columns: tuple[str, ...]  # the names of the rows it returns, if it returns rows

    def bind(self, params: Mapping[str, Any]) -> Any:
        values = {**self.defaults, **params}
        if self.order is None:
            return values
        return tuple(values[name] for name in self.order)


# parameter types whose values the drivers take as they are (no bind processor)
RAW_TYPES = (String, Integer, NullType)


def check_statement(stmt: Any) -> None:
    """Refuse a statement the raw path cannot run: expanding IN lists, or a bound parameter
    whose type needs a conversion on the way to the driver."""
    compiled = stmt.compile()
    if compiled.post_compile_params or compiled.literal_execute_params:
        raise ValueError("a hot-path statement cannot use expanding IN lists")
    for bind in compiled.binds.values():
        if not isinstance(bind.type, RAW_TYPES):
            raise ValueError(
                f"hot-path parameter {bind.key!r} is of type {bind.type!r}: only strings, "
                "integers and None pass to the driver unconverted"
            )


def compile_statement(stmt: Any, dialect: Any) -> Compiled:
    compiled = stmt.compile(dialect=dialect)
    if compiled.post_compile_params or compiled.literal_execute_params:
        raise ValueError("a hot-path statement cannot use expanding IN lists")
    defaults = {
        name: bind.effective_value
        for bind, name in compiled.bind_names.items()
        if not bind.required
    }
    order = tuple(compiled.positiontup) if compiled.positional else None
    columns = tuple(c.key for c in stmt.exported_columns)
    return Compiled(compiled.string, order, defaults, columns)


@dataclass
class HotResult:
    """The rows (as tuples), column names and row count of one hot-path statement."""

    rows: list[tuple[Any, ...]]
    columns: tuple[str, ...]
    rowcount: int

    def first(self) -> dict[str, Any] | None:
        return dict(zip(self.columns, self.rows[0], strict=True)) if self.rows else None


class HotTransaction:
    """The statements of one hot-path transaction, run on its connection."""

    def __init__(self, path: HotPath, fairy: Any) -> None:
        self._path = path
        self._fairy = fairy

    def execute(self, stmt: Any, params: Mapping[str, Any]) -> HotResult:
        return self._path._run(self._fairy, self._path.compiled(stmt), params)

    def execute_many(self, stmt: Any, rows: Sequence[Mapping[str, Any]]) -> None:
        """One statement (without RETURNING) for each of ``rows``: the driver batches them."""
        self._path._run_many(self._fairy, self._path.compiled(stmt), rows)


class HotPath:
    """Driver connections in autocommit mode, made by ``engine``'s connect hooks.

    ``engine`` is a NullPool engine in autocommit mode; this class keeps the connections
    itself. Each statement (or transaction) takes an idle connection, most recently used
    first, or opens one, and gives it back after: a process holds one connection per
    statement running at that instant, of which up to ``max_idle`` stay open between
    statements. That suits every Celery pool: prefork processes, threads, and gevent or
    eventlet greenlets (a new greenlet per task still finds a connection open).

    An *async_commit* connection runs ``async_commit_setup`` once (on Postgres,
    ``synchronous_commit`` off): its commits return before the WAL reaches the disk, for
    writes whose loss in a server crash is harmless (a step's lease). A connection
    inherited across ``fork`` is never used or closed by the child (closing it would end
    the parent's session).
    """

    def __init__(
        self,
        engine: Callable[[], Engine],
        *,
        dialect: Callable[[], Dialect],
        begin_sql: str = "BEGIN",
        async_commit_setup: str | None = None,
        max_idle: int = 5,
    ) -> None:
        self._engine = engine
        self._dialect = dialect
        self._begin_sql = begin_sql
        self._async_commit_setup = async_commit_setup
        self._max_idle = max_idle
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._generation = 0  # close() retires every connection of earlier generations
        self._idle: dict[bool, list[Any]] = {False: [], True: []}
        # id -> (the statement, held so its id is never reused; compiled on first use)
        self._registered: dict[int, tuple[Any, Compiled | None]] = {}
        self._inherited: list[Any] = []  # kept referenced so they are never closed here
        # called with each SQL text sent (BEGIN and COMMIT included): for instrumentation,
        # as SQLAlchemy's before_cursor_execute event is for the rest of the store
        self.on_statement: Callable[[str], None] | None = None

    def register(self, *statements: Any) -> None:
        """Admit statements to the hot path (see ``check_statement``). Only these run here:
        each is kept for the life of the path, so its ``id`` stays its own."""
        for stmt in statements:
            check_statement(stmt)
            self._registered.setdefault(id(stmt), (stmt, None))

    def compiled(self, stmt: Any) -> Compiled:
        entry = self._registered.get(id(stmt))
        if entry is None or entry[0] is not stmt:
            raise ValueError(f"statement not registered with the hot path: {stmt}")
        if entry[1] is None:
            entry = (stmt, compile_statement(stmt, self._dialect()))
            self._registered[id(stmt)] = entry
        assert entry[1] is not None
        return entry[1]

    def warm(self) -> None:
        """Compile every registered statement now: a worker does it before forking its
        pool, so every child inherits them compiled."""
        for stmt, _ in list(self._registered.values()):
            self.compiled(stmt)

    def idle_count(self, async_commit: bool = False) -> int:
        with self._lock:
            self._forget_inherited()
            return len(self._idle[async_commit])

    def _forget_inherited(self) -> None:
        """After a fork (the lock held): park the parent's connections, start empty."""
        if self._pid != os.getpid():
            self._inherited.extend(c for idle in self._idle.values() for c in idle)
            self._idle = {False: [], True: []}
            self._pid = os.getpid()

    @contextmanager
    def checkout(self, async_commit: bool = False) -> Iterator[Any]:
        """A connection for one statement or transaction, given back (if still sound)."""
        fairy = self._take(async_commit)
        try:
            yield fairy
        finally:
            self._give(fairy, async_commit)

    def _take(self, async_commit: bool) -> Any:
        # lock-free when a connection is idle: list.pop and list.append are atomic
        if self._pid != os.getpid():
            with self._lock:
                self._forget_inherited()
        try:
            return self._idle[async_commit].pop()
        except IndexError:
            pass
        fairy = self._open_connection()
        fairy.info["hot_owner"] = (self._pid, self._generation)
        if async_commit and self._async_commit_setup:
            try:
                self._raw(fairy, self._async_commit_setup)
            except BaseException:
                fairy.invalidate()
                raise
        return fairy

    def _give(self, fairy: Any, async_commit: bool) -> None:
        if not fairy.is_valid:  # dropped after an error: already closed
            return
        pid, generation = fairy.info["hot_owner"]
        if pid != self._pid:  # taken before a fork, given back in the child: not ours
            self._inherited.append(fairy)
            return
        idle = self._idle[async_commit]
        if generation == self._generation and len(idle) < self._max_idle:
            idle.append(fairy)
            return
        with suppress(Exception):
            fairy.close()

    def _open_connection(self) -> Any:
        engine = self._engine()
        dbapi = engine.dialect.loaded_dbapi
        try:
            return engine.raw_connection()
        except dbapi.Error as exc:  # as SQLAlchemy reports a failed connect
            raise DBAPIError.instance(
                None, None, exc, dbapi.Error, connection_invalidated=True, dialect=engine.dialect
            ) from exc

    def _drop(self, fairy: Any) -> None:
        """Never use ``fairy`` again (it broke, or its state is unknown)."""
        with suppress(Exception):
            fairy.invalidate()

    def close(self) -> None:
        """Close this process's idle connections; busy ones close when given back."""
        with self._lock:
            self._forget_inherited()
            idle = [c for conns in self._idle.values() for c in conns]
            self._idle = {False: [], True: []}
            self._generation += 1
        for fairy in idle:
            with suppress(Exception):
                fairy.close()

    def execute(
        self, stmt: Any, params: Mapping[str, Any], *, async_commit: bool = False
    ) -> HotResult:
        """Run one prebuilt statement as its own transaction (autocommit)."""
        compiled = self.compiled(stmt)
        fairy = self._take(async_commit)  # (checkout() inlined: this runs for every step)
        try:
            return self._run(fairy, compiled, params)
        finally:
            self._give(fairy, async_commit)

    @contextmanager
    def transaction(self) -> Iterator[HotTransaction]:
        """Several prebuilt statements in one transaction, committed when the block ends."""
        with self.checkout() as fairy:
            self._raw(fairy, self._begin_sql)
            try:
                yield HotTransaction(self, fairy)
            except BaseException:
                if fairy.is_valid:
                    try:
                        self._raw(fairy, "ROLLBACK")
                    except BaseException:
                        self._drop(fairy)
                raise
            self._raw(fairy, "COMMIT")

    def _run(self, fairy: Any, compiled: Compiled, params: Mapping[str, Any]) -> HotResult:
        cursor = self._send(fairy, compiled.sql, compiled.bind(params))
        rows = cursor.fetchall() if compiled.columns else []
        return HotResult(rows, compiled.columns, cursor.rowcount)

    def _run_many(self, fairy: Any, compiled: Compiled, rows: Sequence[Mapping[str, Any]]) -> None:
        self._send(fairy, compiled.sql, [compiled.bind(row) for row in rows], many=True)

    def _raw(self, fairy: Any, sql: str) -> None:
        self._send(fairy, sql, None)

    def _send(self, fairy: Any, sql: str, bound: Any, *, many: bool = False) -> Any:
        """Execute on the connection's one cursor (reused for every statement)."""
        if self.on_statement is not None:
            self.on_statement(sql)
        cursor = fairy.info.get("hot_cursor")
        try:
            if cursor is None:
                cursor = fairy.info["hot_cursor"] = fairy.dbapi_connection.cursor()
            if many:
                cursor.executemany(sql, bound)
            elif bound is None:
                cursor.execute(sql)
            else:
                cursor.execute(sql, bound)
            return cursor
        except BaseException as exc:
            dbapi = self._engine().dialect.loaded_dbapi
            if not isinstance(exc, dbapi.Error):
                # interrupted mid-statement (a time limit, an exit): the connection's state
                # is unknown, so it is not used again (as SQLAlchemy invalidates it)
                self._drop(fairy)
                raise
            raise self._wrap(exc, fairy, cursor, sql, bound) from exc

    def _wrap(self, exc: Any, fairy: Any, cursor: Any, sql: str, params: Any) -> Exception:
        """The driver's error as SQLAlchemy raises it; a lost connection is dropped."""
        dialect = self._engine().dialect
        dbapi = dialect.loaded_dbapi
        lost = dialect.is_disconnect(exc, fairy.dbapi_connection, cursor)
        if lost:
            self._drop(fairy)
        wrapped: Exception = DBAPIError.instance(
            sql, params, exc, dbapi.Error, connection_invalidated=lost, dialect=dialect
        )
        return wrapped
