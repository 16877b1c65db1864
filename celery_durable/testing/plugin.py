"""The pytest plugin of ``celery_durable.testing`` (entry point ``pytest11``).

It only adds fixtures; nothing changes for a test that does not ask for them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ..integration.durable import Durable
from . import DurableTestKit


@pytest.fixture
def durable_testkit() -> Iterator[Callable[..., DurableTestKit]]:
    """``kit = durable_testkit(durable)``: your Durable on an in-memory store, messages run
    in this process, time skipping every wait (see ``DurableTestKit``); undone after the
    test. Keyword arguments go to ``DurableTestKit`` (``store=``, ``clock=``)."""
    kits: list[DurableTestKit] = []

    def make(durable: Durable, **options: Any) -> DurableTestKit:
        kits.append(DurableTestKit(durable, **options).start())
        return kits[-1]

    yield make
    for kit in reversed(kits):
        kit.stop()
