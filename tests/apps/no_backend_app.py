"""A Celery app with no result backend at all: durable results come from the store alone."""

from __future__ import annotations

from celery_durable.errors import MaxStepRetriesExceeded

from .common import make_app

app, durable = make_app("no_backend_app")
app.conf.result_backend = None


@durable.step()
def add_one(x: int) -> int:
    return x + 1


@durable.step(retries=1, interval_seconds=0.05)
def refuse(x: int) -> None:
    raise ValueError(f"refused {x}")


@durable.workflow()
def plus_two(x: int) -> int:
    return add_one(add_one(x))  # type: ignore[no-any-return]


__all__ = ["MaxStepRetriesExceeded", "app", "durable"]
