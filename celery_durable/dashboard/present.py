"""How stored values look on a page: decoded inputs and outputs, errors taken apart (type,
message, attributes, traceback text, cause), times and durations. Jinja escapes every
string these return; nothing here builds HTML."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ..integration.cli import exception_type, to_jsonable
from ..runtime.runtime import Runtime
from ..serialization import NESTED_ERROR_KEY as EXC_KEY

SHORT = 160  # characters of an output shown before "more"
NONE = "-"


@dataclass(frozen=True)
class ErrorView:
    type: str
    message: str
    attributes: dict[str, Any] = field(default_factory=dict)
    traceback: str | None = None
    cause: ErrorView | None = None


def pretty(value: Any) -> str:
    return json.dumps(to_jsonable(value), indent=2, ensure_ascii=False, sort_keys=False)


def decoded(runtime: Runtime, text: str | None) -> str:
    """A stored value as indented JSON; text that does not decode is shown as it is."""
    if text is None:
        return "null"
    try:
        return pretty(runtime.serializer.loads(text))
    except Exception:
        return text


def shorten(text: str, width: int = SHORT) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def _attribute(value: Any) -> str:
    """An attribute as one line; a nested error (MaxStepRetriesExceeded.errors holds
    them) as its type and message only: its own page shows the rest."""
    if isinstance(value, dict) and isinstance(value.get(EXC_KEY), dict):
        inner = value[EXC_KEY]
        return f"{str(inner.get('type', '?')).replace(':', '.')}: {inner.get('message', '')}"
    if isinstance(value, list):
        return "[" + ", ".join(_attribute(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False, default=repr)


def _from_json(data: dict[str, Any]) -> ErrorView:
    cause = data.get("cause")
    attrs = data.get("attrs")
    return ErrorView(
        type=str(data.get("type", "?")).replace(":", "."),
        message=str(data.get("message", "")),
        attributes={k: _attribute(v) for k, v in attrs.items()} if isinstance(attrs, dict) else {},
        traceback=data.get("traceback") if isinstance(data.get("traceback"), str) else None,
        cause=_from_json(cause) if isinstance(cause, dict) else None,
    )


def error_view(runtime: Runtime, text: str | None) -> ErrorView | None:
    """A stored error as recorded (read without importing its class), or decoded when it
    was pickled (only with the pickle serializer)."""
    if not text:
        return None
    if text.lstrip().startswith("{"):
        try:
            data = runtime.serializer.codec.loads(text)
        except Exception:
            return ErrorView("unreadable error", text)
        if isinstance(data, dict):
            return _from_json(data)
    try:
        exc = runtime.serializer.loads_exception(text)
    except Exception as problem:
        return ErrorView(type(problem).__name__, str(problem))
    attrs = {k: repr(v) for k, v in vars(exc).items() if not k.startswith("__")}
    return ErrorView(exception_type(exc), str(exc), attrs)


def when(ms: int | None) -> str:
    if ms is None:
        return NONE
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def duration(seconds: float | None) -> str:
    if seconds is None:
        return NONE
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    if seconds < 172_800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def span(start_ms: int | None, end_ms: int | None) -> str:
    if start_ms is None or end_ms is None:
        return NONE
    return duration((end_ms - start_ms) / 1000)


def ago(ms: int | None, now_ms: int) -> str:
    return NONE if ms is None else duration(max(0, now_ms - ms) / 1000) + " ago"
