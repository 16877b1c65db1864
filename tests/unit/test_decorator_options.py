"""Decorator options: strict (a typo is an error), DBOS's spellings, one retry policy."""

from __future__ import annotations

from typing import Any

import pytest

from celery_durable import Durable, MaxStepRetriesExceeded, RetryPolicy
from tests.unit.helpers import Attempts, call_as, step, uid, workflow


@pytest.mark.parametrize("decorator", ["workflow", "step", "transaction"])
def test_an_unknown_option_is_a_type_error_naming_the_valid_ones(
    durable: Durable, decorator: str
) -> None:
    with pytest.raises(TypeError) as info:
        getattr(durable, decorator)(bogus=1)
    message = str(info.value)
    assert "'bogus'" in message and f"@durable.{decorator}()" in message
    assert "name" in message and "time_limit" in message  # its own and Celery's


@pytest.mark.parametrize("option", ["autoretry_for", "max_retries", "retry_backoff"])
def test_celerys_own_retry_options_are_refused_with_the_durable_way(
    durable: Durable, option: str
) -> None:
    with pytest.raises(TypeError, match="retries=, interval_seconds="):
        durable.step(**{option: (ValueError,)})


def nothing() -> None:
    return None


def test_celery_task_options_are_accepted(durable: Durable) -> None:
    task = durable.step(name=uid("tests.opt"), time_limit=30, soft_time_limit=20, rate_limit="5/s")(
        nothing
    )
    assert (task.time_limit, task.soft_time_limit, task.rate_limit) == (30, 20, "5/s")


def attempts_made(durable: Durable, **options: Any) -> int:
    body = Attempts(durable, failures=10)
    failing = step(durable, body, interval_seconds=0.0, **options)
    with pytest.raises((MaxStepRetriesExceeded, ValueError)):
        call_as(uid("id"), workflow(durable, lambda: failing()))
    return len(body.times)


def test_policy_and_dbos_spellings_give_the_same_attempts(durable: Durable) -> None:
    assert attempts_made(durable, retries=3) == 4
    assert attempts_made(durable, max_attempts=4) == 4
    assert attempts_made(durable, retries_allowed=True, max_attempts=4) == 4
    assert attempts_made(durable, retries_allowed=True) == 3  # DBOS's default max_attempts
    assert attempts_made(durable, retries_allowed=False, max_attempts=4) == 1
    assert attempts_made(durable, retries=0) == 1


def test_a_policy_object_gives_its_attempts(durable: Durable) -> None:
    body = Attempts(durable, failures=10)
    policy = RetryPolicy(retries=3, interval_seconds=0.0)
    failing = step(durable, body, policy=policy)
    with pytest.raises(MaxStepRetriesExceeded) as info:
        call_as(uid("id"), workflow(durable, lambda: failing()))
    assert len(body.times) == 4 and len(info.value.errors) == 4


@pytest.mark.parametrize(
    "options",
    [
        {"policy": RetryPolicy(retries=1), "retries": 2},
        {"retries": 2, "max_attempts": 4},
        {"policy": "three"},
        {"max_attempts": 0},
    ],
    ids=["policy-and-retries", "contradiction", "not-a-policy", "zero-attempts"],
)
def test_conflicting_retry_spellings_are_an_error(durable: Durable, options: Any) -> None:
    with pytest.raises(TypeError):
        durable.step(**options)


def test_should_retry_ends_a_step_at_once_unwrapped(durable: Durable) -> None:
    body = Attempts(durable, failures=10, exc_type=PermissionError)
    refusing = step(
        durable,
        body,
        retries=5,
        interval_seconds=0.0,
        should_retry=lambda exc: not isinstance(exc, PermissionError),
    )
    with pytest.raises(PermissionError):
        call_as(uid("id"), workflow(durable, lambda: refusing()))
    assert len(body.times) == 1


@pytest.mark.parametrize("decorator", ["workflow", "step", "transaction"])
def test_async_functions_are_refused_at_decoration(durable: Durable, decorator: str) -> None:
    async def fetch() -> int:
        return 1

    with pytest.raises(TypeError, match="async function"):
        getattr(durable, decorator)(name=uid("tests.async"))(fetch)
