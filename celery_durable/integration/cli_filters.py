"""Options shared by the CLI's commands: the workflow filter, durations and times."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import click
from celery.bin.base import CeleryOption

F = TypeVar("F", bound=Callable[..., Any])
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float:
    """``90``, ``45s``, ``30m``, ``12h``, ``7d``, ``2w`` (or a sum: ``1d12h``) in seconds."""
    cleaned = text.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", cleaned):
        return float(cleaned)
    parts = re.findall(r"(\d+(?:\.\d+)?)([smhdw])", cleaned)
    if not parts or "".join(n + u for n, u in parts) != cleaned:
        raise ValueError(f"not a duration: {text!r} (e.g. 45s, 30m, 12h, 7d, 2w)")
    return sum(float(n) * UNITS[u] for n, u in parts)


class Duration(click.ParamType[float]):
    name = "duration"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        if isinstance(value, int | float):
            return float(value)
        try:
            return parse_duration(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class Moment(click.ParamType[datetime]):
    """An ISO 8601 date and time; without a zone it is UTC."""

    name = "datetime"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            moment = datetime.fromisoformat(str(value))
        except ValueError:
            self.fail(f"not an ISO 8601 date and time: {value!r}", param, ctx)
        return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _option(name: str, flag: str, text: str, **kwargs: Any) -> Callable[[F], F]:
    return click.option(
        flag, name, cls=CeleryOption, help_group="Filter Options", help=text, **kwargs
    )


#: (keyword of ``list_workflows``, its option)
FILTERS = (
    ("queue", _option("queue", "--queue", "Queue the workflow was sent to.")),
    ("created_after", _option("created_after", "--created-after",
                              "Created at or after (ISO 8601, UTC).", type=Moment())),
    ("created_before", _option("created_before", "--created-before",
                               "Created before (ISO 8601, UTC).", type=Moment())),
    ("id_prefix", _option("id_prefix", "--id-prefix", "Workflow id starts with this.")),
    ("executor_id", _option("executor_id", "--executor",
                            "Run by this executor now (active workflows only).")),
    ("parent_workflow_id", _option("parent_workflow_id", "--parent",
                                   "Child workflows of this one.")),
)  # fmt: skip


def filter_options(fn: F) -> F:
    """``--queue --created-after --created-before --id-prefix --executor --parent``."""
    for _name, option in reversed(FILTERS):
        fn = option(fn)
    return fn


def given_filters(values: dict[str, Any]) -> dict[str, Any]:
    """The filter options the user gave, as ``list_workflows`` keyword arguments."""
    return {name: values[name] for name, _ in FILTERS if values.get(name) is not None}
