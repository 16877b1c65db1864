"""``create_app(durable)``: the dashboard as one Starlette (ASGI) application.

Routes are relative, and every link is built from the request, so the app works mounted
under any path of another ASGI app. The store is read in Starlette's thread pool: its
calls block.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jinja2 import Environment, FileSystemLoader
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from . import actions, present, views
from .filters import workflow_url
from .metrics import registry_for
from .security import TokenAuth, csrf_token, remember

if TYPE_CHECKING:
    from ..integration.durable import Durable

HERE = Path(__file__).parent


@dataclass
class Dashboard:
    """What every page needs: the Durable, the templates, and whether actions are allowed."""

    durable: Durable
    templates: Jinja2Templates
    registry: CollectorRegistry
    read_only: bool
    title: str

    def render(
        self, request: Request, template: str, status_code: int = 200, **ctx: Any
    ) -> Response:
        context = {
            "dash": self,
            "csrf": csrf_token(request),
            "read_only": self.read_only,
            "present": present,
            "now_ms": self.durable.runtime.clock.now_ms(),
            "wf_url": lambda workflow_id: workflow_url(request, workflow_id),
            **ctx,
        }
        response = self.templates.TemplateResponse(
            request, template, context, status_code=status_code
        )
        return remember(request, response)


def create_app(
    durable: Durable,
    *,
    token: str | None = None,
    read_only: bool | None = None,
    title: str = "celery-durable",
) -> Starlette:
    """The dashboard of ``durable``'s store; ``token`` and ``read_only`` default to the
    ``durable_dashboard_token`` and ``durable_dashboard_read_only`` settings."""
    settings = durable.settings
    token = token if token is not None else settings.dashboard_token
    # autoescape on every template: inputs, outputs and errors are user data
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=True)
    templates = Jinja2Templates(env=env)
    dash = Dashboard(
        durable=durable,
        templates=templates,
        registry=registry_for(durable),
        read_only=settings.dashboard_read_only if read_only is None else read_only,
        title=title,
    )

    def page(view: Any) -> Any:
        async def endpoint(request: Request) -> Response:
            return await run_in_threadpool(view, dash, request)

        return endpoint

    def action(handler: Any) -> Any:
        async def endpoint(request: Request) -> Response:
            form = await request.form()
            return await run_in_threadpool(handler, dash, request, form)

        return endpoint

    routes = [
        Route("/", page(views.workflow_list), name="workflows"),
        Route("/workflows/{workflow_id:path}", page(views.workflow_detail), name="workflow"),
        Route("/executors", page(views.executors), name="executors"),
        Route("/actions/{action}", action(actions.workflow_action), methods=["POST"], name="act"),
        Route("/bulk/{action}", action(actions.bulk_action), methods=["POST"], name="bulk"),
        Route("/metrics", metrics_endpoint(dash.registry), name="metrics"),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    middleware = [Middleware(TokenAuth, token=token)] if token else []
    return Starlette(routes=routes, middleware=middleware)


def metrics_endpoint(registry: CollectorRegistry) -> Any:
    """``GET /metrics``: the registry in Prometheus's text format (collected off the loop)."""

    async def metrics(request: Request) -> Response:
        body = await run_in_threadpool(generate_latest, registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return metrics


def metrics_app(durable: Durable, token: str | None = None) -> Starlette:
    """Only ``/metrics`` (``celery -A proj durable metrics``); ``token`` as the dashboard's."""
    token = token if token is not None else durable.settings.dashboard_token
    middleware = [Middleware(TokenAuth, token=token)] if token else []
    route = Route("/metrics", metrics_endpoint(registry_for(durable)))
    return Starlette(routes=[route], middleware=middleware)
