"""The issue's acceptance on real workers, Postgres and Redis, through the browser: filter
to ERROR, open the failed workflow, see each attempt's error, resume it after a fix and
watch it succeed; fork a finished workflow from step 2 and see only step 2 run again."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from celery_durable import SetWorkflowID
from celery_durable.dashboard import create_app
from tests.apps import dashboard_app as shop
from tests.apps.common import ensure_tables, read_effects
from tests.conftest import WorkerProcess
from tests.unit.helpers import uid

APP = "tests.apps.dashboard_app"


def wait_for_badge(page: Any, status: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while page.locator("h1 .badge").inner_text() != status:
        assert time.monotonic() < deadline, f"still {page.locator('h1 .badge').inner_text()}"
        time.sleep(0.3)
        page.reload()


def test_resume_after_a_fix_and_fork_from_step_2_through_the_browser(
    worker: Callable[..., WorkerProcess], flags: Path, serve: Callable[[Any], str], page: Any
) -> None:
    ensure_tables(shop.durable)
    worker(APP, concurrency=2)
    prefix = uid("shop") + "-"
    failing, done = f"{prefix}1", f"{prefix}2"
    (flags / f"fixed-{done}").touch()
    for order_id in (failing, done):
        with SetWorkflowID(order_id):
            shop.durable.start_workflow(shop.order, order_id)
    assert shop.durable.retrieve_workflow(done).get_result(timeout=30) == (
        f"shipped {done} (tx-{done})"
    )
    url = serve(create_app(shop.durable))

    page.goto(url + "/")
    page.locator("form.filters select[name=status]").select_option("ERROR")
    page.locator("form.filters input[name=id_prefix]").fill(prefix)
    page.get_by_role("button", name="Filter").click()
    deadline = time.monotonic() + 30
    while page.locator("a.wid").all_inner_texts() != [failing]:  # until it has failed
        assert time.monotonic() < deadline
        time.sleep(0.3)
        page.reload()
    page.get_by_role("link", name=failing).click()
    errors = page.locator("li.attempt-error").all_inner_texts()
    assert len(errors) == 2 and all(f"card declined for {failing}" in e for e in errors)

    (flags / f"fixed-{failing}").touch()  # the fix is deployed
    page.get_by_role("button", name="Resume…").click()
    page.get_by_role("button", name="Confirm").click()
    wait_for_badge(page, "SUCCESS")
    assert read_effects(shop.durable, failing) == {"reserve": 1, "charge": 3, "ship": 1}

    page.goto(f"{url}/workflows/{done}")
    page.locator("select[name=start_step]").select_option("2")
    page.get_by_role("button", name="Fork…").click()
    page.get_by_role("button", name="Confirm").click()
    fork = page.locator("h1 .wid").inner_text()
    wait_for_badge(page, "SUCCESS")
    assert fork != done
    assert read_effects(shop.durable, fork) == {"ship": 1}  # steps 0 and 1 were reused
    assert page.locator("tr.step").count() == 3
