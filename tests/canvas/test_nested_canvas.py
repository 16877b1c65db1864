"""Nested canvases on real workers: a chain or a chord in a member's place runs as a child
canvas, its end completes the parent's member once (also after a SIGKILL between the two),
a failed nested member fails the outer canvas, and resume re-runs only what failed."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from celery import chain, chord

from celery_durable import WorkflowStatusString as S
from celery_durable.errors import MaxStepRetriesExceeded
from celery_durable.types import NESTED_STEP, nested_canvas_id
from tests.apps import canvas_app as ca
from tests.canvas.test_canvas_recovery import APP, own_queue, statuses, sweep_until
from tests.conftest import wait_for

RESULT_TIMEOUT = 30


def effects(*workflow_ids: str) -> Counter[str]:
    """The bodies run for a canvas and its child canvases (each counts under its own id)."""
    total: Counter[str] = Counter()
    for wid in workflow_ids:
        total.update(ca.effects(wid))
    return total


def test_plain_chord_with_a_chain_in_its_header(two_workers: Any) -> None:
    canvas = chord([ca.first.s(1) | ca.left.s(), ca.member.s(2)], ca.total.s())
    result = canvas.apply_async()
    out = result.get(timeout=RESULT_TIMEOUT)
    assert [out[0][:2], out[1]] == [[2, "left"], 4]
    wid = result.parent.id
    handle = ca.durable.retrieve_workflow(wid)
    assert handle.get_result(timeout=RESULT_TIMEOUT) == out
    assert handle.get_status().status == S.SUCCESS
    child = nested_canvas_id(wid, 0)
    assert ca.effects(child) == {"first": 1, "left": 1}
    assert ca.effects(wid) == {"member:2": 1, "total": 1}
    steps = ca.durable.list_workflow_steps(wid)
    assert [(s.name, s.stage, s.member) for s in steps] == [
        (NESTED_STEP, 0, 0), (ca.member.name, 0, 1), (ca.total.name, 1, 0),
    ]  # fmt: skip
    assert steps[0].output == out[0]  # the chain's output: its last task's


def test_durable_group_with_a_chain_member(two_workers: Any) -> None:
    h = ca.durable.group(chain(ca.first.s(1), ca.left.s()), ca.member.s(2)).start()
    out = h.get_result(timeout=RESULT_TIMEOUT)
    assert [out[0][:2], out[1]] == [[2, "left"], 4]
    assert ca.effects(nested_canvas_id(h.workflow_id, 0)) == {"first": 1, "left": 1}
    assert ca.effects(h.workflow_id) == {"member:2": 1}


@pytest.mark.parametrize("started", ["durable", "plain"])
def test_chord_inside_a_chords_header(two_workers: Any, started: str) -> None:
    inner = chord([ca.member.s(1), ca.member.s(2)], ca.total.s())
    if started == "durable":
        h = ca.durable.chord([inner, ca.member.s(3)], ca.total.s()).start()
    else:  # held at apply_chord, the inner chord as one nested member of the outer one
        result = chord([inner, ca.member.s(3)], ca.total.s()).apply_async()
        h = ca.durable.retrieve_workflow(result.parent.id)
        assert result.get(timeout=RESULT_TIMEOUT) == [[1, 4], 9]
    assert h.get_result(timeout=RESULT_TIMEOUT) == [[1, 4], 9]
    child = nested_canvas_id(h.workflow_id, 0)
    assert ca.effects(child) == {"member:1": 1, "member:2": 1, "total": 1}  # cb1 once
    assert ca.effects(h.workflow_id) == {"member:3": 1, "total": 1}  # cb2 once
    assert ca.durable.get_workflow_status(child).parent_workflow_id == h.workflow_id  # type: ignore[union-attr]


def test_crash_between_the_childs_end_and_the_parents_member(worker: Any, flags: Path) -> None:
    """SIGKILL right after the commit that ended the child canvas, before its parent's
    member was completed: the sweep finds the child ended and finishes the parent."""
    queue = own_queue("nested")
    (flags / "after_child_end").touch()
    doomed = worker(APP, queues=queue, concurrency=1)
    nested = chain(ca.first.s(1).set(queue=queue), ca.left.s().set(queue=queue))
    header = [nested, ca.member.s(2).set(queue=queue)]
    h = ca.durable.chord(header, ca.total.s().set(queue=queue)).start()
    assert doomed.wait_exit(timeout=30) == -9
    child = nested_canvas_id(h.workflow_id, 0)
    assert ca.durable.get_workflow_status(child).status == S.SUCCESS  # type: ignore[union-attr]
    assert statuses(h.workflow_id)[0] == "PENDING"  # the parent's member not completed

    second = worker(APP, queues=queue, concurrency=2)
    sweep_until(lambda: h.get_status().status == S.SUCCESS)
    out = h.get_result(timeout=10)
    assert [out[0][:2], out[1]] == [[2, "left"], 4]
    assert effects(h.workflow_id, child) == {"first": 1, "left": 1, "member:2": 1, "total": 1}
    second.kill()


def test_failed_nested_member_fails_the_outer_canvas_then_resume(
    two_workers: Any, flags: Path
) -> None:
    wid = f"nested-fail-{uuid.uuid4().hex[:8]}"
    child = nested_canvas_id(wid, 0)
    header = [chain(ca.first.s(1), ca.flaky.s()), ca.member.s(3)]
    h = ca.durable.chord(header, ca.total.s()).start(workflow_id=wid, link_error=ca.errback.s(wid))
    with pytest.raises(MaxStepRetriesExceeded):
        h.get_result(timeout=RESULT_TIMEOUT)
    assert h.get_status().status == S.ERROR
    assert ca.durable.get_workflow_status(child).status == S.ERROR  # type: ignore[union-attr]
    wait_for(lambda: ca.effects(wid)["eb"] == 1)
    wait_for(lambda: ca.effects(wid)["member:3"] == 1)
    time.sleep(0.5)  # an errback or a callback sent late would show by now
    assert effects(wid, child) == {"first": 1, "flaky": 3, "member:3": 1, "eb": 1}

    (flags / "fixed").touch()
    assert ca.durable.resume_workflow(wid).get_result(timeout=RESULT_TIMEOUT) == [-2, 9]
    assert effects(wid, child) == {"first": 1, "flaky": 4, "member:3": 1, "eb": 1, "total": 1}
    nested_step = ca.durable.list_workflow_steps(wid)[0]
    assert (nested_step.status, nested_step.output) == ("SUCCESS", -2)
    (earlier,) = nested_step.history  # the failed run, set aside
    assert earlier.status == "ERROR"
