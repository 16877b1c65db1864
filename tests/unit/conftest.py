"""Fixtures for in-process tests: a Durable on a fresh Celery app, closed afterwards."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from celery import Celery

from celery_durable import Durable
from celery_durable.store.memory import MemoryStore
from tests.unit.helpers import close, uid

MEMORY = "memory://"  # stands for a MemoryStore in make_durable


@pytest.fixture
def make_durable() -> Iterator[Callable[[str], Durable]]:
    """Factory: a Durable on a fresh Celery app (in-memory broker, never consumed)."""
    made: list[Durable] = []
    memory = MemoryStore()  # one per test: a second Durable of the test shares it

    def make(url: str) -> Durable:
        app = Celery(uid("t"), broker="memory://")
        if url == MEMORY:
            made.append(Durable(app, store=memory, heartbeat_interval=0.2))
        else:
            made.append(Durable(app, database_url=url, heartbeat_interval=0.2))
        return made[-1]

    yield make
    for durable in made:
        close(durable)


@pytest.fixture(params=[MEMORY, "postgres", "sqlite"])
def any_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The in-memory store first (the runtime's logic, no database), then both backends."""
    if request.param == "postgres":
        return os.environ["DURABLE_TEST_DB_URL"]
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'durable.sqlite3'}"
    return MEMORY


@pytest.fixture
def durable(make_durable: Callable[[str], Durable], any_url: str) -> Durable:
    return make_durable(any_url)
