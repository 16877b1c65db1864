"""Nested canvases in ``celery_durable.testing`` (in-memory store, messages run in-process):
a chain or a chord in a member's place runs as a child canvas; its end completes the
parent's member once, also after a crash between the two; failure and resume."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import pytest
from celery import chain, chord, group

from celery_durable import MaxStepRetriesExceeded, WorkflowStatusString
from celery_durable.errors import UnsupportedCanvasError
from celery_durable.runtime.nested import advance
from celery_durable.testing import DurableTestKit
from celery_durable.types import NESTED_STEP, nested_canvas_id
from tests.kit.test_canvas_kit import bodies as kit_bodies
from tests.kit.test_canvas_kit import durable, on_error

bodies: Counter[str] = Counter()
broken: set[int] = set()


@durable.step(retries=1, interval_seconds=60.0)
def cube(x: int) -> int:
    bodies[f"cube:{x}"] += 1
    if x in broken:
        raise ValueError(f"cube {x} broke")
    return x**3


@durable.step()
def plus_one(x: int) -> int:
    bodies[f"plus_one:{x}"] += 1
    return x + 1


@durable.step()
def collect(values: list[int]) -> list[int]:
    bodies[f"collect:{len(values)}"] += 1
    return values


@pytest.fixture
def kit(durable_testkit: Callable[..., DurableTestKit]) -> DurableTestKit:
    bodies.clear()
    kit_bodies.clear()
    broken.clear()
    return durable_testkit(durable)


def test_a_chain_in_a_group_is_one_member_whose_output_is_its_last_task(
    kit: DurableTestKit,
) -> None:
    h = durable.group(chain(cube.s(2), plus_one.s()), cube.s(3)).start(workflow_id="g1")
    assert h.get_result(timeout=1) == [9, 27]
    assert bodies == {"cube:2": 1, "plus_one:8": 1, "cube:3": 1}
    steps = durable.list_workflow_steps("g1")
    assert [(s.name, s.output) for s in steps] == [(NESTED_STEP, 9), (cube.name, 27)]
    assert durable.get_workflow_status("g1").name == f"canvas:{cube.name}"  # type: ignore[union-attr]
    child = durable.get_workflow_status(nested_canvas_id("g1", 0))
    assert child is not None
    assert (child.status, child.output, child.parent_workflow_id) == ("SUCCESS", 9, "g1")


def test_a_chord_in_a_chords_header_hands_its_callbacks_output_on(kit: DurableTestKit) -> None:
    inner = chord([cube.s(1), cube.s(2)], collect.s())
    h = durable.chord([inner, plus_one.s(3)], collect.s()).start()
    assert h.get_result(timeout=1) == [[1, 8], 4]
    assert bodies == {"cube:1": 1, "cube:2": 1, "plus_one:3": 1, "collect:2": 2}


def test_three_levels_and_a_nested_member_after_a_stage_gets_its_output(
    kit: DurableTestKit,
) -> None:
    deep = chord([chain(cube.s(), plus_one.s()), plus_one.s()], collect.s())
    canvas = chain(cube.s(2), group(deep, cube.s()), collect.s())
    result = canvas.apply_async()
    handle = durable.retrieve_workflow(result.id)
    assert handle.get_result(timeout=1) == [[513, 9], 512]
    assert bodies == {"cube:2": 1, "cube:8": 2, "plus_one:512": 1, "plus_one:8": 1, "collect:2": 2}
    child = nested_canvas_id(handle.workflow_id, 1)  # the chord, in stage 1
    assert durable.get_workflow_status(child).output == [513, 9]  # type: ignore[union-attr]
    grandchild = nested_canvas_id(child, 0)  # the chain, in the chord's header
    assert durable.get_workflow_status(grandchild).output == 513  # type: ignore[union-attr]


def test_a_crash_between_the_childs_end_and_the_parents_member_then_recovery(
    kit: DurableTestKit,
) -> None:
    """The last task of the nested chain died right after its checkpoint (which ended the
    child canvas), before the parent's member was completed: the sweep completes it."""
    with kit.crash_after(plus_one, times=1):
        h = durable.chord([chain(cube.s(2), plus_one.s()), cube.s(3)], collect.s()).start()
    assert durable.get_workflow_status(nested_canvas_id(h.workflow_id, 0)).status == "SUCCESS"  # type: ignore[union-attr]
    assert h.get_status().status == WorkflowStatusString.PENDING
    assert bodies["collect:2"] == 0
    kit.recover()
    assert h.get_result(timeout=1) == [9, 27]
    assert bodies == {"cube:2": 1, "plus_one:8": 1, "cube:3": 1, "collect:2": 1}


