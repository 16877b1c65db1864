"""Child workflows on real workers: a parent gives its slot back while its child runs, a
crash never starts a second child, and a fan-out of 50 wakes its parent once."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from celery_durable import WorkflowStatusString as S
from tests.apps import children_app as ca
from tests.conftest import WorkerProcess

from .helpers import BeatProcess

APP = "tests.apps.children_app"
durable = ca.durable


def effects(workflow_id: str) -> dict[str, int]:
    from tests.apps.common import read_effects

    return dict(read_effects(durable, workflow_id))


def test_a_parent_killed_while_its_child_runs_gets_the_one_childs_result(
    worker: Callable[..., WorkerProcess], beat: Callable[..., BeatProcess], flags: Path
) -> None:
    ca.setup()
    (flags / "kid_after_step").touch()
    only = worker(APP, concurrency=1)  # one slot: the child runs only once its parent waits
    handle = durable.start_workflow(ca.mom, "a")
    assert only.wait_exit(timeout=60) == -9  # killed in the child, after its step
    [kid] = durable.list_workflows(parent_workflow_id=handle.workflow_id)
    assert kid.workflow_id == f"{handle.workflow_id}-0"
    assert handle.get_status().status == S.ENQUEUED  # the parent gave its slot back

    worker(APP, concurrency=1)
    beat(APP)
    assert handle.get_result(timeout=60) == {"kid": "kid:a"}

    assert len(durable.list_workflows(parent_workflow_id=handle.workflow_id)) == 1
    assert effects(kid.workflow_id) == {"kid_step": 1}  # recorded before the kill: not rerun
    assert effects(handle.workflow_id)["mom"] == 2  # its start, and the wake-up
    assert durable.get_workflow_status(kid.workflow_id).recovery_attempts == 1  # type: ignore[union-attr]


def test_gather_over_fifty_children_wakes_the_parent_once(
    worker: Callable[..., WorkerProcess],
) -> None:
    ca.setup()
    worker(APP, concurrency=2)
    worker(APP, concurrency=2)
    handle = durable.start_workflow(ca.fan_out, 50)
    assert handle.get_result(timeout=90) == [i * i for i in range(50)]
    assert len(durable.list_workflows(parent_workflow_id=handle.workflow_id, limit=None)) == 50
    assert effects(handle.workflow_id)["fan_out"] <= 3  # start, wake-up, at most one more
