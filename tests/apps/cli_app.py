"""The app of the CLI tests; the fixture points DURABLE_TEST_DB_URL and DURABLE_TEST_QUEUE
at a database and a queue of its own while importing it (and in its subprocesses)."""

from __future__ import annotations

from celery_durable.errors import MaxStepRetriesExceeded

from .common import make_app

app, durable = make_app("cli_app")


class Refused(Exception):
    """A step's error (module level, so it is rebuilt from the store as itself)."""


@durable.step()
def double(x: int) -> int:
    return 2 * x


@durable.step(retries=1, interval_seconds=0.01)
def refuse(x: int) -> None:
    raise Refused(f"refused {x}")


@durable.workflow()
def compute(x: int) -> dict[str, object]:
    a = double(x)
    b = double(a)
    try:
        refuse(b)
    except MaxStepRetriesExceeded as exc:
        return {"a": a, "b": b, "errors": len(exc.errors)}
    return {"a": a, "b": b}


@durable.workflow()
def failing(x: int) -> None:
    double(x)
    raise Refused(f"workflow refused {x}")
