"""Step retry policy (DBOS style): pure functions, no I/O."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .errors import ConfigurationError, MaxStepRetriesExceeded


class RetryPolicy(BaseModel):
    """``retries`` retries after the first attempt; delay k = interval * backoff**(k-1), capped."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    retries: int = Field(default=0, ge=0)
    interval_seconds: float = Field(default=1.0, ge=0)
    backoff_rate: float = Field(default=2.0, ge=1.0)
    max_interval_seconds: float = Field(default=3600.0, ge=0)
    jitter: float = Field(default=0.0, ge=0, le=1)
    dont_retry_on: tuple[type[BaseException], ...] = ()
    #: ``should_retry(exc) -> bool``: False ends the step at once, as ``dont_retry_on`` does
    should_retry: Callable[[BaseException], bool] | None = None

    @field_validator("dont_retry_on", mode="before")
    @classmethod
    def _as_tuple(cls, value: object) -> object:
        if isinstance(value, type):
            value = (value,)
        if isinstance(value, list | tuple):
            for item in value:
                if not (isinstance(item, type) and issubclass(item, BaseException)):
                    raise ValueError(f"dont_retry_on takes exception classes, got {item!r}")
            return tuple(value)
        return value

    @property
    def max_attempts(self) -> int:
        return self.retries + 1

    def delay(self, retry: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before retry number ``retry`` (1-based)."""
        return retry_delay(
            retry,
            self.interval_seconds,
            self.backoff_rate,
            self.max_interval_seconds,
            self.jitter,
            rng,
        )

    def is_final(self, exc: BaseException) -> bool:
        """An error that ends the step at once, unwrapped: ``dont_retry_on`` or refused by
        ``should_retry``."""
        if self.dont_retry_on and isinstance(exc, self.dont_retry_on):
            return True
        return self.should_retry is not None and not self.should_retry(exc)

    def retries_after(self, exc: BaseException, attempt: int) -> bool:
        """Whether attempt ``attempt`` (0-based) failing with ``exc`` is followed by another."""
        return not self.is_final(exc) and attempt + 1 < self.max_attempts

    def decide(
        self,
        step_name: str,
        exc: Exception,
        attempt: int,
        errors: Callable[[], Sequence[BaseException]],
    ) -> Retry | Fail:
        """What follows attempt ``attempt`` (0-based) failing with ``exc``: another attempt
        after a delay, or the error the step ends with. ``errors()`` gives every attempt's
        error so far, this one last; it is called only when retries are exhausted.

        A ``dont_retry_on`` error (or one ``should_retry`` refuses), or any error of a step
        without retries, ends the step as it is; exhausted retries end it with
        ``MaxStepRetriesExceeded`` carrying them all.
        """
        if self.retries_after(exc, attempt):
            return Retry(self.delay(attempt + 1))
        if self.retries == 0 or self.is_final(exc):
            return Fail(exc)
        return Fail(MaxStepRetriesExceeded(step_name, self.retries, errors()))


@dataclass(frozen=True)
class Retry:
    """Run the step again after ``delay`` seconds."""

    delay: float


@dataclass(frozen=True)
class Fail:
    """The step ends: it raises ``error`` (the attempt's own, or MaxStepRetriesExceeded)."""

    error: Exception


def retry_delay(
    retry: int,
    interval_seconds: float,
    backoff_rate: float,
    max_interval_seconds: float,
    jitter: float = 0.0,
    rng: random.Random | None = None,
) -> float:
    """``min(interval * backoff ** (retry - 1), max_interval)``, then +/- ``jitter`` fraction."""
    if retry < 1:
        raise ValueError("retry numbers start at 1")
    base = min(interval_seconds * backoff_rate ** (retry - 1), max_interval_seconds)
    if jitter:
        spread = (rng or random).uniform(-jitter, jitter)
        base = max(0.0, base * (1.0 + spread))
    return base


def make_policy(**options: object) -> RetryPolicy:
    """Build a policy from decorator options, turning validation errors into ConfigurationError."""
    try:
        return RetryPolicy.model_validate(options)
    except ValueError as exc:  # pydantic.ValidationError is a ValueError
        raise ConfigurationError(f"invalid step retry options: {exc}") from exc
