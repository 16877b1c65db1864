"""``celery -A proj durable ...``: inspect and manage durable workflows from a shell.

Registered under the ``celery.commands`` entry point group, so Celery's own CLI loads the
app (``-A``) and hands it over in ``ctx.obj.app``. Every subcommand prints aligned tables
for people and, with ``--json``, what the Python API returns as JSON.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterable, Sequence
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any, TypeVar
from uuid import UUID

import click
from celery.bin.base import CeleryCommand, CeleryOption
from kombu.exceptions import OperationalError

from ..errors import DurableError, NonExistentWorkflow
from ..runtime.recovery import RecoveryReport
from ..types import ResumeOutcome, StepInfo, WorkflowState, WorkflowStatus
from .cli_filters import filter_options, given_filters
from .durable import Durable

F = TypeVar("F", bound=Callable[..., Any])
CELL_WIDTH = 48  # long outputs and errors are shortened to this in tables


# JSON ---------------------------------------------------------------------
def exception_type(exc: BaseException) -> str:
    cls = type(exc)
    return (
        cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    )


def to_jsonable(value: Any) -> Any:
    """Dataclasses to dicts, datetimes to ISO strings, exceptions to {type, message};
    anything JSON cannot hold becomes its ``repr``."""
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, BaseException):
        return {"type": exception_type(value), "message": str(value)}
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, UUID | Decimal):
        return str(value)
    if isinstance(value, dict):
        return {k if isinstance(k, str) else repr(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    return repr(value)


def dumps(value: Any) -> str:
    return json.dumps(to_jsonable(value), indent=2, ensure_ascii=False)


# tables -------------------------------------------------------------------
def table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """Columns padded to their widest cell, a rule under the headers."""
    body = [list(r) for r in rows]
    widths = [max([len(h), *(len(r[i]) for r in body)]) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    return "\n".join(line(cells) for cells in [headers, ["-" * w for w in widths], *body])


def shorten(text: str, width: int = CELL_WIDTH) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


def when(value: datetime | None) -> str:
    """UTC, to the second: ``2024-05-01 12:00:00``."""
    return value.strftime("%Y-%m-%d %H:%M:%S") if value is not None else "-"


def show_value(value: Any) -> str:
    return json.dumps(to_jsonable(value), ensure_ascii=False)


def show_error(exc: BaseException | None) -> str:
    return f"{type(exc).__name__}: {exc}" if exc is not None else "-"


def recovery(wf: WorkflowStatus) -> str:
    limit = "-" if wf.max_recovery_attempts is None else str(wf.max_recovery_attempts)
    return f"{wf.recovery_attempts}/{limit}"


WORKFLOW_HEADERS = ("ID", "NAME", "STATUS", "RECOVERY", "CREATED (UTC)", "UPDATED (UTC)")


def workflows_table(workflows: Sequence[WorkflowStatus]) -> str:
    if not workflows:
        return "no workflows"
    rows = [
        (w.workflow_id, w.name, w.status, recovery(w), when(w.created_at), when(w.updated_at))
        for w in workflows
    ]
    return table(WORKFLOW_HEADERS, rows)


def workflow_details(wf: WorkflowStatus) -> str:
    fields = [
        ("id", wf.workflow_id),
        ("name", wf.name),
        ("kind", wf.kind),
        ("status", wf.status),
        ("queue", wf.queue or "-"),
        ("executor", wf.executor_id or "-"),
        ("recovery attempts", recovery(wf)),
        ("created (UTC)", when(wf.created_at)),
        ("updated (UTC)", when(wf.updated_at)),
        ("started (UTC)", when(wf.started_at)),
        ("completed (UTC)", when(wf.completed_at)),
        ("deadline (UTC)", when(wf.deadline)),
        ("input", show_value(wf.input)),
        ("output", show_value(wf.output)),
        ("error", show_error(wf.error)),
    ]
    width = max(len(k) for k, _ in fields)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in fields)


def steps_table(steps: Sequence[StepInfo]) -> str:
    if not steps:
        return "no steps recorded"
    rows = [
        (
            str(s.step_id),
            s.name,
            s.status,
            str(s.attempts),
            shorten(show_error(s.error) if s.error is not None else show_value(s.output)),
        )
        for s in steps
    ]
    return table(("STEP", "NAME", "STATUS", "ATTEMPTS", "OUTPUT / ERROR"), rows)


def report_text(report: RecoveryReport) -> str:
    parts = [
        ("re-enqueued", report.recovered),
        ("dead-lettered", report.dead_lettered),
        ("cancelled (deadline passed)", report.cancelled),
        ("publish failed (retried next sweep)", report.publish_failed),
    ]
    width = max(len(label) for label, _ in parts)
    lines = []
    for label, ids in parts:
        lines.append(f"{label.ljust(width)}  {len(ids)}")
        lines.extend(f"  {i}" for i in ids)
    return "\n".join(lines)


# plumbing -----------------------------------------------------------------
class DurableGroup(click.Group):
    """Turns celery-durable's errors (unknown ids, bad settings) and an unreachable broker
    into a one-line message and exit status 1 instead of a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DurableError as exc:
            raise click.ClickException(str(exc)) from exc
        except OperationalError as exc:
            raise click.ClickException(f"could not reach the message broker: {exc}") from exc


