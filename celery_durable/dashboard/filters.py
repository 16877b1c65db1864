"""Links: a listing's filter and page position, to and from a URL's query (and a form's
fields), and a workflow's page."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

from starlette.requests import Request

from ..types import PageCursor, WorkflowFilter, WorkflowState

#: the query parameters of a filter, in the order the form shows them
FIELDS = ("status", "name", "queue", "id_prefix", "parent", "executor", "created_after",
          "created_before")  # fmt: skip


class BadFilter(ValueError):
    """A filter value that cannot be read (shown to the user, not a server error)."""


def _time(value: str, field: str) -> int | None:
    """``2024-05-01T12:00`` (an ``<input type=datetime-local>``, read as UTC) or ISO 8601."""
    if not value:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError as exc:
        raise BadFilter(f"{field}: not a date and time ({value!r})") from exc
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


def read_filter(params: Mapping[str, Any]) -> WorkflowFilter:
    def text(key: str) -> str | None:
        value = params.get(key)
        return value.strip() or None if isinstance(value, str) else None

    status = text("status")
    if status is not None and status not in WorkflowState.__members__:
        raise BadFilter(f"status: unknown status {status!r}")
    return WorkflowFilter(
        statuses=(status,) if status else (),
        name=text("name"),
        queue=text("queue"),
        id_prefix=text("id_prefix"),
        parent_workflow_id=text("parent"),
        executor_id=text("executor"),
        created_after_ms=_time(text("created_after") or "", "created after"),
        created_before_ms=_time(text("created_before") or "", "created before"),
    )


def read_cursor(params: Mapping[str, Any]) -> PageCursor | None:
    at, workflow_id = params.get("after_ms"), params.get("after_id")
    if not at or workflow_id is None:
        return None
    try:
        return PageCursor(int(at), str(workflow_id))
    except ValueError as exc:
        raise BadFilter("after_ms: not a number") from exc


def form_values(params: Mapping[str, Any]) -> dict[str, str]:
    """The filter's fields as given (to refill the form and carry into links and actions)."""
    return {k: str(params[k]).strip() for k in FIELDS if str(params.get(k) or "").strip()}


def query(values: Mapping[str, str], **extra: Any) -> str:
    """A query string of ``values`` plus ``extra`` (None values left out)."""
    merged = {**values, **{k: v for k, v in extra.items() if v is not None}}
    return "?" + urlencode(merged) if merged else ""


def workflow_url(request: Request, workflow_id: str) -> str:
    """A workflow's page; the id is quoted whole (ids may hold '/', '?' or '#')."""
    return f"{request.url_for('workflows')}workflows/{quote(workflow_id, safe='')}"
