"""The dashboard's pages (GET): workflows, one workflow, executors. Each reads the store
through the runtime's operations; none changes anything."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response

from ..runtime import management, operations
from ..types import ACTIVE_STATUSES, PageCursor, WorkflowFilter, WorkflowKind, WorkflowState
from .charts import activity_svg
from .filters import BadFilter, form_values, query, read_cursor, read_filter
from .present import decoded, error_view

if TYPE_CHECKING:
    from .app import Dashboard

PAGE_SIZE = 50
COUNT_CAP = 10_000  # a count above it shows as "10,000+": each reads at most that many rows
HOURS = (1, 3, 12, 24)
CHILDREN_SHOWN = 100


def workflow_list(dash: Dashboard, request: Request) -> Response:
    params = request.query_params
    values = form_values(params)
    problem = None
    try:
        where, after = read_filter(params), read_cursor(params)
    except BadFilter as exc:  # shown above the list, unfiltered
        problem, where, after, values = str(exc), WorkflowFilter(), None, {}
    hours = params.get("hours", "3")
    context = _list_context(dash, where, after, values, int(hours) if hours.isdigit() else 3)
    status = 400 if problem else 200
    return dash.render(request, "list.html", status_code=status, problem=problem, **context)


def _list_context(
    dash: Dashboard,
    where: WorkflowFilter,
    after: PageCursor | None,
    values: dict[str, str],
    hours: int,
) -> dict[str, object]:
    runtime = dash.durable.runtime
    unfiltered_status = WorkflowFilter(**{**where.__dict__, "statuses": ()})
    shown, total = _shown(runtime.store.count_by_status(unfiltered_status, cap=COUNT_CAP))
    found = operations.page(runtime, where, PAGE_SIZE, after)
    hours = hours if hours in HOURS else 3
    next_link = None
    if found.next is not None:
        next_link = query(values, after_ms=found.next.at_ms, after_id=found.next.workflow_id)
    return {
        "statuses": list(WorkflowState),
        "counts": shown,
        "total": total,
        "values": values,
        "workflows": found.records,
        "next_link": next_link,
        "paged": after is not None,
        "filter_query": query(values),
        "hours": hours,
        "hour_choices": HOURS,
        "chart": activity_svg(operations.activity(runtime, hours)),
        "query": query,
    }


def _shown(counts: dict[str, int]) -> tuple[dict[str, str], str]:
    """Counts as shown (``10,000+`` past the cap), and their total."""
    over = [status for status, n in counts.items() if n > COUNT_CAP]
    shown = {s: f"{COUNT_CAP:,}+" if s in over else f"{n:,}" for s, n in counts.items()}
    total = sum(min(n, COUNT_CAP) for n in counts.values())
    return shown, f"{total:,}+" if over else f"{total:,}"


def workflow_detail(dash: Dashboard, request: Request) -> Response:
    runtime = dash.durable.runtime
    workflow_id = request.path_params["workflow_id"]
    record = runtime.store.get_workflow(workflow_id)
    if record is None:
        return dash.render(request, "missing.html", status_code=404, workflow_id=workflow_id)
    stored = runtime.store.load_steps(workflow_id)
    steps = [stored[k] for k in sorted(stored)]
    children = runtime.store.list_page(
        WorkflowFilter(parent_workflow_id=workflow_id), limit=CHILDREN_SHOWN
    )
    begin = record.started_at_ms or record.created_at_ms
    end = record.completed_at_ms or runtime.clock.now_ms()
    return dash.render(
        request,
        "detail.html",
        wf=record,
        status=management.get_status(runtime, workflow_id),
        is_chain=record.kind == WorkflowKind.CHAIN,
        active=record.status in ACTIVE_STATUSES,
        resumable=record.status != WorkflowState.SUCCESS,
        inputs=decoded(runtime, record.inputs),
        output=decoded(runtime, record.output) if record.output is not None else None,
        wf_error=error_view(runtime, record.error),
        steps=[
            {
                "record": s,
                "output": decoded(runtime, s.output) if s.output is not None else None,
                "error": error_view(runtime, s.error),
                "attempt_errors": [error_view(runtime, e) for e in s.attempt_errors],
                "bar": _bar(s.started_at_ms, s.completed_at_ms, begin, end),
            }
            for s in steps
        ],
        children=children,
        fork_choices=list(range(len(steps) + 1)),
    )


def _bar(start: int | None, stop: int | None, begin: int, end: int) -> tuple[float, float]:
    """Where a step sits on its workflow's timeline: (left %, width %)."""
    if start is None:
        return (0.0, 0.0)
    total = max(1, end - begin)
    left = min(100.0, max(0.0, (start - begin) / total * 100))
    width = max(0.5, min(100.0 - left, ((stop or end) - start) / total * 100))
    return (round(left, 2), round(width, 2))


def executors(dash: Dashboard, request: Request) -> Response:
    runtime = dash.durable.runtime
    found = operations.health(runtime)
    live = {
        w.executor.executor_id: operations.executor_is_live(runtime, w) for w in found.executors
    }
    return dash.render(request, "executors.html", health=found, live=live)