def get_durable(ctx: click.Context) -> Durable:
    app = getattr(ctx.obj, "app", None)
    found = getattr(app, "durable", None)
    if not isinstance(found, Durable):
        name = getattr(app, "main", None) or "the Celery app"
        raise click.UsageError(
            f"{name} has no celery-durable set up: create Durable(app) in the module "
            "given to `celery -A`"
        )
    return found


def existing(durable: Durable, workflow_id: str) -> WorkflowStatus:
    wf = durable.get_workflow_status(workflow_id)
    if wf is None:
        raise NonExistentWorkflow(workflow_id)
    return wf


def emit(as_json: bool, value: Any, human: Callable[[], str]) -> None:
    click.echo(dumps(value) if as_json else human())


json_option = click.option(
    "--json",
    "as_json",
    cls=CeleryOption,
    is_flag=True,
    help_group="Output Options",
    help="Print JSON (what the Python API returns) instead of a table.",
)
workflow_id_argument = click.argument("workflow_id")


def count_option(flag: str, default: int, group: str, text: str) -> Callable[[F], F]:
    """A whole number >= 0."""
    return click.option(
        flag,
        cls=CeleryOption,
        type=click.IntRange(min=0),
        default=default,
        show_default=True,
        help_group=group,
        help=text,
    )


# commands -----------------------------------------------------------------
@click.group(name="durable", cls=DurableGroup)
@click.pass_context
def durable(ctx: click.Context) -> None:
    """Inspect and manage celery-durable workflows."""


def workflow_command(fn: Callable[..., None]) -> click.Command:
    """A subcommand of one WORKFLOW_ID with --json; ``fn`` gets the click context first."""
    command: click.Command = durable.command(cls=CeleryCommand)(
        workflow_id_argument(json_option(click.pass_context(fn)))
    )
    return command


@durable.command(cls=CeleryCommand)
@click.option(
    "--revision",
    cls=CeleryOption,
    default="head",
    show_default=True,
    help_group="Migration Options",
    help="Alembic revision to upgrade to.",
)
@json_option
@click.pass_context
def migrate(ctx: click.Context, revision: str, as_json: bool) -> None:
    """Create or upgrade the durable tables in the database."""
    rev = get_durable(ctx).migrate(revision)
    emit(as_json, {"revision": rev}, lambda: f"durable schema at revision {rev}")


@durable.command(name="list", cls=CeleryCommand)
@click.option(
    "--status",
    "statuses",
    cls=CeleryOption,
    multiple=True,
    type=click.Choice([s.value for s in WorkflowState], case_sensitive=False),
    help_group="Filter Options",
    help="Only workflows in this status (repeatable).",
)
@click.option("--name", cls=CeleryOption, help_group="Filter Options", help="Workflow name.")
@filter_options
@count_option("--limit", 100, "Filter Options", "At most this many (0: no limit).")
@count_option("--offset", 0, "Filter Options", "Skip this many first.")
@click.option(
    "--oldest-first",
    cls=CeleryOption,
    is_flag=True,
    help_group="Filter Options",
    help="Oldest first (default: newest first).",
)
@json_option
@click.pass_context
def list_(
    ctx: click.Context,
    /,
    statuses: tuple[str, ...],
    name: str | None,
    limit: int,
    offset: int,
    oldest_first: bool,
    as_json: bool,
    **filters: Any,
) -> None:
    """List workflows, newest first."""
    found = get_durable(ctx).list_workflows(
        status=list(statuses) or None,
        name=name,
        limit=limit or None,
        offset=offset,
        newest_first=not oldest_first,
        **given_filters(filters),
    )
    emit(as_json, found, lambda: workflows_table(found))


