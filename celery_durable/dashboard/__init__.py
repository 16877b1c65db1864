"""The web dashboard and Prometheus metrics (``pip install celery-durable[dashboard]``).

``create_app(durable)`` is an ASGI application (Starlette) to serve with any ASGI server,
or to mount in your own (FastAPI, Starlette, Django through ASGI); ``celery -A proj durable
dashboard`` serves it with uvicorn. ``DurableCollector`` is the metrics alone.
"""

from .app import create_app
from .metrics import DurableCollector, registry_for

__all__ = ["DurableCollector", "create_app", "registry_for"]
