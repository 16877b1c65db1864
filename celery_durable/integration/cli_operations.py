"""``celery -A proj durable gc|dashboard|metrics``: retention and the web dashboard.

Registered on the ``durable`` group of cli.py (which imports this module last). The
dashboard and metrics need the ``[dashboard]`` extra; without it they say so.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click
from celery.bin.base import CeleryCommand, CeleryOption

from ..types import TERMINAL_STATUSES
from .cli import durable, emit, get_durable, json_option
from .cli_filters import Duration

F = TypeVar("F", bound=Callable[..., Any])
EXTRA = "the dashboard needs its extra: pip install 'celery-durable[dashboard]'"


@durable.command(cls=CeleryCommand)
@click.option(
    "--older-than",
    cls=CeleryOption,
    type=Duration(),
    required=True,
    help_group="Retention Options",
    help="Delete workflows that ended longer ago than this (45s, 30m, 12h, 7d, 2w).",
)
@click.option(
    "--status",
    "statuses",
    cls=CeleryOption,
    multiple=True,
    type=click.Choice(sorted(TERMINAL_STATUSES), case_sensitive=False),
    help_group="Retention Options",
    help="Only workflows that ended in this status (repeatable; default: every end).",
)
@click.option(
    "--dry-run",
    cls=CeleryOption,
    is_flag=True,
    help_group="Retention Options",
    help="Count what would be deleted; delete nothing.",
)
@click.option(
    "--full-speed",
    cls=CeleryOption,
    is_flag=True,
    help_group="Retention Options",
    help="No pause between batches (by default each is followed by one three times as long).",
)
@json_option
@click.pass_context
def gc(
    ctx: click.Context,
    older_than: float,
    statuses: tuple[str, ...],
    dry_run: bool,
    full_speed: bool,
    as_json: bool,
) -> None:
    """Delete ended workflows (with their steps and errors) older than a bound."""
    wanted = tuple(s.upper() for s in statuses) or tuple(TERMINAL_STATUSES)
    report = get_durable(ctx).collect_garbage(
        older_than, statuses=wanted, dry_run=dry_run, pause_ratio=0.0 if full_speed else 3.0
    )
    verb = "would delete" if dry_run else "deleted"
    emit(as_json, report, lambda: f"{verb} {report.deleted} workflows")


def _serve(app: Any, host: str, port: int) -> None:
    import uvicorn

    uvicorn.run(app, host=host, port=port, log_level="info")


host_option = click.option(
    "--host",
    cls=CeleryOption,
    default="127.0.0.1",
    show_default=True,
    help_group="Server Options",
    help="Address to listen on (anything but loopback exposes it: set durable_dashboard_token).",
)


def port_option(default: int) -> Callable[[F], F]:
    return click.option(
        "--port",
        cls=CeleryOption,
        type=int,
        default=default,
        show_default=True,
        help_group="Server Options",
        help="Port to listen on.",
    )


@durable.command(cls=CeleryCommand)
@host_option
@port_option(5556)
@click.option(
    "--read-only",
    cls=CeleryOption,
    is_flag=True,
    default=None,
    help_group="Server Options",
    help="Refuse every action (default: the durable_dashboard_read_only setting).",
)
@click.pass_context
def dashboard(ctx: click.Context, host: str, port: int, read_only: bool | None) -> None:
    """Serve the web dashboard (and /metrics) with uvicorn."""
    try:
        from ..dashboard import create_app
    except ImportError as exc:
        raise click.ClickException(EXTRA) from exc
    _serve(create_app(get_durable(ctx), read_only=read_only), host, port)


@durable.command(cls=CeleryCommand)
@host_option
@port_option(9808)
@click.pass_context
def metrics(ctx: click.Context, host: str, port: int) -> None:
    """Serve only /metrics (Prometheus) with uvicorn."""
    try:
        from ..dashboard.app import metrics_app
    except ImportError as exc:
        raise click.ClickException(EXTRA) from exc
    _serve(metrics_app(get_durable(ctx)), host, port)
