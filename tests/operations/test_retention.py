"""Retention on both backends: garbage collection deletes exactly the workflows that ended
before the bound (with their steps and errors), never an active one or one a live parent
or child needs; the gc command line; beat's schedule; two collections at once."""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from celery import Celery
from celery.bin.base import CLIContext
from click.testing import CliRunner
from sqlalchemy import create_engine, text, update

from celery_durable import Durable, SetWorkflowID
from celery_durable.errors import MaxStepRetriesExceeded
from celery_durable.integration.cli import durable as durable_cli
from celery_durable.integration.retention import GC_TASK
from celery_durable.runtime.workflows import StartRequest, record_start
from celery_durable.store.tables import workflows
from celery_durable.types import WorkflowRecord
from tests.conftest import PG_ADMIN_URL
from tests.unit.helpers import close, uid

DAY_MS = 86_400_000


class Nope(Exception):
    pass


def make(db_url: str) -> tuple[Celery, Durable]:
    app = Celery(uid("retention"))
    durable = Durable(app, database_url=db_url)

    @durable.step(name=uid("tests.retention.flaky"), retries=1, interval_seconds=0.01)
    def flaky(x: int) -> int:
        raise Nope(f"no {x}")

    @durable.workflow(name=uid("tests.retention.wf"))
    def wf(x: int) -> int:
        if x < 0:
            return flaky(x)  # type: ignore[no-any-return]
        return x

    app.wf = wf  # type: ignore[attr-defined]
    return app, durable


@pytest.fixture(scope="module")
def own_pg_url() -> Iterator[str]:
    """A database of this module's own: gc deletes whatever ended, other tests' rows too."""
    base, session_db = os.environ["DURABLE_TEST_DB_URL"].rsplit("/", 1)
    db = f"{session_db}_retention"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{db}"'))
    yield f"{base}/{db}"
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["postgres", "sqlite"])
def setup(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Celery, Durable]]:
    if request.param == "postgres":
        url = request.getfixturevalue("own_pg_url")
    else:
        url = f"sqlite:///{tmp_path / 'durable.sqlite3'}"
    app, durable = make(url)
    yield app, durable
    close(durable)


def run(durable: Durable, wf: object, x: int, age_days: float = 0) -> str:
    """Run ``wf(x)`` here and make it look ``age_days`` old (created and ended then)."""
    wid = uid("w")
    with SetWorkflowID(wid), contextlib.suppress(MaxStepRetriesExceeded):
        wf(x)  # type: ignore[operator]
    if age_days:
        back = int(age_days * DAY_MS)
        with durable.store.engine.begin() as conn:  # type: ignore[attr-defined]
            conn.execute(
                update(workflows)
                .where(workflows.c.workflow_id == wid)
                .values(
                    created_at_ms=workflows.c.created_at_ms - back,
                    completed_at_ms=workflows.c.completed_at_ms - back,
                )
            )
    return wid


def rows(durable: Durable, table: str, workflow_id: str) -> int:
    with durable.store.engine.connect() as conn:  # type: ignore[attr-defined]
        query = text(f"SELECT count(*) FROM {table} WHERE workflow_id = :w")
        return int(conn.execute(query, {"w": workflow_id}).scalar_one())


def test_gc_deletes_only_old_ended_workflows(setup: tuple[Celery, Durable]) -> None:
    app, durable = setup
    wf = app.wf  # type: ignore[attr-defined]
    old_ok, old_failed = run(durable, wf, 1, age_days=10), run(durable, wf, -1, age_days=10)
    recent = run(durable, wf, 2, age_days=1)
    active = uid("active")
    record_start(durable.runtime, StartRequest(active, wf.name, args=(3,)))
    parent = uid("parent")  # active, with an old ended child: both stay
    record_start(durable.runtime, StartRequest(parent, wf.name, args=(4,)))
    child = run(durable, wf, 5, age_days=10)
    with durable.store.engine.begin() as conn:  # type: ignore[attr-defined]
        conn.execute(
            update(workflows)
            .where(workflows.c.workflow_id == child)
            .values(parent_workflow_id=parent)
        )
    assert rows(durable, "durable_step_errors", old_failed) == 2
    assert durable.collect_garbage(7 * 86400, dry_run=True).deleted == 2
    assert durable.store.get_workflow(old_ok) is not None  # a dry run deletes nothing
    report = durable.collect_garbage(7 * 86400)
    assert (report.deleted, report.finished) == (2, True)
    for wid in (old_ok, old_failed):
        assert durable.store.get_workflow(wid) is None
        for table in ("durable_steps", "durable_step_errors"):
            assert rows(durable, table, wid) == 0
    for wid in (recent, active, parent, child):
        assert durable.store.get_workflow(wid) is not None
    assert durable.collect_garbage(7 * 86400).deleted == 0  # nothing left to do
    assert durable.collect_garbage(0, statuses=["ERROR"]).deleted == 0
    assert durable.delete_workflows([recent, active, uid("missing")]) == [recent]
    assert durable.store.get_workflow(active) is not None


