"""The dashboard's actions (POST forms): cancel, resume or fork one workflow, and cancel
or resume every workflow matching a filter. Each needs the CSRF field, is refused in
read-only mode, and asks for a confirmation first: a form without ``confirmed=yes``
gets a page saying what would happen, whose button sends it again confirmed."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response

from ..errors import DurableError
from ..runtime import operations
from .filters import BadFilter, form_values, query, read_filter, workflow_url
from .security import csrf_ok

if TYPE_CHECKING:
    from .app import Dashboard

WORKFLOW_ACTIONS = {"cancel": "Cancel", "resume": "Resume", "fork": "Fork"}
BULK_ACTIONS = {"cancel": "Cancel", "resume": "Resume"}
BULK_LIMIT = 10_000


def _refused(dash: Dashboard, request: Request, form: Any) -> Response | None:
    if dash.read_only:
        return PlainTextResponse("403 Forbidden: this dashboard is read-only", status_code=403)
    if not csrf_ok(request, form):
        return PlainTextResponse("403 Forbidden: CSRF token missing or wrong", status_code=403)
    return None


def _confirm(dash: Dashboard, request: Request, form: Any, title: str, says: str) -> Response:
    fields = {k: v for k, v in form.items() if k not in ("csrf_token", "confirmed")}
    return dash.render(request, "confirm.html", title=title, says=says, fields=fields)


def workflow_action(dash: Dashboard, request: Request, form: Any) -> Response:
    refused = _refused(dash, request, form)
    if refused is not None:
        return refused
    action = request.path_params["action"]
    workflow_id = str(form.get("workflow_id") or "")
    if action not in WORKFLOW_ACTIONS or not workflow_id:
        return PlainTextResponse("400 Bad Request: unknown action", status_code=400)
    start_step = str(form.get("start_step") or "0")
    if not start_step.isdigit():
        return PlainTextResponse("400 Bad Request: start_step", status_code=400)
    if form.get("confirmed") != "yes":
        says = {
            "cancel": "It starts no further step; a step body already running finishes.",
            "resume": "It is re-enqueued from its first incomplete step (a failed one "
            "retries its failed step), unless a live worker still runs it.",
            "fork": f"A copy starts under a new id, reusing the outputs of steps 0 to "
            f"{int(start_step) - 1}; steps from {start_step} on run again.",
        }[action]
        return _confirm(dash, request, form, f"{WORKFLOW_ACTIONS[action]} {workflow_id}?", says)
    durable = dash.durable
    target, notice = workflow_id, ""
    try:
        if action == "cancel":
            durable.cancel_workflow(workflow_id)
            notice = "cancelled"
        elif action == "resume":
            notice = f"resume: {durable.resume(workflow_id).value}"
        else:
            target = durable.fork_workflow(workflow_id, start_step=int(start_step)).workflow_id
            notice = f"forked from {workflow_id} at step {start_step}"
    except DurableError as exc:
        return PlainTextResponse(f"409 Conflict: {exc}", status_code=409)
    url = workflow_url(request, target) + query({}, notice=notice)
    return RedirectResponse(url, status_code=303)


def bulk_action(dash: Dashboard, request: Request, form: Any) -> Response:
    refused = _refused(dash, request, form)
    if refused is not None:
        return refused
    action = request.path_params["action"]
    if action not in BULK_ACTIONS:
        return PlainTextResponse("400 Bad Request: unknown action", status_code=400)
    try:
        where = read_filter(form)
    except BadFilter as exc:
        return PlainTextResponse(f"400 Bad Request: {exc}", status_code=400)
    runtime = dash.durable.runtime
    if form.get("confirmed") != "yes":
        counts = runtime.store.count_by_status(where, cap=BULK_LIMIT)
        matching = sum(min(n, BULK_LIMIT) for n in counts.values())
        more = "+" if any(n > BULK_LIMIT for n in counts.values()) else ""
        says = (
            f"{matching}{more} workflows match this filter (at most {BULK_LIMIT:,} are taken). "
            + ("Active ones are cancelled." if action == "cancel" else
               "Each is resumed unless it succeeded or a live worker runs it.")
        )  # fmt: skip
        return _confirm(dash, request, form, f"{BULK_ACTIONS[action]} all matching?", says)
    if action == "cancel":
        report = operations.bulk_cancel(runtime, where, limit=BULK_LIMIT)
        notice = f"cancelled {len(report.changed)} of {report.matched} matching"
    else:
        report = operations.bulk_resume(runtime, where, dash.durable.republish, limit=BULK_LIMIT)
        notice = f"resumed {len(report.changed)} of {report.matched} matching"
    target = str(request.url_for("workflows")) + query(form_values(form), notice=notice)
    return RedirectResponse(target, status_code=303)
