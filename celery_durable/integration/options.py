"""Decorator options, checked when a function is decorated: each decorator takes its own,
DBOS's spellings of the retry policy, and Celery task options; anything else is a
``TypeError`` naming what is valid (a typo must not silently mean "one attempt")."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from celery import Task

from ..policy import RetryPolicy, make_policy

#: the DBOS-style retry options of steps and transactions
POLICY_OPTIONS = (
    "retries",
    "interval_seconds",
    "backoff_rate",
    "max_interval_seconds",
    "jitter",
    "dont_retry_on",
    "should_retry",
)
#: DBOS's own spellings: ``max_attempts == retries + 1``; ``retries_allowed=False`` is one
DBOS_OPTIONS = ("retries_allowed", "max_attempts")
DBOS_DEFAULT_MAX_ATTEMPTS = 3  # DBOS's, when retries_allowed=True names no max_attempts

#: Celery's own retry machinery: a durable step retries by its policy instead
CELERY_RETRY_OPTIONS = frozenset(
    {
        "autoretry_for",
        "dont_autoretry_for",
        "retry_kwargs",
        "retry_backoff",
        "retry_backoff_max",
        "retry_jitter",
        "max_retries",
        "default_retry_delay",
    }
)
_NOT_OPTIONS = {"Request", "Strategy", "abstract", "app", "from_config", "request_stack"}
#: what ``app.task(...)`` takes: Task attributes, routing, and the decorator's own
CELERY_TASK_OPTIONS = (
    frozenset(
        key
        for key, value in vars(Task).items()
        if not key.startswith("_")
        and not callable(value)
        and not isinstance(value, classmethod | staticmethod | property)
        and key not in _NOT_OPTIONS
    )
    | {"bind", "base", "shared", "filter", "lazy", "queue", "routing_key", "exchange", "backend"}
    | {"pydantic", "pydantic_strict", "pydantic_context", "pydantic_dump_kwargs"}
) - CELERY_RETRY_OPTIONS


def celery_options(
    decorator: str, options: Mapping[str, Any], own: Iterable[str]
) -> dict[str, Any]:
    """Check ``options`` (what the decorator did not take by name) are Celery task options."""
    for key in options:
        if key in CELERY_RETRY_OPTIONS:
            raise TypeError(
                f"@durable.{decorator}() does not take Celery's retry option {key!r}: durable "
                "steps retry by their own policy (retries=, interval_seconds=, backoff_rate=, "
                "dont_retry_on=, should_retry=; or policy=RetryPolicy(...))"
            )
        if key not in CELERY_TASK_OPTIONS:
            raise TypeError(
                f"@durable.{decorator}() got an unexpected option {key!r}; its own options are "
                f"{', '.join(sorted(own))}, besides Celery task options "
                f"({', '.join(sorted(CELERY_TASK_OPTIONS))})"
            )
    return dict(options)


def retry_policy(
    decorator: str,
    policy: RetryPolicy | None,
    given: Mapping[str, Any],
    retries_allowed: bool | None,
    max_attempts: int | None,
) -> RetryPolicy:
    """One policy from ``policy=``, the DBOS-style options (``given``: those passed), or
    DBOS's ``retries_allowed``/``max_attempts``; conflicting spellings are an error."""
    options = {k: v for k, v in given.items() if v is not None}
    if policy is not None:
        if options or retries_allowed is not None or max_attempts is not None:
            raise TypeError(
                f"@durable.{decorator}(): give policy=RetryPolicy(...) or the retry options "
                f"({', '.join(sorted(options)) or 'retries_allowed/max_attempts'}), not both"
            )
        if not isinstance(policy, RetryPolicy):
            raise TypeError(f"@durable.{decorator}(): policy= takes a RetryPolicy, got {policy!r}")
        return policy
    if retries_allowed is not None or max_attempts is not None:
        if max_attempts is not None and max_attempts < 1:
            raise TypeError(f"@durable.{decorator}(): max_attempts must be at least 1")
        attempts = max_attempts if max_attempts is not None else DBOS_DEFAULT_MAX_ATTEMPTS
        retries = attempts - 1 if retries_allowed is not False else 0
        if options.get("retries", retries) != retries:
            raise TypeError(
                f"@durable.{decorator}(): retries={options['retries']} contradicts "
                f"max_attempts={attempts} (max_attempts is retries + 1)"
            )
        options["retries"] = retries
    return make_policy(**options)
