"""Screenshots of the dashboard for the README (docs/images/), from a few example workflows
run in this process by celery_durable.testing; needs the [dashboard] extra, Playwright's
Python package and Debian's chromium. Run: .venv/bin/python scripts/screenshots.py"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

from celery import Celery

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from celery_durable import Durable, SetWorkflowID  # noqa: E402
from celery_durable.dashboard import create_app  # noqa: E402
from celery_durable.runtime.workflows import StartRequest, record_start  # noqa: E402
from celery_durable.testing import DurableTestKit  # noqa: E402
from tests.dashboard.conftest import CHROMIUM, CHROMIUM_ARGS, Server  # noqa: E402

app = Celery("shop")
durable = Durable(app)


class CardDeclined(Exception):
    pass


@durable.step()
def save_order(order_id: str, total: float) -> str:
    return order_id


@durable.step(retries=2, interval_seconds=1.0)
def charge_payment(order_id: str, total: float) -> str:
    if order_id.endswith("7"):
        raise CardDeclined(f"card declined for {order_id} ({total:.2f})")
    return f"tx-{order_id}"


@durable.step()
def send_confirmation(order_id: str, tx: str) -> str:
    return f"mail-{order_id}"


@durable.workflow(name="shop.process_order")
def process_order(order_id: str, total: float) -> dict[str, str]:
    saved = save_order(order_id, total)
    tx = charge_payment(order_id, total)
    return {"order": saved, "tx": tx, "mail": send_confirmation(order_id, tx)}


def main() -> None:
    from playwright.sync_api import sync_playwright

    with DurableTestKit(durable) as kit:
        for n in range(1, 19):
            kit.clock.advance(37)
            with SetWorkflowID(f"order-{n:04d}"), contextlib.suppress(Exception):
                process_order(f"o-{n:04d}", 10.0 + n)  # order-0007 and -0017 fail
        for n in range(19, 23):
            record_start(durable.runtime, StartRequest(f"order-{n:04d}", process_order.name,
                                                       args=(f"o-{n:04d}", 5.0)))  # fmt: skip
        server = Server(create_app(durable))
        url = server.start()
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                images = ROOT / "docs" / "images"
                page.goto(url + "/?hours=1")
                page.screenshot(path=str(images / "dashboard-list.png"), full_page=True)
                page.goto(url + "/workflows/order-0017")
                page.screenshot(path=str(images / "dashboard-workflow.png"), full_page=True)
                browser.close()
        finally:
            server.stop()


if __name__ == "__main__":
    main()
