"""The unit tests' fixtures (a Durable on the in-memory store, Postgres and SQLite)."""

from tests.unit.conftest import any_url, durable, make_durable  # noqa: F401
