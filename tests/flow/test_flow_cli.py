"""``celery -A proj durable queues`` and ``schedules [pause|resume NAME]``, in-process
through click's CliRunner (no worker: a queue nobody consumes keeps its state still)."""

from __future__ import annotations

import json
import uuid
from typing import Any

from celery.bin.base import CLIContext
from click.testing import CliRunner, Result

from celery_durable.integration.cli import durable as durable_cli


def cli(*args: str) -> Result:
    from tests.apps.flow_app import app

    obj = CLIContext(app=app, no_color=True, workdir=None)
    return CliRunner().invoke(durable_cli, list(args), obj=obj)


def cli_json(*args: str) -> Any:
    result = cli(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_queues_lists_running_waiting_and_rate_window() -> None:
    from tests.apps.flow_app import BASE, durable, ensure_flow_tables, timed

    ensure_flow_tables()
    idle = durable.queue(f"{BASE}-idle-{uuid.uuid4().hex[:6]}", concurrency=1, limiter=(5, 60))
    handles = [durable.start_workflow(timed, f"idle-{i}", 0.0, queue=idle) for i in range(3)]
    try:
        (row,) = [q for q in cli_json("queues") if q["queue"] == idle.name]
        assert (row["running"], row["waiting"], row["window_starts"]) == (1, 2, 1)
        assert row["oldest_waiting_seconds"] is not None
        text = cli("queues").output
        assert idle.name in text and "1/1" in text and "1/5 per 60s" in text
        listed = durable.list_workflows(queue=idle.name, limit=None)
        assert len(listed) == 3 and {w.queue for w in listed} == {idle.name}
    finally:  # no worker will run them: leave no stalled workflow to later tests' sweeps
        for handle in handles:
            durable.cancel_workflow(handle.workflow_id)


def test_schedules_list_pause_and_resume() -> None:
    from tests.apps.flow_app import SCHEDULE

    (found,) = [s for s in cli_json("schedules") if s["name"] == SCHEDULE]
    assert found["cron"] == "*/2 * * * * *" and found["next_tick"]
    assert cli("schedules", "pause", SCHEDULE).exit_code == 0
    (paused,) = [s for s in cli_json("schedules") if s["name"] == SCHEDULE]
    assert paused["paused"] is True
    assert "paused" in cli("schedules").output
    assert cli("schedules", "resume", SCHEDULE).exit_code == 0
    (resumed,) = [s for s in cli_json("schedules") if s["name"] == SCHEDULE]
    assert resumed["paused"] is False
    assert cli("schedules", "pause", "nope").exit_code != 0
