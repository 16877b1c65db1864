"""The shop's Celery app: one ``Durable(app)`` makes its decorated tasks durable.

Configuration comes from the environment:

- ``CELERY_BROKER_URL``: the broker (e.g. ``redis://127.0.0.1:6379/0``). Unset, kombu's
  ``filesystem://`` transport is used, with its folders under ``SHOP_BROKER_DIR``
  (default ``example_project/.demo/broker``), so no broker server is needed.
- ``DURABLE_DATABASE_URL``: where workflows and steps are stored (e.g.
  ``postgresql://postgres@127.0.0.1:5432/shop``). Unset, celery-durable uses its embedded
  default, a SQLite file ``celery_durable.sqlite3`` in the current directory.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from celery import Celery

from celery_durable import Durable

PROJECT_DIR = Path(__file__).resolve().parent.parent
BROKER_DIR = Path(os.environ.get("SHOP_BROKER_DIR", PROJECT_DIR / ".demo" / "broker"))


def filesystem_broker_options(folder: Path) -> dict[str, Any]:
    """Transport options for kombu's ``filesystem://`` broker; creates its folders."""
    queue, processed, control = folder / "queue", folder / "processed", folder / "control"
    for path in (queue, processed, control):
        path.mkdir(parents=True, exist_ok=True)
    return {
        # producers write where consumers read: one shared folder of message files
        "data_folder_in": str(queue),
        "data_folder_out": str(queue),
        "store_processed": True,
        "processed_folder": str(processed),
        "control_folder": str(control),
        "polling_interval": 0.1,
    }


app = Celery("shop", include=["shop.tasks"])
app.conf.broker_connection_retry_on_startup = True
app.conf.task_ignore_result = True  # results are read from the durable store, not a backend
broker_url = os.environ.get("CELERY_BROKER_URL")
if broker_url:
    app.conf.broker_url = broker_url
else:
    app.conf.broker_url = "filesystem://localhost//"
    app.conf.broker_transport_options = filesystem_broker_options(BROKER_DIR)
app.conf.durable_database_url = os.environ.get("DURABLE_DATABASE_URL") or None
# a worker that stops beating for 6 s counts as gone: its workflows may then be taken over
app.conf.durable_executor_timeout = 6.0
app.conf.durable_heartbeat_interval = 1.0

durable = Durable(app)
