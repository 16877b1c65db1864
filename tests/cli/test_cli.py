"""`celery -A app durable ...` against a real app, Postgres and Redis, compared with the Python API.

Most commands run in-process through click's CliRunner (the same click group Celery loads);
a few run the real `python -m celery` command line to prove the entry point works.
The app gets its own database and queue, so its sweeps touch nothing of other tests.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import datetime
from types import ModuleType
from typing import Any
from unittest import mock

import pytest
import redis
from celery import Celery
from celery.bin.base import CLIContext
from click.testing import CliRunner, Result
from sqlalchemy import create_engine, text, update

from celery_durable import SetWorkflowID
from celery_durable import WorkflowStatusString as S
from celery_durable.clock import SYSTEM_CLOCK
from celery_durable.integration.cli import durable as durable_cli
from celery_durable.integration.cli import to_jsonable
from celery_durable.runtime.workflows import StartRequest, record_start
from celery_durable.store.tables import workflows
from tests.conftest import PG_ADMIN_URL, ROOT
from tests.unit.helpers import close, uid

APP = "tests.apps.cli_app"
CLI_ENV: dict[str, str] = {}  # the app's own database and queue, set by the cli_app fixture


@pytest.fixture(scope="module")
def cli_app() -> Iterator[ModuleType]:
    """tests.apps.cli_app on a database and a queue of its own, dropped afterwards."""
    base, session_db = os.environ["DURABLE_TEST_DB_URL"].rsplit("/", 1)
    db = f"{session_db}_cli"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{db}"'))
    CLI_ENV.update(
        DURABLE_TEST_DB_URL=f"{base}/{db}",
        DURABLE_TEST_QUEUE=f"{os.environ['DURABLE_TEST_QUEUE']}-cli",
    )
    try:
        with mock.patch.dict(os.environ, CLI_ENV):
            module = importlib.import_module(APP)
        assert module.durable.settings.database_url == CLI_ENV["DURABLE_TEST_DB_URL"]
        yield module
        close(module.durable)
    finally:
        broker().delete(CLI_ENV["DURABLE_TEST_QUEUE"])
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="module")
def finished(cli_app: ModuleType) -> dict[str, str]:
    """Ids of one workflow that succeeded (three steps, the last failed twice) and one that
    failed, both run by direct calls in this process."""
    ids = {"compute": uid("compute"), "failing": uid("failing")}
    with SetWorkflowID(ids["compute"]):
        assert cli_app.compute(3) == {"a": 6, "b": 12, "errors": 2}
    with SetWorkflowID(ids["failing"]), pytest.raises(cli_app.Refused):
        cli_app.failing(5)
    return ids


def broker() -> redis.Redis:
    return redis.Redis.from_url(os.environ.get("DURABLE_TEST_BROKER", "redis://127.0.0.1:6379/0"))


def queued() -> int:
    return int(broker().llen(CLI_ENV["DURABLE_TEST_QUEUE"]))


def enqueued(cli_app: ModuleType) -> str:
    """Record a workflow that no worker has started (it stays ENQUEUED)."""
    workflow_id = uid("enqueued")
    record_start(
        cli_app.durable.runtime, StartRequest(workflow_id, cli_app.compute.name, args=(1,))
    )
    return workflow_id


def cli(cli_app: ModuleType, *args: str) -> Result:
    obj = CLIContext(app=cli_app.app, no_color=True, workdir=None)
    return CliRunner().invoke(durable_cli, list(args), obj=obj)


def cli_json(cli_app: ModuleType, *args: str) -> Any:
    result = cli(cli_app, *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def command_line(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "celery", "-A", APP, "durable", *args]
    env = {**os.environ, **CLI_ENV}
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def api(value: Any) -> Any:
    """What the Python API returned, as it reads once through JSON."""
    return json.loads(json.dumps(to_jsonable(value)))


def test_list_on_the_real_command_line_prints_what_list_workflows_returns(
    cli_app: ModuleType, finished: dict[str, str]
) -> None:
    proc = command_line("list", "--json", "--limit", "5")
    assert proc.returncode == 0, proc.stderr
    printed = json.loads(proc.stdout)
    assert printed == api(cli_app.durable.list_workflows(limit=5))
    by_id = {w["workflow_id"]: w for w in printed}
    done = by_id[finished["compute"]]
    assert done["status"] == "SUCCESS"
    assert done["output"] == {"a": 6, "b": 12, "errors": 2}
    assert done["input"] == {"args": [3], "kwargs": {}}
    created = cli_app.durable.get_workflow_status(finished["compute"]).created_at
    assert datetime.fromisoformat(done["created_at"]) == created
    assert by_id[finished["failing"]]["error"] == {
        "type": "tests.apps.cli_app.Refused",
        "message": "workflow refused 5",
    }


def test_list_filters(cli_app: ModuleType, finished: dict[str, str]) -> None:
    d = cli_app.durable
    name = cli_app.compute.name
    assert cli_json(cli_app, "list", "--name", name) == api(d.list_workflows(name=name))
    assert cli_json(cli_app, "list", "--status", "success", "--status", "ERROR") == api(
        d.list_workflows(status=["SUCCESS", "ERROR"])
    )
    assert cli_json(cli_app, "list", "--limit", "1", "--offset", "1") == api(
        d.list_workflows(limit=1, offset=1)
    )
    assert cli_json(cli_app, "list", "--limit", "0", "--oldest-first") == api(
        d.list_workflows(limit=None, newest_first=False)
    )
    failed = cli_json(cli_app, "list", "--status", "ERROR", "--name", cli_app.failing.name)
    assert [w["workflow_id"] for w in failed] == [finished["failing"]]


def test_get_and_steps_print_what_the_api_returns(
    cli_app: ModuleType, finished: dict[str, str]
) -> None:
    d = cli_app.durable
    for workflow_id in finished.values():
        assert cli_json(cli_app, "get", workflow_id) == api(d.get_workflow_status(workflow_id))
        assert cli_json(cli_app, "steps", workflow_id) == api(d.list_workflow_steps(workflow_id))
    steps = cli_json(cli_app, "steps", finished["compute"])
    assert [(s["step_id"], s["status"], s["output"]) for s in steps[:2]] == [
        (0, "SUCCESS", 6),
        (1, "SUCCESS", 12),
    ]
    refused = steps[2]
    assert refused["attempts"] == 2
    assert refused["error"]["type"] == "celery_durable.errors.MaxStepRetriesExceeded"
    assert refused["errors"] == [
        {"type": "tests.apps.cli_app.Refused", "message": "refused 12"},
        {"type": "tests.apps.cli_app.Refused", "message": "refused 12"},
    ]


def test_tables_for_people(cli_app: ModuleType, finished: dict[str, str]) -> None:
    result = cli(cli_app, "list", "--name", cli_app.compute.name)
    assert result.exit_code == 0, result.output
    header, rule, *rows = result.stdout.splitlines()
    assert header.split() == [
        *("ID", "NAME", "STATUS", "RECOVERY", "CREATED", "(UTC)", "UPDATED", "(UTC)")
    ]
    row = next(r for r in rows if r.startswith(finished["compute"] + " "))
    assert row.split()[1:4] == [cli_app.compute.name, "SUCCESS", "0/100"]
    for column in ("NAME", "STATUS", "RECOVERY", "CREATED"):  # aligned under their headers
        start = header.index(column)
        assert row[start - 2 : start] == "  " and row[start] != " "
    assert set(rule) <= {"-", " "}

    result = cli(cli_app, "steps", finished["compute"])
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["STEP", "NAME", "STATUS", "ATTEMPTS", "OUTPUT", "/", "ERROR"]
    assert lines[2].split() == ["0", cli_app.double.name, "SUCCESS", "1", "6"]
    assert "MaxStepRetriesExceeded: step" in lines[4] and lines[4].endswith("...")

    result = cli(cli_app, "get", finished["failing"])
    assert "status             ERROR" in result.stdout
    assert "error              Refused: workflow refused 5" in result.stdout


def test_unknown_ids_exit_non_zero_with_a_message(cli_app: ModuleType) -> None:
    proc = command_line("get", "no-such-id")
    assert proc.returncode == 1
    assert proc.stderr.strip() == "Error: no workflow with id 'no-such-id'"
    for args in (["steps"], ["cancel"], ["resume"], ["fork", "--start-step", "1"]):
        result = cli(cli_app, *args, "no-such-id", "--json")
        assert result.exit_code == 1, (args, result.output)
        assert result.stderr.strip() == "Error: no workflow with id 'no-such-id'"
        assert result.stdout == ""


def test_an_app_without_durable_is_a_usage_error() -> None:
    obj = CLIContext(app=Celery("plain", set_as_current=False), no_color=True, workdir=None)
    result = CliRunner().invoke(durable_cli, ["list"], obj=obj)
    assert result.exit_code == 2
    assert "plain has no celery-durable set up: create Durable(app)" in result.stderr


def test_cancel(cli_app: ModuleType, finished: dict[str, str]) -> None:
    d = cli_app.durable
    workflow_id = enqueued(cli_app)
    printed = cli_json(cli_app, "cancel", workflow_id)
    assert printed["status"] == "CANCELLED"
    assert printed == api(d.get_workflow_status(workflow_id))
    result = cli(cli_app, "cancel", finished["compute"])  # a finished one is left as it is
    assert result.exit_code == 0
    assert result.stdout.startswith(f"workflow {finished['compute']}: left as it is")
    assert d.get_workflow_status(finished["compute"]).status == S.SUCCESS


def test_resume_re_enqueues_and_publishes(cli_app: ModuleType) -> None:
    workflow_id = enqueued(cli_app)
    before = queued()
    printed = cli_json(cli_app, "resume", workflow_id)
    assert queued() == before + 1
    status = cli_app.durable.get_workflow_status(workflow_id)
    assert (status.status, status.recovery_attempts) == (S.ENQUEUED, 1)
    assert printed == api(status)


def test_resume_can_send_a_workflow_to_another_queue(cli_app: ModuleType) -> None:
    workflow_id = enqueued(cli_app)
    other = f"{CLI_ENV['DURABLE_TEST_QUEUE']}-other"
    printed = cli_json(cli_app, "resume", workflow_id, "--queue", other)
    assert printed["queue"] == other
    assert int(broker().llen(other)) == 1
    broker().delete(other)


def test_fork_copies_the_first_steps_under_a_new_id(
    cli_app: ModuleType, finished: dict[str, str]
) -> None:
    d = cli_app.durable
    source = finished["compute"]
    before = queued()
    printed = cli_json(cli_app, "fork", source, "--start-step", "2")
    assert queued() == before + 1
    new_id = printed["workflow_id"]
    assert new_id != source
    assert printed == api(d.get_workflow_status(new_id))
    assert (printed["status"], printed["name"], printed["input"]) == (
        "ENQUEUED",
        cli_app.compute.name,
        {"args": [3], "kwargs": {}},
    )
    copied = d.list_workflow_steps(new_id)
    original = d.list_workflow_steps(source)
    assert [(s.step_id, s.name, s.output) for s in copied] == [
        (s.step_id, s.name, s.output) for s in original[:2]
    ]

    result = cli(cli_app, "fork", source)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"forked {source} as ")

    timed = cli_json(cli_app, "fork", source, "--timeout", "60", "--queue", "elsewhere")
    assert (timed["queue"], timed["deadline"] is not None) == ("elsewhere", True)
    assert d.get_workflow_status(source).deadline is None  # the source is untouched


def test_recover_sweeps_once_and_reports(cli_app: ModuleType) -> None:
    workflow_id = enqueued(cli_app)
    lost_at = SYSTEM_CLOCK.now_ms() - int(cli_app.durable.settings.enqueue_timeout * 1000) - 1000
    with cli_app.durable.store.engine.begin() as conn:  # its message counts as lost by now
        where = workflows.c.workflow_id == workflow_id
        conn.execute(update(workflows).where(where).values(updated_at_ms=lost_at))
    before = queued()
    report = cli_json(cli_app, "recover")
    assert set(report) == {"recovered", "dead_lettered", "cancelled", "publish_failed"}
    assert workflow_id in report["recovered"]
    assert queued() == before + len(report["recovered"])
    for recovered in report["recovered"]:
        status = cli_app.durable.get_workflow_status(recovered)
        assert status.status == S.ENQUEUED
    # a lost message re-sent is not a crash: no recovery attempt counted, but re-sent now
    status = cli_app.durable.get_workflow_status(workflow_id)
    assert status.recovery_attempts == 0 and status.updated_at.timestamp() * 1000 > lost_at

    proc = command_line("recover")  # on the real command line, for people
    assert proc.returncode == 0, proc.stderr
    label, count = proc.stdout.splitlines()[0].rsplit(None, 1)
    ids = proc.stdout.splitlines()[1 : 1 + int(count)]
    assert label == "re-enqueued" and all(i.startswith("  ") for i in ids)


def test_migrate_prints_the_revision(cli_app: ModuleType) -> None:
    printed = cli_json(cli_app, "migrate")
    assert printed == {"revision": cli_app.durable.migrate()}
    assert printed["revision"]
    result = cli(cli_app, "migrate")
    assert result.stdout.strip() == f"durable schema at revision {printed['revision']}"


def test_json_values_fall_back_to_repr() -> None:
    when = datetime(2024, 5, 1, 12, 0)
    value = {"at": when, "id": uuid.UUID(int=1), 1: (object,), "exc": KeyError("k")}
    assert to_jsonable(value) == {
        "at": "2024-05-01T12:00:00",
        "id": "00000000-0000-0000-0000-000000000001",
        "1": [repr(object)],
        "exc": {"type": "KeyError", "message": "'k'"},
    }
