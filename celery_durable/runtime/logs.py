"""``durable.logger``: log records carry the workflow id and the step name."""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from typing import Any

from .context import current_workflow, step_name


class DurableLoggerAdapter(logging.LoggerAdapter):  # type: ignore[type-arg]
    """Adds ``workflow_id`` and ``step`` to every record's extra."""

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        ctx = current_workflow()
        extra = dict(kwargs.get("extra") or {})
        extra.setdefault("workflow_id", ctx.workflow_id if ctx else None)
        extra.setdefault("step", step_name.get())
        kwargs["extra"] = extra
        return msg, kwargs


def make_logger(name: str = "celery_durable.user") -> DurableLoggerAdapter:
    return DurableLoggerAdapter(logging.getLogger(name), {})
