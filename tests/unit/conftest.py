"""Fixtures for in-process tests: a Durable on a fresh Celery app, closed afterwards."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from celery import Celery

from celery_durable import Durable
from tests.unit.helpers import close, uid


@pytest.fixture
def make_durable() -> Iterator[Callable[[str], Durable]]:
    """Factory: a Durable on a fresh Celery app (in-memory broker, never consumed)."""
    made: list[Durable] = []

    def make(url: str) -> Durable:
        app = Celery(uid("t"), broker="memory://")
        made.append(Durable(app, database_url=url, heartbeat_interval=0.2))
        return made[-1]

    yield make
    for durable in made:
        close(durable)


@pytest.fixture
def durable(make_durable: Callable[[str], Durable], db_url: str) -> Durable:
    return make_durable(db_url)
