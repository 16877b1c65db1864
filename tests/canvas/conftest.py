"""Workers shared by the canvas tests: one on the session queue, one on the second queue
(``canvas_app.OTHER_QUEUE``), started once for the package (tests that kill workers start
their own, on a queue of their own).

The canvas app is imported inside the fixtures: this file loads before the root conftest
has put the session's database and queue in the environment."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import WorkerProcess
from tests.recovery.helpers import lose_messages, session_queue

APP = "tests.apps.canvas_app"


@pytest.fixture(scope="package")
def two_workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[WorkerProcess]]:
    from tests.apps import canvas_app as ca

    ca.setup()
    for queue in (session_queue(), ca.OTHER_QUEUE):
        lose_messages(queue)
    logs = tmp_path_factory.mktemp("canvas")
    procs = [
        WorkerProcess(APP, logs, name="wa", concurrency=3),
        WorkerProcess(APP, logs, name="wb", concurrency=3, queues=ca.OTHER_QUEUE),
    ]
    for proc in procs:
        proc.start()
    yield procs
    for proc in procs:
        proc.kill()  # nothing of theirs is needed after the tests: no warm shutdown to wait
