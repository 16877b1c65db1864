"""Stores for the store tests: migrated, on both backends (``store``) or Postgres alone."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from celery_durable.store import Store, normalize_url, upgrade


def _migrated(url: str) -> Iterator[Store]:
    store = Store(normalize_url(url), retry_timeout=5.0)
    upgrade(store.engine)
    yield store
    store.dispose()


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    yield from _migrated(db_url)


@pytest.fixture
def pg_store(pg_url: str) -> Iterator[Store]:
    yield from _migrated(pg_url)