def test_a_failed_nested_member_fails_the_outer_canvas_errback_once_then_resume(
    kit: DurableTestKit,
) -> None:
    broken.add(4)
    canvas = durable.chord([chain(plus_one.s(3), cube.s()), cube.s(5)], collect.s())
    h = canvas.start(link_error=on_error.s())
    with pytest.raises(MaxStepRetriesExceeded):
        h.get_result(timeout=1)
    child = nested_canvas_id(h.workflow_id, 0)
    assert durable.get_workflow_status(child).status == "ERROR"  # type: ignore[union-attr]
    assert bodies["collect:2"] == 0
    assert kit_bodies["errback"] == 1

    broken.clear()
    assert durable.resume_workflow(h.workflow_id).get_result(timeout=1) == [64, 125]
    assert bodies == {"plus_one:3": 1, "cube:4": 3, "cube:5": 1, "collect:2": 1}
    assert kit_bodies["errback"] == 1
    (earlier,) = durable.list_workflow_steps(h.workflow_id)[0].history
    assert earlier.status == "ERROR"


def test_cancelling_the_outer_canvas_cancels_its_running_child(kit: DurableTestKit) -> None:
    with kit.hold(plus_one):
        h = durable.group(chain(cube.s(2), plus_one.s()), cube.s(3)).start()
        durable.cancel_workflow(h.workflow_id)
        child = durable.get_workflow_status(nested_canvas_id(h.workflow_id, 0))
        assert child is not None and child.status == "CANCELLED"
    assert bodies == {"cube:2": 1, "cube:3": 1}  # the held message ran nothing


def test_an_empty_group_is_still_refused() -> None:
    with pytest.raises(UnsupportedCanvasError, match="empty group"):
        durable.group(group(), cube.s(2))
    with pytest.raises(UnsupportedCanvasError, match="empty group"):
        durable.chord([chord([], collect.s()), cube.s(2)], collect.s())


def test_plain_chords_with_a_chain_and_with_a_chord_in_their_header(kit: DurableTestKit) -> None:
    """``chord(...).apply_async()``: the header's members are held until the last, then the
    whole canvas is recorded under the group id, a nested chord as one member."""
    result = chord([chain(cube.s(2), plus_one.s()), cube.s(3)], collect.s()).apply_async()
    assert durable.retrieve_workflow(result.parent.id).get_result(timeout=1) == [9, 27]
    inner = chord([cube.s(1), cube.s(2)], collect.s())
    result = chord([inner, plus_one.s(3)], collect.s()).apply_async()
    assert durable.retrieve_workflow(result.parent.id).get_result(timeout=1) == [[1, 8], 4]
    assert [s.name for s in durable.list_workflow_steps(result.parent.id)] == [
        NESTED_STEP, plus_one.name, collect.name,
    ]  # fmt: skip
    assert len(durable.list_workflows()) == 4  # two canvases, each with one child canvas


def test_a_childs_end_completes_the_parents_member_once(kit: DurableTestKit) -> None:
    """Two processes finding the same ended child (its last delivery and the sweep, say):
    only the first completes the parent's member and gets the next stage to publish."""
    with kit.crash_after(plus_one, times=1):
        h = durable.chord([chain(cube.s(2), plus_one.s()), cube.s(3)], collect.s()).start()
    child = durable.store.get_workflow(nested_canvas_id(h.workflow_id, 0))
    assert child is not None and child.status == WorkflowStatusString.SUCCESS
    first = advance(durable.runtime, child)
    second = advance(durable.runtime, child)
    assert [(wid, [s.name for s, _ in found.members]) for wid, found in first.stages] == [
        (h.workflow_id, [collect.name])
    ]
    assert (second.stages, second.failed) == ([], [])
    assert durable.list_workflow_steps(h.workflow_id)[0].output == 9


def test_a_failed_first_publish_leaves_neither_the_canvas_nor_its_child(
    kit: DurableTestKit, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broker_down(*args: object, **kwargs: object) -> None:
        raise ConnectionError("broker down")

    monkeypatch.setattr(durable, "send_task", broker_down)
    with pytest.raises(ConnectionError):
        durable.group(chain(cube.s(1), plus_one.s()), cube.s(2)).start(workflow_id="down")
    assert durable.store.get_workflow("down") is None
    assert durable.store.get_workflow(nested_canvas_id("down", 0)) is None
    assert bodies == {}


def test_a_fork_from_a_nested_member_runs_a_child_of_its_own(kit: DurableTestKit) -> None:
    h = durable.chord([cube.s(1), chain(cube.s(2), plus_one.s())], collect.s()).start()
    assert h.get_result(timeout=1) == [1, 9]
    fork = durable.fork_workflow(h.workflow_id, start_step=1)  # from the nested member
    assert fork.get_result(timeout=1) == [1, 9]
    assert bodies == {"cube:1": 1, "cube:2": 2, "plus_one:8": 2, "collect:2": 2}
    ids = [
        {s.task_id for s in durable.store.load_steps(nested_canvas_id(wid, 1)).values()}
        for wid in (h.workflow_id, fork.workflow_id)
    ]
    assert not ids[0] & ids[1]  # the fork's child tasks are tasks of their own
