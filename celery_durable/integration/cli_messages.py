"""``celery -A proj durable send|events|messages``: messages and events from a shell.

Registered on the ``durable`` group of cli.py (which imports this module last).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import click
from celery.bin.base import CeleryCommand, CeleryOption

from ..runtime.messages import MessageRecord
from .cli import durable, emit, existing, get_durable, json_option, shorten, show_value, table


def _when(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _message(raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="'--json'") from exc


@durable.command(cls=CeleryCommand)
@click.argument("workflow_id")
@click.option("--topic", cls=CeleryOption, help_group="Send Options", help="The recv topic.")
@click.option(
    "--json",
    "raw",
    cls=CeleryOption,
    required=True,
    help_group="Send Options",
    help="The message, as JSON.",
)
@click.option(
    "--idempotency-key",
    cls=CeleryOption,
    help_group="Send Options",
    help="A repeated key is a no-op (e.g. a webhook's event id).",
)
@click.pass_context
def send(
    ctx: click.Context, workflow_id: str, topic: str | None, raw: str, idempotency_key: str | None
) -> None:
    """Send a message (JSON) to a workflow; durable.recv(topic) receives it."""
    get_durable(ctx).send(workflow_id, _message(raw), topic=topic, idempotency_key=idempotency_key)
    click.echo(f"sent to {workflow_id}" + (f" on topic {topic!r}" if topic else ""))


@durable.command(cls=CeleryCommand)
@click.argument("workflow_id")
@json_option
@click.pass_context
def events(ctx: click.Context, workflow_id: str, as_json: bool) -> None:
    """List a workflow's events (durable.set_event): key and latest value."""
    d = get_durable(ctx)
    existing(d, workflow_id)
    found = d.list_workflow_events(workflow_id)

    def human() -> str:
        if not found:
            return "no events"
        return table(("KEY", "VALUE"), [(k, shorten(show_value(v))) for k, v in found.items()])

    emit(as_json, found, human)


def _row(m: MessageRecord) -> tuple[str, ...]:
    return (
        str(m.message_id),
        m.topic or "-",
        shorten(m.message),
        m.idempotency_key or "-",
        _when(m.created_at_ms),
        _when(m.consumed_at_ms),
    )


@durable.command(cls=CeleryCommand)
@click.argument("workflow_id")
@click.option(
    "--all",
    "include_consumed",
    cls=CeleryOption,
    is_flag=True,
    help_group="Filter Options",
    help="Also the messages already received.",
)
@json_option
@click.pass_context
def messages(ctx: click.Context, workflow_id: str, include_consumed: bool, as_json: bool) -> None:
    """List the messages waiting for a workflow, in send order."""
    d = get_durable(ctx)
    existing(d, workflow_id)
    found = d.list_workflow_messages(workflow_id, include_consumed=include_consumed)

    def human() -> str:
        if not found:
            return "no messages waiting"
        headers = ("ID", "TOPIC", "MESSAGE", "IDEMPOTENCY KEY", "SENT (UTC)", "RECEIVED (UTC)")
        return table(headers, [_row(m) for m in found])

    emit(as_json, found, human)