def test_gc_in_small_batches_and_two_at_once(setup: tuple[Celery, Durable]) -> None:
    app, durable = setup
    ids = [run(durable, app.wf, i, age_days=30) for i in range(12)]  # type: ignore[attr-defined]
    _, other = make(durable.settings.database_url or "")
    other.overrides["gc_batch_size"] = 2
    durable.overrides["gc_batch_size"] = 3
    durable._settings = other._settings = None  # read the batch sizes again
    reports = []
    threads = [
        threading.Thread(target=lambda d=d: reports.append(d.collect_garbage(86400)))
        for d in (durable, other)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    close(other)
    assert sum(r.deleted for r in reports) == len(ids)
    assert max(r.batches for r in reports) >= 3
    assert all(durable.store.get_workflow(w) is None for w in ids)


def test_the_gc_command(setup: tuple[Celery, Durable]) -> None:
    app, durable = setup
    old = run(durable, app.wf, 1, age_days=8)  # type: ignore[attr-defined]
    kept = run(durable, app.wf, 2, age_days=3)  # type: ignore[attr-defined]

    def gc(*args: str) -> str:
        obj = CLIContext(app=app, no_color=True, workdir=None)
        result = CliRunner().invoke(durable_cli, ["gc", *args], obj=obj)
        assert result.exit_code == 0, result.output
        return result.stdout

    assert gc("--older-than", "7d", "--dry-run") == "would delete 1 workflows\n"
    assert durable.store.get_workflow(old) is not None
    assert gc("--older-than", "7d", "--status", "ERROR") == "deleted 0 workflows\n"
    report = json.loads(gc("--older-than", "1w", "--json"))
    assert (report["deleted"], report["dry_run"]) == (1, False)
    assert durable.store.get_workflow(old) is None and durable.store.get_workflow(kept)
    obj = CLIContext(app=app, no_color=True, workdir=None)
    bad = CliRunner().invoke(durable_cli, ["gc", "--older-than", "soon"], obj=obj)
    assert bad.exit_code == 2 and "not a duration" in bad.output


def test_beat_runs_gc_only_with_a_retention(tmp_path: object) -> None:
    app = Celery(uid("beat"))
    app.conf.durable_gc_interval = 600
    Durable(app)
    entry = app.conf.beat_schedule[GC_TASK]
    assert entry["task"] == GC_TASK and entry["schedule"] == 600
    assert entry["options"]["expires"] == 600
    off = Celery(uid("beat-off"))
    off.conf.durable_retention_seconds = None
    Durable(off)
    assert GC_TASK not in off.conf.beat_schedule
    assert GC_TASK in off.tasks  # registered all the same (a manual run is a no-op)


def test_list_filters_reach_the_store(setup: tuple[Celery, Durable]) -> None:
    app, durable = setup
    prefix = uid("f")
    now = durable.runtime.clock.now_ms()
    for i, queue in enumerate(["a", "b", "a"]):
        durable.store.insert_workflow(
            WorkflowRecord(f"{prefix}-{i}", "n", "ENQUEUED", queue=queue,
                           created_at_ms=now - i * 1000, updated_at_ms=now)
        )  # fmt: skip
    found = durable.list_workflows(id_prefix=prefix, queue="a")
    assert [w.workflow_id for w in found] == [f"{prefix}-0", f"{prefix}-2"]
    before = durable.list_workflows(id_prefix=prefix, created_before=(now - 500) / 1000)
    assert [w.workflow_id for w in before] == [f"{prefix}-1", f"{prefix}-2"]
    obj = CLIContext(app=app, no_color=True, workdir=None)
    result = CliRunner().invoke(
        durable_cli, ["list", "--json", "--id-prefix", prefix, "--queue", "b"], obj=obj
    )
    assert result.exit_code == 0, result.output
    assert [w["workflow_id"] for w in json.loads(result.stdout)] == [f"{prefix}-1"]
