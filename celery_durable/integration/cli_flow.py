"""``celery -A proj durable queues|schedules``: durable queues and schedules for operators.

Registered on the ``durable`` group of cli.py (which imports this module last).
"""

from __future__ import annotations

import click
from celery.bin.base import CeleryCommand

from .cli import durable, emit, get_durable, json_option, table, when


@durable.command(cls=CeleryCommand)
@json_option
@click.pass_context
def queues(ctx: click.Context, as_json: bool) -> None:
    """Per declared durable queue: running, waiting, the oldest waiting one's age, and
    starts in the limiter's current window (of its limit)."""
    found = get_durable(ctx)
    limits = {q.name: q.spec for q in found.declared_queues()}
    now_ms = found.runtime.clock.now_ms()
    stats = found.queue_stats()
    rows = []
    data = []
    for s in stats:
        spec = limits[s.queue]
        age = None if s.oldest_waiting_ms is None else (now_ms - s.oldest_waiting_ms) / 1000
        window = (
            f"{s.window_starts}/{spec.limiter[0]} per {spec.limiter[1]:g}s" if spec.limiter else "-"
        )
        conc = "-" if spec.concurrency is None else str(spec.concurrency)
        rows.append(
            [
                s.queue,
                f"{s.running}/{conc}",
                str(s.waiting),
                "-" if age is None else f"{age:.1f}s",
                window,
            ]
        )
        data.append(
            {"queue": s.queue, "running": s.running, "concurrency": spec.concurrency,
             "waiting": s.waiting, "oldest_waiting_seconds": age,
             "window_starts": s.window_starts, "limiter": spec.limiter}
        )  # fmt: skip
    headers = ["QUEUE", "RUNNING", "WAITING", "OLDEST WAITING", "RATE WINDOW"]
    emit(as_json, data, lambda: table(headers, rows) if rows else "no durable queues declared")


@durable.group(cls=click.Group, invoke_without_command=True)
@json_option
@click.pass_context
def schedules(ctx: click.Context, as_json: bool) -> None:
    """List the app's schedules with their last and next tick; ``pause NAME`` and
    ``resume NAME`` stop and restart a schedule's runs (state kept in the store)."""
    if ctx.invoked_subcommand is not None:
        return
    found = get_durable(ctx).list_schedules()
    rows = [
        [s.name, s.cron, s.workflow, "paused" if s.paused else "active",
         when(s.last_tick), when(s.next_tick)]
        for s in found
    ]  # fmt: skip
    headers = ["SCHEDULE", "CRON", "WORKFLOW", "STATE", "LAST TICK", "NEXT TICK"]
    emit(as_json, found, lambda: table(headers, rows) if rows else "no schedules declared")


@schedules.command(cls=CeleryCommand)
@click.argument("name")
@click.pass_context
def pause(ctx: click.Context, name: str) -> None:
    """Start no run for the schedule's ticks (they are not backfilled on resume)."""
    _known(ctx, name)
    get_durable(ctx).pause_schedule(name)
    click.echo(f"schedule {name} paused")


@schedules.command(cls=CeleryCommand)
@click.argument("name")
@click.pass_context
def resume(ctx: click.Context, name: str) -> None:
    """Start runs again from the next tick."""
    _known(ctx, name)
    get_durable(ctx).resume_schedule(name)
    click.echo(f"schedule {name} resumed")


def _known(ctx: click.Context, name: str) -> None:
    names = [s.name for s in get_durable(ctx).list_schedules()]
    if name not in names:
        raise click.UsageError(f"no schedule named {name!r} (known: {', '.join(names) or '-'})")
