"""The ``durable_*`` Celery settings, read with ``app.conf.get`` and validated by pydantic."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..errors import ConfigurationError

PREFIX = "durable_"


class DurableSettings(BaseModel):
    """Every setting, its default and its bounds; Django users write CELERY_DURABLE_<NAME>."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    database_url: str | None = None
    serializer: str = Field(default="json", pattern="^(json|pickle)$")
    auto_migrate: bool = True
    pool_size: int = Field(default=5, ge=1)
    db_retry_timeout: float = Field(default=60.0, gt=0)
    executor_timeout: float = Field(default=15.0, gt=0)
    heartbeat_interval: float = Field(default=2.0, gt=0)
    max_inline_retry_wait: float = Field(default=5.0, ge=0)
    default_max_recovery_attempts: int | None = Field(default=100, ge=0)
    result_poll_interval: float = Field(default=0.5, gt=0)
    recovery_interval: float | None = Field(default=5.0, ge=0)
    recovery_batch_size: int = Field(default=500, ge=1)
    recovery_queue: str | None = None
    enqueue_timeout: float = Field(default=30.0, gt=0)
    store_results: bool = True  # durable tasks' Celery results come from the store alone
    # retention: ended workflows older than this are deleted by beat's gc (None or 0: never)
    retention_seconds: float | None = Field(default=30 * 24 * 3600.0, ge=0)
    gc_interval: float = Field(default=3600.0, gt=0)
    gc_batch_size: int = Field(default=500, ge=1)
    # the dashboard (celery_durable.dashboard)
    dashboard_token: str | None = Field(default=None, min_length=16)
    dashboard_read_only: bool = False
    # flow control: each worker's admission pass, and beat's schedule check (seconds)
    admission_interval: float = Field(default=0.5, gt=0)
    schedule_interval: float = Field(default=1.0, gt=0)

    @model_validator(mode="after")
    def _heartbeat_well_under_timeout(self) -> DurableSettings:
        if self.heartbeat_interval * 3 > self.executor_timeout:
            raise ValueError(
                f"durable_heartbeat_interval ({self.heartbeat_interval}s) must be at most a third "
                f"of durable_executor_timeout ({self.executor_timeout}s), or live workers "
                "would look dead"
            )
        return self


def _set_to_none(conf: Any, key: str) -> bool:
    """Did the user write ``key = None`` (rather than leave it out)?"""
    try:
        return key in conf
    except TypeError:  # a plain object standing for a config
        return False


def read_settings(conf: Any, overrides: dict[str, Any]) -> DurableSettings:
    """Collect ``durable_*`` keys from a Celery config (plus explicit overrides) and validate."""
    values: dict[str, Any] = {}
    for name, spec in DurableSettings.model_fields.items():
        value = conf.get(PREFIX + name, None)
        if value is not None:
            values[name] = value
        elif spec.default is not None and _set_to_none(conf, PREFIX + name):
            values[name] = None  # "None: never", as the setting's documentation says
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return DurableSettings(**values)
    except ValidationError as exc:
        raise ConfigurationError(f"invalid durable settings: {exc}") from exc
