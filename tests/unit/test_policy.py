"""RetryPolicy: attempt counts, the DBOS-style delay formula, jitter and option validation."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest
from celery import Celery
from hypothesis import given
from hypothesis import strategies as st

from celery_durable import Durable, RetryPolicy
from celery_durable.errors import ConfigurationError
from celery_durable.policy import make_policy, retry_delay


class Declined(LookupError):
    """A business error: subclasses of it must not be retried either."""


class HardDeclined(Declined):
    pass


intervals = st.floats(min_value=0.0, max_value=100.0, allow_nan=False)
backoffs = st.floats(min_value=1.0, max_value=10.0, allow_nan=False)
caps = st.floats(min_value=0.0, max_value=10_000.0, allow_nan=False)
retry_numbers = st.integers(min_value=1, max_value=30)


def test_defaults_match_the_spec() -> None:
    policy = RetryPolicy()
    assert (policy.retries, policy.max_attempts) == (0, 1)
    assert (policy.interval_seconds, policy.backoff_rate) == (1.0, 2.0)
    assert policy.max_interval_seconds == 3600.0
    assert policy.jitter == 0.0


@pytest.mark.parametrize("retries", [0, 1, 3, 10])
def test_max_attempts_is_retries_plus_one(retries: int) -> None:
    policy = make_policy(retries=retries)
    assert policy.max_attempts == retries + 1
    decisions = [policy.retries_after(ValueError("x"), attempt) for attempt in range(retries + 1)]
    assert decisions == [True] * retries + [False]


@given(retry=retry_numbers, interval=intervals, backoff=backoffs, cap=caps)
def test_delay_is_capped_exponential(
    retry: int, interval: float, backoff: float, cap: float
) -> None:
    policy = make_policy(
        retries=retry, interval_seconds=interval, backoff_rate=backoff, max_interval_seconds=cap
    )
    expected = min(interval * backoff ** (retry - 1), cap)
    assert math.isclose(policy.delay(retry), expected, rel_tol=1e-12, abs_tol=1e-12)
    assert policy.delay(retry) <= cap


@given(interval=intervals, backoff=backoffs)
def test_delays_never_shrink_from_one_retry_to_the_next(interval: float, backoff: float) -> None:
    policy = make_policy(retries=10, interval_seconds=interval, backoff_rate=backoff)
    delays = [policy.delay(k) for k in range(1, 11)]
    assert delays == sorted(delays)


def test_first_delays_with_the_documented_example() -> None:
    policy = make_policy(retries=5, interval_seconds=2.0, backoff_rate=2.0, max_interval_seconds=10)
    assert [policy.delay(k) for k in range(1, 6)] == [2.0, 4.0, 8.0, 10.0, 10.0]


@given(
    retry=retry_numbers,
    interval=intervals,
    backoff=backoffs,
    jitter=st.floats(min_value=0.0, max_value=1.0, allow_nan=False),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_jitter_stays_within_its_fraction(
    retry: int, interval: float, backoff: float, jitter: float, seed: int
) -> None:
    base = min(interval * backoff ** (retry - 1), 3600.0)
    delay = retry_delay(retry, interval, backoff, 3600.0, jitter, random.Random(seed))
    assert delay >= 0.0
    assert base * (1 - jitter) - 1e-9 <= delay <= base * (1 + jitter) + 1e-9


def test_jitter_actually_varies_the_delay() -> None:
    policy = make_policy(retries=1, interval_seconds=10.0, jitter=0.5)
    rng = random.Random(7)
    delays = {policy.delay(1, rng) for _ in range(20)}
    assert len(delays) > 1
    assert all(5.0 <= d <= 15.0 for d in delays)


def test_retry_numbers_start_at_one() -> None:
    with pytest.raises(ValueError):
        retry_delay(0, 1.0, 2.0, 10.0)


@pytest.mark.parametrize("dont_retry_on", [Declined, (Declined,), [KeyError, Declined]])
def test_dont_retry_on_matches_the_class_and_its_subclasses(dont_retry_on: object) -> None:
    policy = make_policy(retries=5, dont_retry_on=dont_retry_on)
    assert not policy.retries_after(Declined("no"), 0)
    assert not policy.retries_after(HardDeclined("no"), 0)
    assert policy.retries_after(ValueError("transient"), 0)
    assert policy.retries_after(LookupError("the parent class is not listed"), 0)


@pytest.mark.parametrize(
    "options",
    [
        {"retries": -1},
        {"retries": 1.5},
        {"interval_seconds": -0.1},
        {"interval_seconds": float("nan")},
        {"backoff_rate": 0.5},
        {"max_interval_seconds": -1},
        {"jitter": -0.1},
        {"jitter": 1.5},
        {"dont_retry_on": int},
        {"dont_retry_on": ["ValueError"]},
        {"dont_retry_on": "ValueError"},
    ],
    ids=repr,
)
def test_invalid_options_raise_configuration_error(options: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError) as info:
        make_policy(**options)
    assert isinstance(info.value, ValueError)
    assert next(iter(options)) in str(info.value)


def test_step_decorator_rejects_invalid_options(tmp_path: Path) -> None:
    durable = Durable(Celery("t-policy"), database_url=f"sqlite:///{tmp_path}/unused.sqlite3")
    with pytest.raises(ConfigurationError):
        durable.step(retries=-2)
    with pytest.raises(ConfigurationError):
        durable.step(backoff_rate=0.1)


def test_policy_is_immutable() -> None:
    policy = make_policy(retries=2)
    with pytest.raises(ValueError):
        policy.retries = 3