@workflow_command
def get(ctx: click.Context, workflow_id: str, as_json: bool) -> None:
    """Show one workflow: status, input, output, error."""
    wf = existing(get_durable(ctx), workflow_id)
    emit(as_json, wf, lambda: workflow_details(wf))


@workflow_command
def steps(ctx: click.Context, workflow_id: str, as_json: bool) -> None:
    """List the recorded steps of a workflow."""
    d = get_durable(ctx)
    existing(d, workflow_id)
    found = d.list_workflow_steps(workflow_id)
    emit(as_json, found, lambda: steps_table(found))


RESUME_SAYS = {
    ResumeOutcome.RESUMED: "resumed from its first incomplete step",
    ResumeOutcome.RUNNING: "left to the live worker running it (the sweep takes it over if "
    "that worker dies)",
    ResumeOutcome.FINISHED: "finished: left as it is",
}


def after(message: str, wf: WorkflowStatus) -> str:
    return f"{message}\n\n{workflows_table([wf])}"


@workflow_command
def cancel(ctx: click.Context, workflow_id: str, as_json: bool) -> None:
    """Cancel an unfinished workflow (prints its status afterwards)."""
    d = get_durable(ctx)
    d.cancel_workflow(workflow_id)
    wf = existing(d, workflow_id)
    done = "cancelled" if wf.status == WorkflowState.CANCELLED else "left as it is"
    emit(as_json, wf, lambda: after(f"workflow {workflow_id}: {done}", wf))


def queue_option(group: str) -> Callable[[F], F]:
    return click.option(
        "--queue",
        cls=CeleryOption,
        default=None,
        help_group=group,
        help="Send it to this queue (a code workflow; default: its own).",
    )


@workflow_command
@queue_option("Resume Options")
def resume(ctx: click.Context, workflow_id: str, queue: str | None, as_json: bool) -> None:
    """Re-enqueue a workflow from its first incomplete step, unless it finished or a live
    worker still runs it (prints what was done, and its status afterwards)."""
    d = get_durable(ctx)
    done = RESUME_SAYS[d.resume(workflow_id, queue)]
    wf = existing(d, workflow_id)
    emit(as_json, wf, lambda: after(f"workflow {workflow_id}: {done}", wf))


@workflow_command
@count_option("--start-step", 0, "Fork Options", "Reuse the outputs of the steps before this one.")
@click.option(
    "--timeout",
    cls=CeleryOption,
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help_group="Fork Options",
    help="Seconds the copy may run (from now) before it is cancelled.",
)
@queue_option("Fork Options")
def fork(
    ctx: click.Context,
    workflow_id: str,
    start_step: int,
    timeout: float | None,
    queue: str | None,
    as_json: bool,
) -> None:
    """Start a copy of a workflow under a new id (prints the new workflow's status)."""
    handle = get_durable(ctx).fork_workflow(
        workflow_id, start_step=start_step, timeout_seconds=timeout, queue=queue
    )
    wf = handle.get_status()
    emit(as_json, wf, lambda: after(f"forked {workflow_id} as {wf.workflow_id}", wf))


@durable.command(cls=CeleryCommand)
@json_option
@click.pass_context
def recover(ctx: click.Context, as_json: bool) -> None:
    """Run one recovery sweep now (beat runs it on a schedule)."""
    report = get_durable(ctx).recover()
    emit(as_json, report, lambda: report_text(report))


# retention, the dashboard, messages and events, queues and schedules register themselves
# on the group above
from . import cli_flow, cli_messages, cli_operations  # noqa: E402, F401
