"""Plain Celery groups and chords: made of durable steps they start (the Producer bug), and
made of plain tasks they behave as Celery's own."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from celery import chord, group

from tests.apps import canvas_app as ca
from tests.conftest import WorkerProcess

APP = "tests.apps.canvas_app"


@pytest.fixture(scope="module")
def one_worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    ca.setup()
    proc = WorkerProcess(APP, tmp_path_factory.mktemp("plain"), concurrency=4).start()
    yield proc
    proc.stop(timeout=10)


def test_plain_group_of_durable_steps_starts_and_runs(one_worker: Any) -> None:
    """The bug: group(...).apply_async() raised 'Producer is not JSON serializable'."""
    result = group(ca.member.s(1), ca.member.s(2), ca.member.s(3)).apply_async()
    assert result.get(timeout=30) == [1, 4, 9]


def test_plain_chord_of_non_durable_tasks_is_celerys_own(one_worker: Any) -> None:
    result = chord([ca.plain_square.s(i) for i in range(4)], ca.plain_sum.s()).apply_async()
    assert result.get(timeout=30) == 14
    expected = {f"plain:{i}": 1 for i in range(4)}
    assert ca.effects("plain") == {**expected, "plain_sum": 1}
