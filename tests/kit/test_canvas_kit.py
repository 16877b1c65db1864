"""Durable chords in ``celery_durable.testing`` (in-memory store, messages run in-process):
the stage decision, crashes after a member's checkpoint, duplicates, failure and resume."""

from __future__ import annotations

import pickle
from collections import Counter
from collections.abc import Callable

import pytest
from celery import Celery, chain, group

from celery_durable import Durable, MaxStepRetriesExceeded, WorkflowStatusString
from celery_durable.testing import DurableTestKit

app = Celery("kit_canvas", set_as_current=False)
durable = Durable(app)
bodies: Counter[str] = Counter()
broken: set[int] = set()


@durable.step(retries=1, interval_seconds=60.0)
def square(x: int) -> int:
    bodies[f"square:{x}"] += 1
    if x in broken:
        raise ValueError(f"square {x} broke")
    return x * x


@durable.step()
def total(values: list[int]) -> list[int]:
    bodies["total"] += 1
    return values


@app.task(shared=False)
def on_error(task_id: str) -> None:
    bodies["errback"] += 1


@pytest.fixture
def kit(durable_testkit: Callable[..., DurableTestKit]) -> DurableTestKit:
    bodies.clear()
    broken.clear()
    return durable_testkit(durable)


def test_the_callback_gets_outputs_in_member_order_once(kit: DurableTestKit) -> None:
    h = durable.chord([square.s(x) for x in (3, 1, 2)], total.s()).start()
    assert h.get_result(timeout=1) == [9, 1, 4]
    assert bodies == {"square:3": 1, "square:1": 1, "square:2": 1, "total": 1}
    steps = durable.list_workflow_steps(h.workflow_id)
    assert [(s.stage, s.member) for s in steps] == [(0, 0), (0, 1), (0, 2), (1, 0)]


def test_crashes_after_every_member_checkpoint_then_recovery(kit: DurableTestKit) -> None:
    """The member that completed the header died before publishing the callback."""
    with kit.crash_after(square, times=3):
        h = durable.chord([square.s(x) for x in range(3)], total.s()).start()
    assert h.get_status().status == WorkflowStatusString.PENDING
    assert bodies["total"] == 0
    kit.recover()
    assert h.get_result(timeout=1) == [0, 1, 4]
    assert bodies == {"square:0": 1, "square:1": 1, "square:2": 1, "total": 1}


def test_a_duplicate_delivery_of_a_finished_member_runs_nothing(kit: DurableTestKit) -> None:
    h = durable.chord([square.s(5), square.s(6)], total.s()).start()
    assert h.get_result(timeout=1) == [25, 36]
    durable.republish(durable.store.get_workflow(h.workflow_id))  # nothing open: no-op
    record = durable.store.get_workflow(h.workflow_id)
    assert record is not None
    step = durable.store.load_steps(h.workflow_id)[0]
    durable.send_task(
        square.name, [5], {}, task_id=step.task_id,
        headers={"durable_workflow": h.workflow_id, "durable_step": 0,
                 "durable_canvas": [0, 0, 2, 1, 0]},
    )  # fmt: skip
    assert bodies == {"square:5": 1, "square:6": 1, "total": 1}


def test_a_failed_member_ends_it_errback_once_and_resume_reruns_what_did_not_finish(
    kit: DurableTestKit,
) -> None:
    """The kit runs messages as they come, skipping time: member 2 exhausts its retries
    before member 3's message is taken, so member 3 is never started."""
    broken.add(2)
    canvas = durable.chord([square.s(x) for x in (1, 2, 3)], total.s())
    h = canvas.start(link_error=on_error.s())
    with pytest.raises(MaxStepRetriesExceeded):
        h.get_result(timeout=1)
    assert bodies == {"square:1": 1, "square:2": 2, "errback": 1}

    broken.clear()
    assert durable.resume_workflow(h.workflow_id).get_result(timeout=1) == [1, 4, 9]
    assert bodies == {"square:1": 1, "square:2": 3, "square:3": 1, "errback": 1, "total": 1}
    (earlier,) = durable.list_workflow_steps(h.workflow_id)[1].history
    assert [str(e) for e in earlier.errors] == ["square 2 broke"] * 2


def test_a_chains_errback_on_every_task_is_sent_once(kit: DurableTestKit) -> None:
    """Celery puts a chain's errback on each of its tasks: the canvas keeps it once."""
    broken.add(4)
    canvas = chain(square.s(2), group(square.s(), square.s()), total.s())
    result = canvas.on_error(on_error.s()).apply_async()
    handle = durable.retrieve_workflow(result.id)
    with pytest.raises(MaxStepRetriesExceeded):
        handle.get_result(timeout=1)
    assert bodies["errback"] == 1
    assert bodies["total"] == 0


@app.task(shared=False)
def plain_double(x: int) -> int:
    bodies[f"plain_double:{x}"] += 1
    return 2 * x


def test_a_plain_group_is_one_canvas_under_its_group_id(kit: DurableTestKit) -> None:
    """``group(...).apply_async()`` of durable steps (a chain among them): recorded whole
    under ``result.id``, each member once, outputs in member order."""
    result = group(square.s(3), chain(square.s(1), square.s()), square.s(2)).apply_async()
    assert result.get(timeout=1) == [9, 1, 4]
    handle = durable.retrieve_workflow(result.id)
    assert handle.get_result(timeout=1) == [9, 1, 4]
    steps = durable.list_workflow_steps(result.id)
    assert [(s.stage, s.member) for s in steps] == [(0, 0), (0, 1), (0, 2)]
    assert bodies == {"square:3": 1, "square:1": 2, "square:2": 1}  # square(1), square(1)


def test_a_plain_groups_result_pickles_and_is_rebuilt_from_its_id(kit: DurableTestKit) -> None:
    """The app's GroupResult class is the library's subclass: a result still pickles
    (Celery rebuilds it through the app) and ``GroupResult.restore`` is untouched."""
    result = group(square.s(x) for x in range(3)).apply_async()
    again = pickle.loads(pickle.dumps(result))
    assert again.id == result.id and again.get(timeout=1) == [0, 1, 4]
    assert sum(bodies.values()) == 3


def test_a_plain_group_with_a_plain_task_starts_each_durable_member_alone(
    kit: DurableTestKit,
) -> None:
    """Celery's own group then (the plain task was published as Celery does): each
    durable member its own workflow, as outside a group; nothing under the group id."""
    result = group(square.s(2), plain_double.s(5), square.s(3)).apply_async()
    square_ids = [result.results[0].id, result.results[2].id]
    assert [durable.retrieve_workflow(i).get_result(timeout=1) for i in square_ids] == [4, 9]
    assert durable.get_workflow_status(result.id) is None
    assert bodies["square:2"] == 1 and bodies["square:3"] == 1
